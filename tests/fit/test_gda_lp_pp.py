"""GDA (Wang et al., ICLR 2024) and LP++ (Huang et al., CVPR 2024): their released formulas and grids, their use
of augmented views, and val-only choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.fit.baselines import GDAClassifier, LPPlusPlusClassifier, ZeroShotClassifier
from stages.fit.baselines.gda import DEFAULT_ALPHA_GRID, gda_parameters
from stages.fit.baselines.lp_pp import lp_pp_init_alpha, lp_pp_step_sizes
from stages.fit.features import class_prototypes, l2_normalize
from tests.fit.conftest import few_shot_split


@pytest.fixture(scope="module")
def data(gap_source):
    return few_shot_split(gap_source, shots=8, seed=2)


def test_gda_parameters_are_the_shrunk_lda_solution(data):
    v, y = l2_normalize(data["X"]).astype(np.float64), data["y"]
    C, D = 20, v.shape[1]
    W, b = gda_parameters(v, y, C)
    means = np.stack([v[y == c].mean(0) for c in range(C)])
    centred = v - means[y]
    S = centred.T @ centred / (len(v) - 1)  # the covariance of the class-centred features
    precision = D * np.linalg.inv((len(v) - 1) * S + np.trace(S) * np.eye(D))
    np.testing.assert_allclose(W, means @ precision, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(b, np.log(1 / C) - 0.5 * np.einsum("cd,de,ce->c", means, precision, means),
                               rtol=1e-3, atol=1e-2)


def test_gda_with_one_shot_is_zero_shot(gap_source):
    one = few_shot_split(gap_source, shots=1, seed=1)
    gda = GDAClassifier(gap_source.text["coop"]).fit(one["X"], one["y"], one["X_val"], one["y_val"])
    np.testing.assert_array_equal(gda.W_, 0)
    zs = ZeroShotClassifier(gap_source.text["coop"]).fit(one["X"], one["y"])
    np.testing.assert_array_equal(gda.predict(one["X_test"]), zs.predict(one["X_test"]))


def test_gda_alpha_follows_the_val_labels(gap_source, data):
    """Val labelled by zero-shot keeps the smallest weight; labelled by GDA's own term, a large one."""
    T = gap_source.text["coop"]
    zs_labels = ZeroShotClassifier(T).fit(data["X"], data["y"]).predict(data["X_val"])
    by_zs = GDAClassifier(T).fit(data["X"], data["y"], data["X_val"], zs_labels)
    assert by_zs.alpha_ == DEFAULT_ALPHA_GRID[0] and by_zs.val_top1_ == 100.0
    plain = GDAClassifier(T).fit(data["X"], data["y"])
    own = (l2_normalize(data["X_val"]) @ plain.W_.T + plain.b_).argmax(1)
    assert not np.array_equal(own, zs_labels), "precondition: GDA and zero-shot must disagree on val"
    by_gda = GDAClassifier(T).fit(data["X"], data["y"], data["X_val"], own)
    assert by_gda.alpha_ > by_zs.alpha_


def test_lp_pp_step_sizes_and_start_follow_the_paper(gap_source, data):
    v = torch.from_numpy(l2_normalize(data["X"]))
    T = torch.from_numpy(class_prototypes(gap_source.text["coop"]))
    text = v @ T.T
    lr_w, lr_alpha = lp_pp_step_sizes(v, text)
    n = len(v)
    assert lr_w == pytest.approx(4 * n / np.linalg.eigvalsh((v.T @ v).double().numpy()).max(), rel=1e-6)
    assert lr_alpha == pytest.approx(n / (4 * (text.double() ** 2).sum(0).max().item()), rel=1e-5)
    y = torch.from_numpy(data["y"])
    # the released init_alpha: 250 x the mean over classes of the mean of each class's OWN text logit
    own = np.array([text.numpy()[data["y"] == c, c].mean() for c in range(20)])
    assert float(lp_pp_init_alpha(text, y, 20)) == pytest.approx(250 * own.mean(), rel=1e-5)
    all_pairs = np.stack([text.numpy()[data["y"] == c].mean(0) for c in range(20)]).mean()
    assert abs(250 * own.mean() - 250 * all_pairs) > 1.0, "precondition: the two initialisations must differ"


def test_lp_pp_epoch_is_chosen_on_val_only(gap_source, data):
    T = gap_source.text["coop"]
    est = LPPlusPlusClassifier(T, epochs=40).fit(data["X"], data["y"], data["X_val"], data["y_val"])
    accs = [acc for _, acc in est.val_curve_]
    assert [e for e, _ in est.val_curve_] == list(range(1, 41))
    assert est.best_epoch_ == 1 + max(i for i, a in enumerate(accs) if a == max(accs))  # ties go to the later
    assert est.val_top1_ == pytest.approx(100 * est.score(data["X_val"], data["y_val"]))
    plain = LPPlusPlusClassifier(T, epochs=40).fit(data["X"], data["y"])
    assert plain.best_epoch_ == 40 and plain.search_ == {} and plain.val_top1_ is None
    v = torch.from_numpy(l2_normalize(data["X"]))
    start = float(lp_pp_init_alpha(v @ torch.from_numpy(class_prototypes(T)).T, torch.from_numpy(data["y"]), 20))
    assert plain.alpha_.shape == (20,) and not np.allclose(plain.alpha_, start), "the blend must have trained"
    assert plain.hyperparameters_["alpha_init"] == pytest.approx(start)


def released_lp_pp(v: torch.Tensor, y: torch.Tensor, T: torch.Tensor, epochs: int) -> tuple[torch.Tensor, ...]:
    """The released LP++ loop (linear_probe_p2.py), written out: alpha is not in the optimiser, so its gradient
    is never cleared and every 10th epoch steps along the sum of all gradients so far."""
    n, C = len(v), len(T)
    text = v @ T.T
    lr_w = 4 * n / torch.linalg.eigvalsh((v.T @ v).double()).max().item()
    lr_alpha = n / (4 * (text.double() ** 2).sum(0).max().item())
    W = torch.zeros(C, v.shape[1]).index_add_(0, y, v).requires_grad_(True)
    b = torch.zeros(C, requires_grad=True)
    own = torch.stack([text[y == c, c].mean() for c in range(C)])
    alpha = (250 * own.mean() * torch.ones(C)).requires_grad_(True)
    opt = torch.optim.SGD([W, b], lr=lr_w, momentum=0.9)
    for epoch in range(epochs):
        loss = torch.nn.functional.cross_entropy(v @ W.T + b + alpha * text, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (epoch + 1) % 10 == 0:
            alpha.data -= lr_alpha * alpha.grad.data
    return W.detach(), b.detach(), alpha.detach()


def test_lp_pp_follows_the_released_loop_with_its_accumulated_alpha_gradient(gap_source, data):
    T = gap_source.text["coop"]
    est = LPPlusPlusClassifier(T, epochs=30).fit(data["X"], data["y"])
    W, b, alpha = released_lp_pp(torch.from_numpy(l2_normalize(data["X"])), torch.from_numpy(data["y"]),
                                 torch.from_numpy(class_prototypes(T)), epochs=30)
    np.testing.assert_allclose(est.alpha_, alpha.numpy(), rtol=1e-4)
    np.testing.assert_allclose(est.W_, W.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est.b_, b.numpy(), rtol=1e-4, atol=1e-5)


def test_gda_grid_is_the_released_one():
    assert DEFAULT_ALPHA_GRID == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
