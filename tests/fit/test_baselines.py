"""Baselines of stage two (zero-shot, linear probe, Tip-Adapter(-F), GDA, LP++, ProKeR, APE) on synthetic CLIP-like
features: the shared estimator contract, and Tip-Adapter's formulas and released per-dataset configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from stages.shared.errors import UserError
from stages.fit.baselines import (APEClassifier, GDAClassifier, LinearProbeClassifier, LPPlusPlusClassifier,
                                  ProKeRClassifier, TipAdapterClassifier, TipAdapterFClassifier, ZeroShotClassifier)
from stages.fit.baselines.released import APE, PROKER_FIXED, TIP, tip_grid
from stages.fit.baselines.tip_cache import class_sums, equal_blocks
from stages.fit.features import class_prototypes, l2_normalize
from stages.shared.sampling import coop_sample
from stages.fit.synthetic import make_clip_like

N_CLASSES, DIM, SHOTS = 10, 64, 16
FAST = {  # small settings so the suite stays fast; the defaults' behaviour is the same
    LinearProbeClassifier: {"C_grid": (0.1, 1.0, 10.0, 100.0, 1000.0)},
    TipAdapterClassifier: {},
    TipAdapterFClassifier: {"epochs": 5},
    LPPlusPlusClassifier: {"epochs": 60},
    APEClassifier: {"beta_grid": tip_grid(7.0, 20)},
}
ESTIMATORS = [ZeroShotClassifier, LinearProbeClassifier, TipAdapterClassifier, TipAdapterFClassifier, GDAClassifier,
              LPPlusPlusClassifier, ProKeRClassifier, APEClassifier]
#: what each estimator uses without validation data when its parameters are left at their defaults (the
#: released configs of the default dataset, Caltech101, where a method has them)
NO_VAL_DEFAULTS = {
    TipAdapterClassifier: {"alpha": TIP["caltech101"].init_alpha, "beta": TIP["caltech101"].init_beta},
    TipAdapterFClassifier: {"alpha": TIP["caltech101"].init_alpha, "beta": TIP["caltech101"].init_beta},
    APEClassifier: {"alpha": APE["caltech101"].init_alpha, "beta": APE["caltech101"].init_beta,
                    "gamma": APE["caltech101"].init_gamma},
    ProKeRClassifier: PROKER_FIXED,
}


@pytest.fixture(scope="module")
def data() -> dict:
    """16-shot train / 4-shot val subsets (CoOp sampler) of a 10-class synthetic set with 3 augmented views.

    ``image_only=1.0`` (default 0.5) strengthens the class signal that only the shots reveal, so that every
    few-shot method beats zero-shot by a clear margin (~20 points for Tip-Adapter, ~34 for the probe).
    """
    src = make_clip_like(n_classes=N_CLASSES, dim=DIM, train_per_class=20, val_per_class=8, test_per_class=30,
                         aug_views=3, image_only=1.0, seed=3)
    train_x, train_y = src.image["train"]
    val_x, val_y = src.image["val"]
    pos = coop_sample(train_y, val_y, SHOTS, seed=1)
    return {"T": src.text["coop"], "X": train_x[pos["train"]], "y": train_y[pos["train"]],
            "X_val": val_x[pos["val"]], "y_val": val_y[pos["val"]], "X_aug": src.aug_features(pos["train"]),
            "X_test": src.image["test"][0], "y_test": src.image["test"][1]}


def make(cls: type, data: dict, **params):
    """An estimator of ``cls`` on the synthetic prototypes with the fast test settings."""
    return cls(data["T"], **{**FAST.get(cls, {}), **params})


def fit_val(est, data: dict, aug: bool = False):
    return est.fit(data["X"], data["y"], data["X_val"], data["y_val"], data["X_aug"] if aug else None)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_refits_to_identical_predictions(cls, data):
    est = fit_val(make(cls, data, random_state=7), data, aug=True)
    twin = fit_val(clone(est), data, aug=True)
    assert twin.get_params()["random_state"] == 7
    np.testing.assert_array_equal(est.decision_function(data["X_test"]), twin.decision_function(data["X_test"]))
    assert est.hyperparameters_ == twin.hyperparameters_


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fitted_attributes_are_arrays_or_json(cls, data):
    est = fit_val(make(cls, data), data, aug=True)
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert {"classes_", "hyperparameters_", "search_", "val_top1_"} <= set(fitted)
    np.testing.assert_array_equal(est.classes_, np.arange(N_CLASSES))
    for name, value in fitted.items():
        if not isinstance(value, np.ndarray):
            json.dumps(value)  # raises TypeError for tensors, estimators, numpy scalars
            assert not isinstance(value, (torch.Tensor, np.generic)), name
    assert not [k for k in vars(est) if k.startswith("_")], "no private state may outlive fit"


@pytest.mark.parametrize("cls", [LinearProbeClassifier, TipAdapterClassifier, TipAdapterFClassifier, GDAClassifier,
                                 LPPlusPlusClassifier, ProKeRClassifier, APEClassifier])
def test_few_shot_baselines_beat_zero_shot(cls, data):
    zero_shot = ZeroShotClassifier(data["T"]).fit(data["X"], data["y"]).score(data["X_test"], data["y_test"])
    score = fit_val(make(cls, data), data).score(data["X_test"], data["y_test"])
    assert score > zero_shot + 0.1, (score, zero_shot)


@pytest.mark.parametrize("cls", [LinearProbeClassifier, TipAdapterClassifier, TipAdapterFClassifier, GDAClassifier,
                                 ProKeRClassifier, APEClassifier])
def test_search_on_val_and_defaults_without(cls, data):
    est = fit_val(make(cls, data), data)
    assert est.search_["selected_on"] == "val"
    for name, value in est.hyperparameters_.items():
        assert value in est.search_["grid"][name]
    assert est.val_top1_ == pytest.approx(100 * est.score(data["X_val"], data["y_val"]))

    plain = make(cls, data).fit(data["X"], data["y"])
    assert plain.search_ == {} and plain.val_top1_ is None
    defaults = NO_VAL_DEFAULTS.get(cls) or {k: plain.get_params()[k] for k in plain.hyperparameters_}
    assert plain.hyperparameters_ == pytest.approx(defaults)


def test_zero_shot_logits_and_val_record(data):
    est = ZeroShotClassifier(data["T"], logit_scale=50.0).fit(data["X"], data["y"], data["X_val"], data["y_val"])
    expected = 50.0 * l2_normalize(data["X_test"]) @ class_prototypes(data["T"]).T
    np.testing.assert_allclose(est.decision_function(data["X_test"]), expected, rtol=1e-5, atol=1e-5)
    assert est.val_top1_ == pytest.approx(100 * est.score(data["X_val"], data["y_val"]))
    assert est.search_ == {} and est.hyperparameters_ == {}
    assert ZeroShotClassifier(data["T"]).fit(data["X"], data["y"]).val_top1_ is None


def test_linear_probe_choice_follows_the_val_labels(data):
    """Relabel val with the predictions of the probe at one C: the search must pick that C."""
    grid = (0.1, 10.0, 10000.0)
    preds = {c: LinearProbeClassifier(data["T"], C=c, C_grid=grid).fit(data["X"], data["y"]).predict(data["X_val"])
             for c in (grid[0], grid[-1])}
    assert not np.array_equal(preds[grid[0]], preds[grid[-1]]), "precondition: the two probes must disagree"
    for c, labels in preds.items():
        est = LinearProbeClassifier(data["T"], C_grid=grid).fit(data["X"], data["y"], data["X_val"], labels)
        assert est.hyperparameters_["C"] == c
        assert est.val_top1_ == 100.0


def test_linear_probe_views_are_extra_rows(data):
    plain = fit_val(make(LinearProbeClassifier, data, C=10.0, C_grid=None), data)
    views = make(LinearProbeClassifier, data, C=10.0, C_grid=None).fit(data["X"], data["y"], X_aug=data["X_aug"])
    assert views.hyperparameters_ == {"C": 10.0} and views.search_ == {}
    assert not np.allclose(plain.coef_, views.coef_)


def test_tip_adapter_choice_follows_the_val_labels(data):
    """Val labelled by zero-shot favours the smallest alpha; labelled by the cache alone, a larger one."""
    X_val = data["X_val"]
    zs_labels = ZeroShotClassifier(data["T"]).fit(data["X"], data["y"]).predict(X_val)
    est = TipAdapterClassifier(data["T"]).fit(data["X"], data["y"])
    v = l2_normalize(X_val)
    onehot = np.eye(N_CLASSES)[est.cache_labels_]
    cache_labels = (np.exp(-5.0 * (1 - v @ est.cache_keys_.T)) @ onehot).argmax(1)
    assert not np.array_equal(zs_labels, cache_labels), "precondition: zero-shot and cache must disagree"

    by_zs = TipAdapterClassifier(data["T"]).fit(data["X"], data["y"], X_val, zs_labels)
    by_cache = TipAdapterClassifier(data["T"]).fit(data["X"], data["y"], X_val, cache_labels)
    assert by_zs.hyperparameters_["alpha"] == by_zs.search_["grid"]["alpha"][0]
    assert by_cache.hyperparameters_["alpha"] > by_zs.hyperparameters_["alpha"]
    assert by_cache.val_top1_ > 100 * np.mean(zs_labels == cache_labels)


def test_tip_adapter_alpha_zero_is_zero_shot(data):
    tip = TipAdapterClassifier(data["T"], alpha=0.0).fit(data["X"], data["y"])
    zero_shot = ZeroShotClassifier(data["T"]).fit(data["X"], data["y"])
    np.testing.assert_allclose(tip.decision_function(data["X_test"]), zero_shot.decision_function(data["X_test"]),
                               rtol=1e-5, atol=1e-4)


def dense_tip_logits(est, X: np.ndarray) -> np.ndarray:
    """The published formula with a dense one-hot value matrix."""
    v = l2_normalize(X).astype(np.float64)
    values = np.eye(N_CLASSES)[est.cache_labels_]
    alpha, beta = est.hyperparameters_["alpha"], est.hyperparameters_["beta"]
    zs = est.logit_scale * v @ est.zs_prototypes_.T
    return zs + alpha * np.exp(-beta * (1 - v @ est.cache_keys_.T)) @ values


@pytest.mark.parametrize("cls", [TipAdapterClassifier, TipAdapterFClassifier])
@pytest.mark.parametrize("uneven", [False, True])
def test_tip_adapter_one_hot_path_equals_dense_formula(cls, uneven, data):
    X, y = data["X"], data["y"]
    if uneven:  # drop shots of some classes: the index_add path instead of the reshape-sum
        keep = np.concatenate([np.flatnonzero(y == c)[: 4 + c] for c in range(N_CLASSES)])
        X, y = X[keep], y[keep]
    est = make(cls, data).fit(X, y, data["X_val"], data["y_val"])
    assert bool(equal_blocks(est.cache_labels_, N_CLASSES)) is not uneven
    np.testing.assert_allclose(est.decision_function(data["X_test"]), dense_tip_logits(est, data["X_test"]),
                               rtol=1e-4, atol=1e-3)


def test_class_sums_paths_agree():
    gen = torch.Generator().manual_seed(0)
    E = torch.rand(7, 12, generator=gen)
    labels = torch.arange(4).repeat_interleave(3)
    dense = E @ torch.eye(4)[labels]
    torch.testing.assert_close(class_sums(E, labels, 4, block=3), dense)
    torch.testing.assert_close(class_sums(E, labels, 4, block=0), dense)


def test_tip_cache_keys_are_normalised_view_means(data):
    est = TipAdapterClassifier(data["T"]).fit(data["X"], data["y"], X_aug=data["X_aug"])
    order = np.argsort(data["y"], kind="stable")
    np.testing.assert_allclose(est.cache_keys_, l2_normalize(data["X_aug"].mean(0))[order], atol=1e-6)
    np.testing.assert_array_equal(est.cache_labels_, data["y"][order])


def test_tip_adapter_f_picks_the_epoch_on_val(data):
    est = fit_val(make(TipAdapterFClassifier, data), data, aug=True)
    accs = [acc for _, acc in est.val_curve_]
    assert [e for e, _ in est.val_curve_] == list(range(1, 6))
    assert est.best_epoch_ == 1 + int(np.argmax(accs))
    assert not np.allclose(est.cache_keys_, TipAdapterClassifier(data["T"]).fit(
        data["X"], data["y"], X_aug=data["X_aug"]).cache_keys_), "the keys must have trained"

    plain = make(TipAdapterFClassifier, data).fit(data["X"], data["y"])
    assert plain.best_epoch_ == 5 and plain.val_curve_ == []


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bad_input_is_a_one_line_user_error(cls, data):
    with pytest.raises(UserError, match="prototypes"):
        cls().fit(data["X"], data["y"])
    with pytest.raises(UserError, match="augmented views"):
        make(cls, data).fit(data["X"], data["y"], X_aug=data["X_aug"][:, :5])
    with pytest.raises(UserError, match=r"class indices in \[0, 10\)"):
        make(cls, data).fit(data["X"], data["y"] + 5)


@pytest.mark.parametrize(("dataset", "key"), [("oxford_flowers", "oxford_flowers"), ("fgvc_aircraft", "fgvc"),
                                              ("imagenet_sketch", "imagenet"), ("folder", "caltech101"),
                                              (None, "caltech101")])
def test_tip_adapter_searches_the_released_grid_of_its_dataset(dataset, key, data):
    config = TIP[key]
    est = TipAdapterClassifier(data["T"], dataset=dataset).fit(data["X"], data["y"], data["X_val"], data["y_val"])
    grid = est.search_["grid"]
    assert est.search_["config"] == key
    assert grid["beta"] == tip_grid(config.scale[0], 200) and grid["alpha"] == tip_grid(config.scale[1], 20)
    assert len(grid["beta"]) == 200 and grid["beta"][0] == 0.1 and grid["beta"][-1] < config.scale[0]
    plain = TipAdapterClassifier(data["T"], dataset=dataset).fit(data["X"], data["y"])
    assert plain.hyperparameters_ == {"alpha": config.init_alpha, "beta": config.init_beta}


def test_flowers_range_is_the_released_one(data):
    """Oxford Flowers' released search spans beta and alpha in [0.1, 50): 200 and 20 steps."""
    grid = TipAdapterClassifier(data["T"], dataset="oxford_flowers").fit(
        data["X"], data["y"], data["X_val"], data["y_val"]).search_["grid"]
    assert grid["beta"][:2] == pytest.approx([0.1, 0.3495]) and grid["alpha"][:2] == pytest.approx([0.1, 2.595])


