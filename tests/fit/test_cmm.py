"""CMM as an estimator, on synthetic features whose images are rotated, shifted, noisy copies of their text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from stages.shared.errors import FitError
from stages.fit.cmm import (DEFAULT_GRID, SEARCH_SETTINGS, CMMClassifier, average_members, band_members,
                            guarded_choice, triplet_loss)
from stages.fit.features import class_prototypes, l2_normalize
from stages.fit.gap import gap_metrics
from stages.fit.persist import load_fitted, save_fitted
from tests.fit.conftest import few_shot_split


@pytest.fixture(scope="module")
def data(gap_source):
    return few_shot_split(gap_source, shots=16, seed=1)


@pytest.fixture(scope="module")
def fitted(gap_source, data):
    """The default: fixed schedule, prior strengths x fusion weights, the band val cannot tell from the best averaged."""
    model = CMMClassifier(gap_source.text["coop"], random_state=1)
    return model.fit(data["X"], data["y"], data["X_val"], data["y_val"])


@pytest.fixture(scope="module")
def searched(gap_source, data):
    """The previous default (ablation val_search): learning rate x checkpoint x alpha by val accuracy."""
    model = CMMClassifier(gap_source.text["coop"], random_state=1, **SEARCH_SETTINGS)
    return model.fit(data["X"], data["y"], data["X_val"], data["y_val"])


def zero_shot_top1(source, X, y) -> float:
    return float(np.mean((l2_normalize(X) @ class_prototypes(source.text["coop"]).T).argmax(1) == y) * 100)


@pytest.mark.parametrize("model", ["fitted", "searched"])
def test_beats_zero_shot_by_a_wide_margin(gap_source, data, model, request):
    zs = zero_shot_top1(gap_source, data["X_test"], data["y_test"])
    cmm = request.getfixturevalue(model).score(data["X_test"], data["y_test"]) * 100
    assert cmm > zs + 10, (cmm, zs)


@pytest.mark.parametrize("model, shrink", [("fitted", 0.03), ("searched", 0.1)])
def test_map_shrinks_the_modality_gap(gap_source, data, model, shrink, request):
    """The prior of the default keeps W closer to 0, so its map moves less than the unregularised search's."""
    fitted = request.getfixturevalue(model)
    t0 = class_prototypes(gap_source.text["coop"])
    before = gap_metrics(l2_normalize(data["X_test"]), data["y_test"], t0)
    after = gap_metrics(fitted.transform(data["X_test"]), data["y_test"], t0)
    assert after["centroid_gap"] < before["centroid_gap"] - shrink
    assert after["proto_acc"] > before["proto_acc"] + 5
    if model == "searched":
        assert after["cos_own"] > before["cos_own"]


def test_default_choices_are_recorded_and_made_on_val(fitted, data):
    hp, search = fitted.hyperparameters_, fitted.search_
    assert search["selected_on"] == "val" and hp["selection"] == "average"
    candidates = search["candidates"]
    assert len(candidates) == 1 + len(search["grid"]["prior"]) * len(search["grid"]["alpha"])
    assert candidates[0]["alpha"] == 0 and candidates[0]["val_gain"] == 0 == candidates[0]["changed_vs_zero_shot"]
    best = max(candidates, key=lambda c: (c["val_gain"], -c["gain_se"]))
    assert search["threshold"] == pytest.approx(best["val_gain"] - best["gain_se"]) and search["threshold"] > 0
    bound = max(candidates, key=lambda c: (c["gain_bound"], -c["changed_vs_zero_shot"]))   # the cap: its change
    assert [c["kept"] for c in candidates] == [c["val_gain"] >= search["threshold"] - 1e-9
                                               and c["changed_vs_zero_shot"] <= bound["changed_vs_zero_shot"] + 1e-12
                                               for c in candidates]
    kept = [c for c in candidates if c["kept"]]
    for prior in search["grid"]["prior"]:   # the weight of each fit: the mean alpha of the band's candidates of it
        weight = sum(c["alpha"] for c in kept if c["prior"] == prior) / len(kept)
        assert weight == pytest.approx(sum(a["alpha"] for a in hp["averaged"] if a["prior"] == prior))
    assert fitted.val_top1_ == pytest.approx(100 * fitted.score(data["X_val"], data["y_val"]))
    for c in candidates:
        assert c["gain_bound"] == pytest.approx(c["val_gain"] - c["gain_se"])
        assert c["val_gain"] == pytest.approx(c["val_top1"] - search["zero_shot_val_top1"])


