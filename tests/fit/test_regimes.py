"""The calibrated synthetic regimes: their geometry matches the real CLIP figures they stand for, and CMM's
default keeps to zero-shot where the shots carry nothing beyond the text or val rewards what test does not."""

from __future__ import annotations

import numpy as np
import pytest

from stages.fit.cmm import CMMClassifier
from stages.fit.methods import make_estimator
from stages.fit.regimes import REAL_FIGURES, REAL_VAL_ZERO_SHOT, REGIMES, geometry, make_regime
from stages.shared.sampling import coop_sample

#: how close each figure must come to the real one (absolute; zero-shot in points). The within-class share and
#: the class-mean cosine are the loosest fits (imagenet_like: 0.59 vs 0.42, 0.73 vs 0.65; BENCHMARKS.md).
TOLERANCE = {"zero_shot_top1": 2.5, "cos_own": 0.03, "cos_wrong": 0.04, "margin": 0.025, "centroid_gap": 0.05,
             "cos_same_class": 0.07, "cos_class_means": 0.08, "cos_class_texts": 0.03,
             "within_class_share": 0.2, "top5_share": 0.08}


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_regime_hits_its_calibration_targets(regime):
    figures = geometry(make_regime(regime, seed=0))
    off = {name: (round(figures[name], 3), target) for name, target in REAL_FIGURES[regime].items()
           if abs(figures[name] - target) > TOLERANCE[name]}
    assert not off, off


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_regimes_do_not_depend_on_the_thread_count(regime):
    """A degenerate step (a text span filling the whole space) once made ImageNet-like depend on BLAS threads."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(1):
        one = make_regime(regime, seed=0).image["test"][0]
    with threadpoolctl.threadpool_limits(2):
        two = make_regime(regime, seed=0).image["test"][0]
    np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-4)


def test_regimes_are_seeded_and_raw():
    a, b = make_regime("pets_like", seed=3), make_regime("pets_like", seed=3)
    np.testing.assert_array_equal(a.image["train"][0], b.image["train"][0])
    norms = np.linalg.norm(a.image["test"][0], axis=1)
    assert norms.min() > 5 and not np.allclose(norms, norms[0]), "features must come raw (random norms)"
    assert make_regime("pets_like", seed=4).image["train"][0][0, 0] != a.image["train"][0][0, 0]


@pytest.mark.parametrize("shots", [1, 2])
def test_cmm_stays_with_zero_shot_where_the_shots_carry_nothing_new(shots):
    """Pets-like: zero-shot already sits at what the images allow; a tiny val split must not pull CMM off it."""
    source = make_regime("pets_like", seed=0)
    (X, y), (Xv, yv), (Xt, yt) = source.image["train"], source.image["val"], source.image["test"]
    text = source.text["coop"]
    for seed in (1, 2, 3):
        subset = coop_sample(y, yv, shots, seed)
        zs = make_estimator("zero_shot", text, 100.0, random_state=seed).fit(X, y).score(Xt, yt)
        cmm = make_estimator("cmm", text, 100.0, random_state=seed)
        cmm.fit(X[subset["train"]], y[subset["train"]], Xv[subset["val"]], yv[subset["val"]])
        assert cmm.score(Xt, yt) >= zs - 0.003, (seed, cmm.score(Xt, yt), zs, cmm.hyperparameters_)


def test_hard_val_regime_is_harder_on_val_as_real_pets_is():
    """Real Pets-25: zero-shot 89.94 on all val images, 92.07 on test; the test geometry is held above."""
    source = make_regime("pets_hard_val", seed=0)
    val, test = geometry(source, "val")["zero_shot_top1"], geometry(source)["zero_shot_top1"]
    real_val, real_test = REAL_VAL_ZERO_SHOT["pets_hard_val"], REAL_FIGURES["pets_hard_val"]["zero_shot_top1"]
    assert abs(val - real_val) <= 1.0, (val, real_val)
    assert abs((test - val) - (real_test - real_val)) <= 1.0, (test, val)
    unshifted = make_regime("pets_hard_val", seed=0, trainval_shift=0.0)
    np.testing.assert_array_equal(unshifted.image["test"][0], source.image["test"][0])   # test is never shifted
    assert geometry(unshifted, "val")["zero_shot_top1"] > val + 1                          # the shift does it


def test_default_stays_above_zero_shot_where_val_rewards_what_test_does_not():
    """pets_hard_val, 16 shots, the whole val split (as the real Pets-25 check): issue 10's rule bets on the
    largest val gains and ends below zero-shot on test; the band average stays above it, nearer the best candidate."""
    source = make_regime("pets_hard_val", seed=0)
    (X, y), (Xv, yv), (Xt, yt) = source.image["train"], source.image["val"], source.image["test"]
    text = source.text["coop"]
    zero_shot = make_estimator("zero_shot", text, 100.0, random_state=0).fit(X, y).score(Xt, yt)
    scores: dict[str, list[float]] = {"average": [], "guarded": [], "best": []}
    for seed in (1, 2, 3):
        train = coop_sample(y, yv, 16, seed)["train"]
        for rule in ("average", "guarded"):
            model = CMMClassifier(text, random_state=seed, selection=rule).fit(X[train], y[train], Xv, yv)
            scores[rule].append(model.score(Xt, yt))
        best = 0.0
        for prior in model.search_["grid"]["prior"]:
            fit = CMMClassifier(text, random_state=seed, prior=prior, prior_grid=None, selection="none")
            l_zs, l_cmm = fit.fit(X[train], y[train]).decompose(Xt)
            best = max([best] + [np.mean((l_zs + a * l_cmm).argmax(1) == yt) for a in model.search_["grid"]["alpha"]])
        scores["best"].append(best)
    mean = {name: float(np.mean(values)) for name, values in scores.items()}
    assert mean["guarded"] < zero_shot, (mean, zero_shot)
    assert mean["average"] > zero_shot + 0.001, (mean, zero_shot)
    assert mean["best"] - mean["average"] < mean["best"] - mean["guarded"], (mean, zero_shot)


def test_default_is_not_below_zero_shot_with_coops_small_hard_val_split():
    """pets_hard_val, 2 shots, CoOp's val split (min(K, 4) = 2 images per class): the band's boldest members win
    val by its shift; without the cap at the best lower bound's change, the average fell to 91.63 (zero-shot 91.90)."""
    source = make_regime("pets_hard_val", seed=0)
    (X, y), (Xv, yv), (Xt, yt) = source.image["train"], source.image["val"], source.image["test"]
    text = source.text["coop"]
    zero_shot = make_estimator("zero_shot", text, 100.0, random_state=0).fit(X, y).score(Xt, yt)
    scores = []
    for seed in (1, 2, 3):
        subset = coop_sample(y, yv, 2, seed)
        train, val = subset["train"], subset["val"]
        scores.append(CMMClassifier(text, random_state=seed).fit(X[train], y[train], Xv[val], yv[val]).score(Xt, yt))
    assert np.mean(scores) >= zero_shot, (scores, zero_shot)
