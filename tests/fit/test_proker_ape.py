"""ProKeR (CVPR 2025) and APE (ICCV 2023): their released formulas on hand-checked cases, their searches against
the released loops, their per-dataset grids, and device-consistent tensor code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.shared.errors import FitError
from stages.fit.baselines import APEClassifier, ProKeRClassifier
from stages.fit.baselines.ape import channel_criterion, key_divergence, weighted_cache
from stages.fit.baselines.clap import zero_shot_multipliers
from stages.fit.baselines.fusion import FusedScorer
from stages.fit.baselines.lp_pp import lp_pp_init_alpha
from stages.fit.baselines.proker import kernel_ridge
from stages.fit.baselines.released import APE, PROKER, tip_grid
from stages.fit.baselines.tip_cache import class_sums, rbf_kernel
from stages.fit.persist import load_fitted, save_fitted
from tests.fit.conftest import few_shot_split

# the hand-checked case: 3 classes, 2 shots each, 4 dimensions
TEXT = np.array([[1.0, 0.2, 0.0, 0.1], [0.1, 1.0, 0.3, 0.0], [0.0, 0.1, 0.2, 1.0]], dtype=np.float32)
SHOTS = np.array([[0.9, 0.5, 0.1, 0.3], [1.1, 0.3, 0.4, 0.2],
                  [0.4, 0.8, 0.6, 0.1], [0.2, 1.2, 0.3, 0.5],
                  [0.3, 0.2, 0.9, 0.9], [0.1, 0.6, 0.2, 1.3]], dtype=np.float32)
LABELS = np.array([0, 0, 1, 1, 2, 2])
QUERIES = np.array([[0.7, 0.7, 0.2, 0.2], [0.2, 0.9, 0.8, 0.4], [0.5, 0.1, 0.6, 1.0], [1.0, 0.1, 0.9, 0.2]],
                   dtype=np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def proker_by_hand(beta: float, lmbda: float, queries: np.ndarray = QUERIES) -> np.ndarray:
    """The released closed form, in float64: A = (K / lambda + I)^{-1} (Y - S T^T), f = v T^T + k(v, S) A."""
    s, t, v = unit(SHOTS), unit(TEXT), unit(queries)
    residual = np.eye(3)[LABELS] - s @ t.T
    A = np.linalg.solve(np.exp(-beta * (1 - s @ s.T)) / lmbda + np.eye(len(s)), residual)
    return v @ t.T + np.exp(-beta * (1 - v @ s.T)) @ A


def ape_by_hand(feat_num: int, weights: tuple[float, float], alpha: float, beta: float, gamma: float) -> np.ndarray:
    """The released APE, written as its loops (cal_criterion over every pair of rows), in float64."""
    t, keys, v = unit(TEXT), unit(SHOTS), unit(QUERIES)
    rows = [np.vstack([t[c], keys[LABELS == c]]) for c in range(3)]
    sim, count = np.zeros(4), 0
    for i in range(3):
        for j in range(3):
            for m in range(3):
                for n in range(3):
                    if i != j:
                        sim += rows[i][m] * rows[j][n]
                        count += 1
    criterion = -weights[0] * sim / count + weights[1] * np.var(t, axis=0, ddof=1)
    keep = np.sort(np.argsort(-criterion)[:feat_num])
    t2, k2, v2 = unit(t[:, keep]), unit(keys[:, keep]), unit(v[:, keep])
    values = np.eye(3)[LABELS]
    logits = k2 @ t2.T
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    divergence = (values * np.log2((values + 1e-6) / (prob + 1e-6))).sum(1)
    cache = np.exp(-beta * (1 - v2 @ k2.T)) @ (values * np.exp(gamma * divergence)[:, None])
    return 100.0 * v @ t.T + alpha * cache, keep


def test_proker_is_kernel_ridge_regression_of_the_zero_shot_residual():
    est = ProKeRClassifier(TEXT, beta=2.0, lmbda=0.5).fit(SHOTS, LABELS)
    np.testing.assert_allclose(est.decision_function(QUERIES), proker_by_hand(2.0, 0.5), rtol=1e-4, atol=1e-5)
    assert est.hyperparameters_ == {"beta": 2.0, "lmbda": 0.5} and est.search_ == {}


@pytest.mark.parametrize("K", [[[1.0, 0.6], [0.6, 1.0]], [[1.0, 2.0], [2.0, 1.0]]], ids=["cholesky", "lu_fallback"])
def test_kernel_ridge_solves_the_released_system_and_leaves_k_as_it_was(K):
    K = torch.tensor(K, dtype=torch.float64)
    R = torch.tensor([[1.0, -0.5], [0.25, 2.0]], dtype=torch.float64)
    kept = K.clone()
    got = kernel_ridge(K, R, 0.1)  # the second K + 0.1 I is indefinite: Cholesky fails, LU solves it
    np.testing.assert_allclose(got.numpy(), np.linalg.solve(kept.numpy() / 0.1 + np.eye(2), R.numpy()), rtol=1e-10)
    assert torch.equal(K, kept)


def test_proker_without_val_uses_the_released_fixed_values():
    est = ProKeRClassifier(TEXT).fit(SHOTS, LABELS)
    assert est.hyperparameters_ == {"beta": 1.7, "lmbda": 0.1}
    np.testing.assert_allclose(est.decision_function(QUERIES), proker_by_hand(1.7, 0.1), rtol=1e-4, atol=1e-5)


def test_proker_search_equals_the_released_loops():
    """Val = the queries with fixed labels; the pick is the release's first ``acc > best`` in beta-major order."""
    y_val = np.array([1, 1, 2, 0])
    betas, lmbdas = [0.5, 1.0, 4.0, 9.0], [0.01, 0.3, 2.0, 20.0]
    est = ProKeRClassifier(TEXT, beta_grid=betas, lmbda_grid=lmbdas).fit(SHOTS, LABELS, QUERIES, y_val)
    best = (0.0, None)
    for beta in betas:
        for lmbda in lmbdas:
            acc = 100 * np.mean(proker_by_hand(beta, lmbda).argmax(1) == y_val)
            if acc > best[0]:
                best = (acc, {"beta": beta, "lmbda": lmbda})
    assert est.hyperparameters_ == best[1] and est.val_top1_ == pytest.approx(best[0])
    assert est.search_["grid"] == {"beta": betas, "lmbda": lmbdas} and est.search_["selected_on"] == "val"