def test_the_average_is_the_mean_of_the_band_logits_and_survives_saving(gap_source, data, fitted, tmp_path):
    """Refit each prior's candidate alone: the mean of the kept candidates' fused logits is the decision function,
    also after a save and load."""
    text, X_test = gap_source.text["coop"], data["X_test"]
    kept = [c for c in fitted.search_["candidates"] if c["kept"]]
    assert len({c["prior"] for c in kept}) > 1      # an average over several fits, not one fit's alpha
    terms = {}
    for prior in {c["prior"] for c in kept}:
        single = CMMClassifier(text, random_state=1, prior=prior, prior_grid=None, selection="none")
        terms[prior] = single.fit(data["X"], data["y"]).decompose(X_test)
    mean = np.mean([terms[c["prior"]][0] + c["alpha"] * terms[c["prior"]][1] for c in kept], axis=0)
    np.testing.assert_allclose(fitted.decision_function(X_test), mean, rtol=1e-4, atol=1e-3)
    path = save_fitted(fitted, tmp_path / "cmm.npz", method="cmm", classes=gap_source.classes)
    np.testing.assert_allclose(load_fitted(path).decision_function(X_test), fitted.decision_function(X_test))
    again = clone(fitted).fit(data["X"], data["y"], data["X_val"], data["y_val"])
    np.testing.assert_array_equal(again.decision_function(X_test), fitted.decision_function(X_test))
    again.set_params(selection="guarded").fit(data["X"], data["y"], data["X_val"], data["y_val"])
    assert len(again.extra_alpha_) == 0          # a refit as a single fit keeps no term of the earlier average


def test_average_without_fusion_never_degenerates(gap_source, data):
    """No zero-shot term to fall back on: with no gain val vouches for, the best candidate alone is kept."""
    model = CMMClassifier(gap_source.text["coop"], fusion=False, steps=10, noise_z=1e6)
    model.fit(data["X"], data["y"], data["X_val"], data["y_val"])
    kept = [c for c in model.search_["candidates"] if c["kept"]]
    assert len(kept) == 1 and kept[0]["val_gain"] == max(c["val_gain"] for c in model.search_["candidates"])
    assert model.alpha_ == 1.0 and len(set(model.predict(data["X_test"]))) > 1


def test_previous_guarded_rule_stays_reachable(gap_source, data):
    model = CMMClassifier(gap_source.text["coop"], random_state=1, selection="guarded")
    model.fit(data["X"], data["y"], data["X_val"], data["y_val"])
    hp, candidates = model.hyperparameters_, model.search_["candidates"]
    assert hp["selection"] == "guarded" and all(c["alpha"] > 0 for c in candidates)   # no zero-shot candidate
    kept = [c for c in candidates if (c["prior"], c["alpha"]) == (hp["prior"], hp["alpha"])]
    assert kept[0]["gain_bound"] == max(c["gain_bound"] for c in candidates)


def test_searched_choices_are_recorded_and_made_on_val(searched):
    hp, search = searched.hyperparameters_, searched.search_
    assert search["selected_on"] == "val"
    assert hp["lr"] in DEFAULT_GRID["lr"] and hp["alpha"] in search["grid"]["alpha"]
    assert hp["steps"] in search["grid"]["step"]
    assert 0 <= searched.val_top1_ <= 100


def test_guarded_choice_counts_a_gain_only_as_far_as_val_vouches_for_it():
    reference = np.array([1] * 90 + [0] * 10)          # zero-shot: 90 of 100 right
    same = reference.copy()                              # changes nothing
    lucky = reference.copy()
    lucky[[90, 91]] = 1
    lucky[[0]] = 0                                       # +1 net on val: noise
    clear = reference.copy()
    clear[90:100] = 1                                    # +10, never worse: a real gain
    keep, bound = guarded_choice(np.stack([lucky, same]), reference, np.array([0.03, 0.0]), 1.0)
    assert keep == 1 and bound[0] < bound[1] == 0.0      # noise loses to staying at zero-shot
    keep, _ = guarded_choice(np.stack([lucky, same, clear]), reference, np.array([0.03, 0.0, 0.1]), 1.0)
    assert keep == 2
    keep, _ = guarded_choice(np.stack([same, same.copy()]), reference, np.array([0.2, 0.05]), 1.0)
    assert keep == 1                                     # ties go to the smaller change from zero-shot