def test_tip_adapter_f_trains_at_the_released_initial_weights_and_epochs(data):
    X, y = data["X"], data["y"]
    caltech = TipAdapterFClassifier(data["T"], dataset="caltech101").fit(X, y)  # init alpha 3, beta 1, 20 epochs
    imagenet = TipAdapterFClassifier(data["T"], dataset="imagenet").fit(X, y)  # init alpha 1.17
    imagenet_at_3 = TipAdapterFClassifier(data["T"], dataset="imagenet", alpha=3.0).fit(X, y)
    assert caltech.best_epoch_ == imagenet.best_epoch_ == 20 and caltech.hyperparameters_ == {"alpha": 3.0, "beta": 1.0}
    assert not np.allclose(caltech.cache_keys_, imagenet.cache_keys_)
    np.testing.assert_array_equal(caltech.cache_keys_, imagenet_at_3.cache_keys_)
    eurosat = TipAdapterFClassifier(data["T"], dataset="eurosat").fit(X, y)
    assert eurosat.best_epoch_ == 100 and eurosat.hyperparameters_ == {"alpha": 2.0, "beta": 1.0}


def test_tip_search_equals_the_released_loops(data):
    """The one-pass alpha scoring picks what the release's ``for beta: for alpha: if acc > best`` picks."""
    betas, alphas = tip_grid(12.0, 40), tip_grid(5.0, 20)
    est = TipAdapterClassifier(data["T"], alpha_grid=alphas, beta_grid=betas).fit(
        data["X"], data["y"], data["X_val"], data["y_val"])
    v = l2_normalize(data["X_val"]).astype(np.float64)
    values = np.eye(N_CLASSES)[est.cache_labels_]
    zs = est.logit_scale * v @ est.zs_prototypes_.T
    best = (-1.0, None)
    for beta in betas:
        cache = np.exp(-beta * (1 - v @ est.cache_keys_.T)) @ values
        for alpha in alphas:
            acc = 100 * np.mean((zs + alpha * cache).argmax(1) == data["y_val"])
            if acc > best[0]:
                best = (acc, {"alpha": alpha, "beta": beta})
    assert est.hyperparameters_ == best[1] and est.val_top1_ == pytest.approx(best[0])
