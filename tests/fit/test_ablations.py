"""Every CMM ablation changes the model it names, on features calibrated to real CLIP geometry (issue 21: the
former ``plain_map`` was the residual map written another way, and its fits equalled CMM's)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from stages.fit.cmm import CMMClassifier
from stages.fit.features import class_prototypes
from stages.fit.methods import ABLATIONS, REMOVED_ABLATIONS, cmm_ablation_params
from stages.fit.regimes import make_regime
from tests.fit.conftest import few_shot_split

STEPS = 40  # the schedule is not what is tested; a shorter one keeps the test quick


@pytest.fixture(scope="module")
def pets():
    """16 shots of the Caltech-like regime (64 classes, D = 512), where CMM's default keeps a real gain over
    zero-shot (on the Pets-like regime it rightly keeps zero-shot, and so would every ablation: nothing to see)."""
    source = make_regime("caltech_like", seed=0)
    return source, few_shot_split(source, shots=16, seed=1)


def _fit(pets, **params) -> CMMClassifier:
    source, data = pets
    model = CMMClassifier(source.text["coop"], random_state=1, **{"steps": STEPS, **params})
    return model.fit(data["X"], data["y"], data["X_val"], data["y_val"])


@pytest.fixture(scope="module")
def cmm(pets) -> CMMClassifier:
    return _fit(pets)


def _logit_change(model: CMMClassifier, reference: CMMClassifier, X: np.ndarray) -> float:
    return float(np.abs(model.decision_function(X) - reference.decision_function(X)).max())


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_every_ablation_changes_the_model(pets, cmm, name):
    """Test logits move by more than float noise (the former plain map moved them by about 1e-5), and the part
    the ablation names is what changed."""
    source, data = pets
    ablated = _fit(pets, **cmm_ablation_params({name: True}))
    assert _logit_change(ablated, cmm, data["X_test"]) > 0.05, name
    t0 = class_prototypes(source.text["coop"])
    if name == "no_triplet":
        assert ablated.lambda_tri == 0 and np.abs(ablated.W_ - cmm.W_).max() > 1e-4
    elif name == "frozen_prototypes":
        np.testing.assert_allclose(ablated.prototypes_, t0, atol=1e-6)
        assert np.abs(cmm.prototypes_ - t0).max() > 1e-4
    elif name == "no_fusion":  # zero-shot's logits play no part: other zero-shot prototypes change nothing
        blind = copy.deepcopy(ablated)
        blind.zs_prototypes_ = np.random.default_rng(0).standard_normal(blind.zs_prototypes_.shape)
        np.testing.assert_array_equal(blind.decision_function(data["X_test"]), ablated.decision_function(data["X_test"]))
        with_fusion = copy.deepcopy(cmm)
        with_fusion.zs_prototypes_ = blind.zs_prototypes_
        assert _logit_change(with_fusion, cmm, data["X_test"]) > 0.05  # the check can see a zero-shot term
    elif name == "no_prior":  # without the pull towards zero-shot the map moves further than at any prior
        assert ablated.hyperparameters_["prior"] == 0                    # (the default averages those fits)
        for prior in cmm.search_["grid"]["prior"]:
            pulled = _fit(pets, prior=prior, prior_grid=None, selection="none")
            assert np.linalg.norm(ablated.W_) > np.linalg.norm(pulled.W_) + 1e-3, prior
        assert np.linalg.norm(ablated.W_) > 1.5 * np.linalg.norm(_fit(pets, prior_grid=None, selection="none").W_)
    elif name == "bias":
        assert cmm.bias_ is None and np.abs(ablated.bias_).max() > 1e-4
    elif name == "val_search":
        assert ablated.hyperparameters_["selection"] == "search" and cmm.hyperparameters_["selection"] == "average"
    else:
        pytest.fail(f"ablation {name} has no check of what it changes; add one here")


def test_the_removed_plain_map_is_the_residual_map_written_another_way(pets, cmm):
    """Why plain_map went: v' = vW with W = I pulled towards I trains exactly as v + vW from 0 pulled to 0."""
    _, data = pets
    plain = _fit(pets, map="plain")
    assert _logit_change(plain, cmm, data["X_test"]) < 1e-3
    np.testing.assert_allclose(plain.W_ - np.eye(len(plain.W_)), cmm.W_, atol=1e-4)
    assert "plain_map" in REMOVED_ABLATIONS and "plain_map" not in ABLATIONS