@pytest.mark.parametrize(("dataset", "key"), [("imagenet", "imagenet"), ("imagenet_r", "imagenet"),
                                              ("oxford_pets", "oxford_pets"), ("digits", "caltech101")])
def test_proker_searches_the_released_grid_of_its_dataset(dataset, key):
    est = ProKeRClassifier(TEXT, dataset=dataset).fit(SHOTS, LABELS, QUERIES, np.array([1, 1, 2, 0]))
    config = PROKER[key]
    assert est.search_["grid"]["beta"] == pytest.approx(list(np.linspace(*config.beta)))
    assert est.search_["grid"]["lmbda"] == pytest.approx(list(np.linspace(*config.lmbda)))
    assert est.search_["config"] == key


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(FitError, match=r"6 support rows .* max_support=5"):
        ProKeRClassifier(TEXT, max_support=5).fit(SHOTS, LABELS)
    with pytest.raises(FitError, match="lambda must be > 0"):
        ProKeRClassifier(TEXT, lmbda_grid=[0.0, 1.0]).fit(SHOTS, LABELS, QUERIES, np.array([1, 1, 2, 0]))
    with pytest.raises(FitError, match="feat_num must be at least 1"):
        APEClassifier(TEXT, feat_num=0).fit(SHOTS, LABELS)
    with pytest.raises(FitError, match="criterion_weights must be two numbers"):
        APEClassifier(TEXT, criterion_weights=(1.0,)).fit(SHOTS, LABELS)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.9, 0.1), (0.1, 0.9)])