def votes(n: int, fixes: int, breaks: int, start: int = 0) -> np.ndarray:
    """0/1 correctness on ``n`` val images of a candidate that, against a zero-shot reference right on the first
    ``n - 40`` images, breaks ``breaks`` of those and fixes ``fixes`` of the last 40 (from ``start``)."""
    out = np.array([1] * (n - 40) + [0] * 40)
    out[:breaks] = 0
    out[n - 40 + start:n - 40 + start + fixes] = 1
    return out


def test_band_keeps_the_smaller_change_val_cannot_tell_from_the_larger_one():
    """200 val images. Large: +12 fixed, 4 broken (gain 4.0, se 1.99); small: +6, none broken (gain 3.0, se 1.21).
    The lower bounds are 2.01 and 1.79, so the old rule bets on the large change alone; 3.0 is within one
    standard error of 4.0, so the band holds both and the default averages them."""
    reference = votes(200, 0, 0)
    large, small = votes(200, 12, 4), votes(200, 6, 0)
    old, bound = guarded_choice(np.stack([large, small]), reference, np.array([0.2, 0.05]), 1.0)
    assert old == 0 and bound[0] == pytest.approx(4.0 - 100 * np.std(large - reference, ddof=1) / np.sqrt(200))
    members, threshold = band_members(np.stack([reference, large, small]), reference, 1.0)
    assert members.tolist() == [1, 2] and threshold == pytest.approx(bound[0])


def test_average_leaves_out_band_members_bolder_than_the_best_lower_bound():
    """Bold: +14 fixed, 4 broken (gain 5.0, wide error); sure: +10, none broken (gain 5.0, the best lower bound);
    mild: +9, none broken (gain 4.5, in the band). All three are in the band; the average keeps sure and mild, not
    bold, which changes more predictions from zero-shot than the candidate val vouches for best."""
    reference = votes(200, 0, 0)
    bold, sure, mild = votes(200, 14, 4), votes(200, 10, 0), votes(200, 9, 0)
    correct, change = np.stack([reference, bold, sure, mild]), np.array([0.0, 0.09, 0.05, 0.045])
    band, threshold = band_members(correct, reference, 1.0)
    assert band.tolist() == [1, 2, 3]
    assert guarded_choice(correct, reference, change, 1.0)[0] == 2
    members, capped_threshold = average_members(correct, reference, change, 1.0)
    assert members.tolist() == [2, 3] and capped_threshold == threshold
    assert average_members(correct[[0, 3]], reference, change[[0, 3]], 5.0)[0].tolist() == []   # no gain: none


def test_band_holds_a_clear_gain_alone_and_nothing_without_a_gain():
    reference = votes(200, 0, 0)
    clear, small = votes(200, 30, 0), votes(200, 6, 0)          # +15 vs +3: val tells them apart
    members, _ = band_members(np.stack([reference, clear, small]), reference, 1.0)
    assert members.tolist() == [1]
    noise = votes(200, 3, 2)                                     # +0.5, se 1.1: nothing val can vouch for
    members, threshold = band_members(np.stack([reference, noise]), reference, 1.0)
    assert members.tolist() == [] and threshold < 0
    members, _ = band_members(np.stack([reference, noise]), reference, 0.0)
    assert members.tolist() == [1]                               # zero errors of slack: the best itself


def test_step_zero_is_zero_shot(gap_source, data):
    model = CMMClassifier(gap_source.text["coop"], steps=0).fit(data["X"], data["y"])
    np.testing.assert_allclose(model.W_, 0)
    zs = (l2_normalize(data["X_test"]) @ class_prototypes(gap_source.text["coop"]).T).argmax(1)
    np.testing.assert_array_equal(model.predict(data["X_test"]), zs)


