"""The further baselines (CLAP) on synthetic CLIP-like features: contract, accuracy, constraint, persistence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from stages.shared.errors import FitError
from stages.fit.baselines import CLAPClassifier, ZeroShotClassifier
from stages.fit.baselines.clap import raw_prototype_norms
from stages.fit.features import class_prototypes
from stages.fit.methods import DEFAULT_METHODS, METHODS, make_estimator
from stages.fit.persist import load_fitted, save_fitted
from stages.fit.synthetic import make_clip_like
from tests.fit.conftest import few_shot_split

N_CLASSES, DIM, SHOTS = 10, 64, 16


@pytest.fixture(scope="module")
def source():
    """10 classes, D = 64, 3 augmented views; ``image_only=1.0`` so that the shots carry clear extra signal."""
    return make_clip_like(n_classes=N_CLASSES, dim=DIM, train_per_class=20, val_per_class=8, test_per_class=30,
                          aug_views=3, image_only=1.0, seed=3)


@pytest.fixture(scope="module")
def data(source) -> dict:
    out = few_shot_split(source, SHOTS, seed=1)
    out["T"] = source.text["coop"]
    return out


def fit(est, data: dict, aug: bool = False, val: bool = True):
    return est.fit(data["X"], data["y"], data["X_val"] if val else None, data["y_val"] if val else None,
                   data["X_aug"] if aug else None)


def zero_shot_score(data: dict) -> float:
    return ZeroShotClassifier(data["T"]).fit(data["X"], data["y"]).score(data["X_test"], data["y_test"])


def test_registered_but_not_default():
    assert METHODS[-1] == "clap"
    assert DEFAULT_METHODS == ("cmm", "zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "gda", "lp_pp",
                               "proker", "ape")
    assert "clap" not in DEFAULT_METHODS


def test_run_all_and_the_readme_run_the_default_methods():
    root = Path(__file__).resolve().parents[2]
    run_all = re.search(r"^SHOTS=\S+ SEEDS=\S+ METHODS=([\w,]+)$", (root / "run_all.sh").read_text(), re.M)
    readme = re.search(r"--method (cmm,[\w,]+)", (root / "README.md").read_text())
    assert tuple(run_all.group(1).split(",")) == DEFAULT_METHODS
    assert tuple(readme.group(1).split(",")) == DEFAULT_METHODS
    est = make_estimator("clap", np.ones((3, 4), np.float32), 100.0, random_state=2)
    assert isinstance(est, CLAPClassifier) and est.random_state == 2


@pytest.mark.parametrize("aug", [False, True])
def test_clone_refits_to_identical_predictions(data, aug):
    est = fit(CLAPClassifier(data["T"], random_state=7), data, aug=aug)
    twin = fit(clone(est), data, aug=aug)
    assert twin.get_params()["random_state"] == 7
    np.testing.assert_array_equal(est.decision_function(data["X_test"]), twin.decision_function(data["X_test"]))
    assert est.hyperparameters_ == twin.hyperparameters_


def test_fitted_attributes_are_arrays_or_json(data):
    est = fit(CLAPClassifier(data["T"]), data, aug=True)
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert {"classes_", "hyperparameters_", "search_", "val_top1_"} <= set(fitted)
    np.testing.assert_array_equal(est.classes_, np.arange(N_CLASSES))
    for name, value in fitted.items():
        if not isinstance(value, np.ndarray):
            json.dumps(value)
            assert not isinstance(value, (torch.Tensor, np.generic)), name
    assert not [k for k in vars(est) if k.startswith("_")], "no private state may outlive fit"
    assert est.search_ == {}, "CLAP selects nothing on validation data"
    assert est.hyperparameters_["validation"].startswith("none")
    assert est.hyperparameters_["train_rows"] == "views x3"
    assert isinstance(est.val_top1_, float)


def test_validation_data_change_nothing(data):
    with_val = fit(CLAPClassifier(data["T"]), data, val=True)
    without = fit(CLAPClassifier(data["T"]), data, val=False)
    np.testing.assert_array_equal(with_val.weights_, without.weights_)
    assert without.val_top1_ is None


@pytest.mark.parametrize("aug", [False, True])
def test_beats_zero_shot_at_16_shots(data, aug):
    zero_shot = zero_shot_score(data)
    score = fit(CLAPClassifier(data["T"]), data, aug=aug).score(data["X_test"], data["y_test"])
    assert score > zero_shot + 0.10, (score, zero_shot)


def test_starts_from_zero_shot_with_raw_scale(data):
    est = fit(CLAPClassifier(data["T"], epochs=0), data)
    T0 = class_prototypes(data["T"])
    np.testing.assert_allclose(est.weights_, T0 * raw_prototype_norms(data["T"])[:, None], rtol=1e-6)
    zs = ZeroShotClassifier(data["T"]).fit(data["X"], data["y"])
    np.testing.assert_allclose(est.decision_function(data["X_test"]), zs.decision_function(data["X_test"]),
                               rtol=1e-4, atol=1e-3)


def test_multipliers_are_zero_shot_confidences(data):
    est = fit(CLAPClassifier(data["T"], epochs=0), data)
    proba = ZeroShotClassifier(data["T"]).fit(data["X"], data["y"]).predict_proba(data["X"])
    expected = [proba[data["y"] == k, k].mean() for k in range(N_CLASSES)]
    np.testing.assert_allclose(est.multipliers_, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(est.multipliers_, est.initial_multipliers_)  # fixed during training


def test_huge_multiplier_keeps_zero_shot(data):
    # the penalty's curvature is 2 lambda / C: lr is scaled so that SGD stays stable at lambda = 1e6
    est = fit(CLAPClassifier(data["T"], multiplier=1e6, lr=N_CLASSES / 2e6, warmup_epochs=0, epochs=30), data)
    anchor = class_prototypes(data["T"]) * raw_prototype_norms(data["T"])[:, None]
    np.testing.assert_allclose(est.weights_, anchor, atol=1e-4)
    zs = ZeroShotClassifier(data["T"]).fit(data["X"], data["y"])
    np.testing.assert_array_equal(est.predict(data["X_test"]), zs.predict(data["X_test"]))


def test_constraint_limits_drift(data):
    anchor = class_prototypes(data["T"]) * raw_prototype_norms(data["T"])[:, None]
    drift = {}
    for name, params in {"zs_lp": {"multiplier": 0.0}, "clap": {}}.items():
        est = fit(CLAPClassifier(data["T"], **params), data)
        drift[name] = np.linalg.norm(est.weights_ - anchor, axis=1)
    assert (drift["clap"] < drift["zs_lp"]).all(), drift


def test_alm_outer_step_raises_multipliers(data):
    est = fit(CLAPClassifier(data["T"], multiplier_update="alm", epochs=20), data)
    assert (est.multipliers_ >= est.initial_multipliers_).all()
    assert (est.multipliers_ > est.initial_multipliers_).any()


def test_bad_parameters_fail_clearly(data):
    with pytest.raises(FitError, match="prototype_scale"):
        fit(CLAPClassifier(data["T"], prototype_scale="l1"), data)
    with pytest.raises(FitError, match="multiplier_update"):
        fit(CLAPClassifier(data["T"], multiplier_update="often"), data)


def test_save_load_round_trip(data, tmp_path):
    est = fit(CLAPClassifier(data["T"]), data, aug=True)
    path = save_fitted(est, tmp_path / "clap.npz", method="clap", classes=[f"c{i}" for i in range(N_CLASSES)])
    loaded = load_fitted(path)
    assert loaded.method == "clap" and type(loaded.estimator) is CLAPClassifier
    np.testing.assert_array_equal(loaded.decision_function(data["X_test"]), est.decision_function(data["X_test"]))
    assert loaded.estimator.hyperparameters_ == est.hyperparameters_