def test_ape_follows_the_released_formulas(weights):
    expected, keep = ape_by_hand(3, weights, alpha=2.0, beta=3.0, gamma=0.7)
    est = APEClassifier(TEXT, feat_num=3, criterion_weights=weights, alpha=2.0, beta=3.0, gamma=0.7,
                        alpha_grid=()).fit(SHOTS, LABELS)
    np.testing.assert_array_equal(est.channels_, keep)
    np.testing.assert_allclose(est.decision_function(QUERIES), expected, rtol=1e-5, atol=1e-4)
    assert est.hyperparameters_ == {"alpha": 2.0, "beta": 3.0, "gamma": 0.7} and est.search_ == {}


def test_ape_criterion_counts_every_cross_class_pair_with_uneven_classes():
    """With a short class (CoOp keeps all of its images) the similarity is the mean over all cross-class pairs."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    t, keys = unit(TEXT), unit(SHOTS)
    rows = [np.vstack([t[c], keys[labels == c]]) for c in range(3)]
    pairs = [a * b for i in range(3) for j in range(3) if i != j for a in rows[i] for b in rows[j]]
    expected = -0.6 * np.mean(pairs, axis=0) + 0.4 * np.var(t, axis=0, ddof=1)
    got = channel_criterion(torch.from_numpy(t), torch.from_numpy(keys), torch.from_numpy(labels), (0.6, 0.4))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_ape_keeps_the_released_share_of_channels(gap_source):
    data = few_shot_split(gap_source, shots=2)
    T = gap_source.text["coop"]  # D = 128
    counts = {dataset: len(APEClassifier(T, dataset=dataset, alpha_grid=()).fit(data["X"], data["y"]).channels_)
              for dataset in ("caltech101", "imagenet", "dtd")}
    assert counts == {"caltech101": 100, "imagenet": 62, "dtd": 50}  # 800, 500, 400 of RN50's 1024
    assert len(APEClassifier(T, feat_num=7, alpha_grid=()).fit(data["X"], data["y"]).channels_) == 7


def test_ape_search_equals_the_released_loops(gap_source):
    data = few_shot_split(gap_source, shots=4, seed=3)
    grids = {"beta_grid": tip_grid(7.0, 12), "alpha_grid": tip_grid(7.0, 10), "gamma_grid": [0.0, 0.25, 0.5, 0.75]}
    est = APEClassifier(gap_source.text["coop"], **grids).fit(data["X"], data["y"], data["X_val"], data["y_val"])
    raw = data["X_val"].astype(np.float64)
    zs = 100.0 * unit(raw) @ est.zs_prototypes_.T
    affinity = unit(raw[:, est.channels_]) @ est.cache_keys_.T
    values = np.eye(20)[est.cache_labels_]
    best = (-1.0, None)
    for beta in grids["beta_grid"]:
        for alpha in grids["alpha_grid"]:
            for gamma in grids["gamma_grid"]:
                cache = np.exp(-beta * (1 - affinity)) @ (values * np.exp(gamma * est.key_divergence_)[:, None])
                acc = 100 * np.mean((zs + alpha * cache).argmax(1) == data["y_val"])
                if acc > best[0]:
                    best = (acc, {"alpha": alpha, "beta": beta, "gamma": gamma})
    assert est.hyperparameters_ == best[1] and est.val_top1_ == pytest.approx(best[0])
    assert est.search_["config"] == "caltech101" and est.search_["feat_num"] == len(est.channels_)


def test_ape_searches_the_released_grid_of_its_dataset(gap_source):
    data = few_shot_split(gap_source, shots=1)
    est = APEClassifier(gap_source.text["coop"], dataset="imagenet").fit(data["X"], data["y"], data["X_val"],
                                                                        data["y_val"])
    config = APE["imagenet"]
    assert est.search_["grid"]["beta"] == tip_grid(7, 200) and est.search_["grid"]["alpha"] == tip_grid(7, 20)
    assert est.search_["grid"]["gamma"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert est.search_["criterion_weights"] == list(config.weights)


@pytest.mark.parametrize("cls", [ProKeRClassifier, APEClassifier])
def test_saved_runs_load_with_the_same_logits(cls, gap_source, tmp_path):
    data = few_shot_split(gap_source, shots=2)
    est = cls(gap_source.text["coop"], dataset="oxford_pets").fit(data["X"], data["y"], data["X_val"], data["y_val"])
    path = save_fitted(est, tmp_path / "run.npz", method=cls.__name__, classes=[f"c{i}" for i in range(20)])
    loaded = load_fitted(path).estimator
    np.testing.assert_array_equal(loaded.decision_function(data["X_test"]), est.decision_function(data["X_test"]))
    assert loaded.hyperparameters_ == est.hyperparameters_ and loaded.get_params()["dataset"] == "oxford_pets"


@pytest.mark.parametrize(("rows", "classes"), [(50, 3), (500, 20), (2000, 100)])
def test_fused_scorer_counts_what_argmax_counts(rows, classes):
    gen = torch.Generator().manual_seed(rows)
    z = torch.randn(rows, classes, generator=gen, dtype=torch.float64)
    q = 3 * torch.rand(rows, classes, generator=gen, dtype=torch.float64)
    q[:5] = q[:5, :1]  # rows whose q is flat: only z decides, for every a
    y = torch.randint(0, classes, (rows,), generator=gen)
    alphas = torch.linspace(0, 5, 37, dtype=torch.float64)
    direct = torch.stack([((z + a * q).argmax(1) == y).sum() for a in alphas])
    assert torch.equal(FusedScorer(z, y).correct(q, alphas), direct)


def test_tensor_helpers_keep_every_tensor_on_the_inputs_device():
    """On the meta device (shapes, no data), any tensor a helper creates on the CPU instead of the inputs'
    device makes the operation fail: a CPU-side check of the device consistency CUDA needs (issue 19)."""
    meta = torch.device("meta")
    C, N, D, m = 3, 6, 4, 5
    text, keys = torch.empty(C, D, device=meta), torch.empty(N, D, device=meta)
    labels = torch.empty(N, dtype=torch.int64, device=meta)
    logits = torch.empty(m, C, device=meta)
    y = torch.empty(m, dtype=torch.int64, device=meta)
    outputs = [
        lp_pp_init_alpha(torch.empty(N, C, device=meta), labels, C),
        zero_shot_multipliers(keys, labels, text, 100.0),
        channel_criterion(text, keys, labels, (0.5, 0.5)),
        key_divergence(keys, text, labels),
        weighted_cache(torch.empty(m, N, device=meta), torch.empty(4, N, device=meta), labels, C, 2),
        weighted_cache(torch.empty(m, N, device=meta), torch.empty(4, N, device=meta), labels, C, 0),
        class_sums(torch.empty(m, N, device=meta), labels, C, 0),
        FusedScorer(logits, y).correct(logits, torch.empty(7, device=meta)),
        rbf_kernel(keys, keys, 2.0),
    ]
    assert all(out.device == meta for out in outputs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_baseline_fits_on_cuda_as_on_the_cpu(gap_source):
    """Same choices on cuda as on the CPU, and the same test predictions up to float noise (99% of rows)."""
    from stages.fit.methods import METHODS, make_estimator

    data = few_shot_split(gap_source, shots=4)
    for method in METHODS:
        fits = {device: make_estimator(method, gap_source.text["coop"], 100.0, random_state=1, device=device).fit(
            data["X"], data["y"], data["X_val"], data["y_val"]) for device in ("cpu", "cuda")}
        agree = np.mean(fits["cpu"].predict(data["X_test"]) == fits["cuda"].predict(data["X_test"]))
        assert agree >= 0.99, (method, agree)
        assert set(fits["cpu"].hyperparameters_) == set(fits["cuda"].hyperparameters_), method