def test_clone_refits_identically(gap_source, data):
    model = CMMClassifier(gap_source.text["coop"], steps=40, random_state=5)
    first = model.fit(data["X"], data["y"], data["X_val"], data["y_val"])
    second = clone(first).fit(data["X"], data["y"], data["X_val"], data["y_val"])
    assert clone(first).get_params()["steps"] == 40
    np.testing.assert_array_equal(first.W_, second.W_)
    np.testing.assert_array_equal(first.predict_proba(data["X_test"]), second.predict_proba(data["X_test"]))


def test_no_triplet_ablation_trains_a_different_map(gap_source, data):
    kwargs = dict(steps=60, random_state=1)
    with_triplet = CMMClassifier(gap_source.text["coop"], **kwargs).fit(data["X"], data["y"])
    without = CMMClassifier(gap_source.text["coop"], lambda_tri=0.0, **kwargs).fit(data["X"], data["y"])
    assert np.abs(with_triplet.W_ - without.W_).max() > 1e-4


def test_ablations_change_what_trains(gap_source, data):
    frozen = CMMClassifier(gap_source.text["coop"], steps=20, train_prototypes=False).fit(data["X"], data["y"])
    np.testing.assert_allclose(frozen.prototypes_, class_prototypes(gap_source.text["coop"]), atol=1e-6)
    plain = CMMClassifier(gap_source.text["coop"], steps=0, map="plain").fit(data["X"], data["y"])
    np.testing.assert_allclose(plain.W_, np.eye(plain.W_.shape[0]))
    biased = CMMClassifier(gap_source.text["coop"], steps=20, bias=True).fit(data["X"], data["y"])
    assert biased.bias_ is not None and np.abs(biased.bias_).max() > 0
    unfused = CMMClassifier(gap_source.text["coop"], steps=20, fusion=False).fit(data["X"], data["y"])
    _, l_cmm = unfused.decompose(data["X_test"])
    np.testing.assert_allclose(unfused.decision_function(data["X_test"]), l_cmm)


def test_augmented_views_are_training_rows(gap_source, data):
    views = np.stack([data["X"] * 1.01, data["X"] * 0.99])
    plain = CMMClassifier(gap_source.text["coop"], steps=30).fit(data["X"], data["y"])
    aug = CMMClassifier(gap_source.text["coop"], steps=30).fit(data["X"], data["y"], X_aug=views)
    assert not np.array_equal(plain.W_, aug.W_)
    with pytest.raises(FitError, match="augmented views"):
        CMMClassifier(gap_source.text["coop"]).fit(data["X"], data["y"], X_aug=views[:, :3])


def test_triplet_uses_the_hardest_wrong_prototype():
    cos = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])
    y = torch.tensor([0, 2])
    dist = lambda c: float(np.sqrt(2 - 2 * c))  # noqa: E731
    expected = (max(0, dist(0.9) - dist(0.5) + 1.0) + max(0, dist(0.8) - dist(0.3) + 1.0)) / 2
    assert float(triplet_loss(cos, y, margin=1.0)) == pytest.approx(expected, rel=1e-5)


def test_probabilities_and_score(fitted, data):
    proba = fitted.predict_proba(data["X_test"][:5])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert fitted.score(data["X_test"], data["y_test"]) == pytest.approx(
        np.mean(fitted.predict(data["X_test"]) == data["y_test"]))


@pytest.mark.parametrize("bad, message", [
    (dict(prototypes=None), "needs prototypes"),
    (dict(map="diagonal"), "map must be one of"),
])
def test_bad_parameters_named(gap_source, data, bad, message):
    params = {"prototypes": gap_source.text["coop"], **bad}
    with pytest.raises(FitError, match=message):
        CMMClassifier(**params).fit(data["X"], data["y"])


def test_bad_shapes_and_labels_named(gap_source, data):
    with pytest.raises(FitError, match="D="):
        CMMClassifier(gap_source.text["coop"]).fit(data["X"][:, :10], data["y"])
    with pytest.raises(FitError, match="class indices"):
        CMMClassifier(gap_source.text["coop"]).fit(data["X"], data["y"] + 100)
