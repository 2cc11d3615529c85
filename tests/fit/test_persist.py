"""Fitted estimators round-trip through .npz without pickle, and crafted files are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stages.shared.errors import FitError
from stages.fit.cmm import CMMClassifier
from stages.fit.persist import META, FittedBounds, load_fitted, save_fitted
from tests.fit.conftest import few_shot_split


@pytest.fixture(scope="module")
def model_and_data(gap_source):
    data = few_shot_split(gap_source, shots=4)
    model = CMMClassifier(gap_source.text["coop"], steps=20, bias=True).fit(data["X"], data["y"], data["X_val"],
                                                                          data["y_val"])
    return model, data


def test_round_trip_gives_the_same_logits(model_and_data, tmp_path):
    model, data = model_and_data
    path = save_fitted(model, tmp_path / "run.npz", method="cmm", classes=[f"c{i}" for i in range(20)],
                       extra={"proj_labels": np.arange(3)})
    loaded = load_fitted(tmp_path / "run.json")  # the record's name works too
    assert loaded.method == "cmm" and loaded.classes[3] == "c3"
    np.testing.assert_array_equal(loaded.decision_function(data["X_test"]), model.decision_function(data["X_test"]))
    assert loaded.estimator.hyperparameters_ == model.hyperparameters_
    with np.load(path, allow_pickle=False) as npz:
        assert "proj_labels" in npz.files
    assert not list(tmp_path.glob("*.tmp"))


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.npz"
    np.savez(path, **{META: np.array([Exploit(marker)], dtype=object)})
    with pytest.raises(FitError, match="not a fitted run"):
        load_fitted(path)
    assert not marker.exists()


def test_unknown_estimator_class_is_refused(model_and_data, tmp_path):
    model, _ = model_and_data
    path = save_fitted(model, tmp_path / "run.npz", method="cmm", classes=["a"] * 20)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays[META]))
    meta["class"] = "os.system"
    arrays[META] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(FitError, match="does not know"):
        load_fitted(path)


def test_missing_or_garbage_files_named(tmp_path):
    with pytest.raises(FitError, match="not found"):
        load_fitted(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FitError, match="junk.npz"):
        load_fitted(tmp_path / "junk.npz")


class Exploit:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def every_method(tmp_path_factory):
    """One run of every method and CMM ablation (augmented views, three templates) and the bounds of its
    features: 5 classes, 16 dimensions, 3 templates, 20 train rows (the largest split)."""
    from stages.fit.methods import ABLATIONS, METHODS
    from stages.fit.run import fit_runs
    from stages.fit.synthetic import make_clip_like

    source = make_clip_like(n_classes=5, dim=16, train_per_class=4, val_per_class=2, test_per_class=3,
                            n_templates=3, aug_views=2, seed=3)
    runs = tmp_path_factory.mktemp("every_method")
    sweep = dict(shots=[2], seeds=[1], runs_dir=runs, train_views="aug", progress=lambda _: None)
    fit_runs(source, methods=list(METHODS), **sweep)
    for name in ABLATIONS:
        fit_runs(source, methods=["cmm"], ablations=[{name: True}], **sweep)
    # rows: the 20 train images and their 2 views each (ProKeR keeps the shots and views as its support)
    return sorted(runs.rglob("*.npz")), FittedBounds(classes=5, dim=16, templates=3, rows=(2 + 1) * 20), source


def test_every_method_loads_within_the_bounds_of_its_features(every_method):
    from stages.fit.methods import ABLATIONS, METHODS

    paths, bounds, source = every_method
    assert len(paths) == len(METHODS) + len(ABLATIONS)  # every method and every ablation wrote one
    X = source.features("test")
    for path in paths:
        bounded, plain = load_fitted(path, bounds), load_fitted(path)
        np.testing.assert_array_equal(bounded.decision_function(X), plain.decision_function(X), err_msg=str(path))


def test_an_array_beyond_the_bounds_is_refused_before_it_is_read(every_method, tmp_path):
    from tests.reliability import crafted_npz as npz

    paths, bounds, _ = every_method
    (cmm,) = [p for p in paths if p.parent.name == "cmm+aug"]
    wide = npz.replace(cmm, tmp_path / "wide.npz", "fitted__W_", npz.stored("fitted__W_", npz.npy(
        "f4", (61, 16), bytes(61 * 16 * 4))))  # an axis longer than any of the four sizes
    with pytest.raises(FitError, match=r"'fitted__W_': has shape \(61, 16\), more than a fit on its cache stores "
                                       r"\(5 classes, 16 features, 3 templates, 60 images\)"):
        load_fitted(wide, bounds)
    extra = npz.members_of(cmm) + [npz.stored(f"fitted__x{i}_", npz.npy("f4", (16, 16), bytes(1024)))
                                   for i in range(24)]  # each within the bounds, all together 4x past them
    with pytest.raises(FitError, match=r"'fitted__x\d+_': has shape \(16, 16\), more than"):
        load_fitted(npz.write_npz(tmp_path / "many.npz", extra), bounds)
    assert load_fitted(npz.write_npz(tmp_path / "some.npz", extra[:-14]), bounds).method == "cmm"


def test_a_cmm_average_of_all_three_fits_loads_within_the_bounds(every_method, tmp_path):
    """The average may keep every prior strength's fit: two further maps and prototype sets stacked beside the
    primary fit's. Such a file is what a fit writes, so the bounds must take it, also those of a cache with
    fewer images than features, where one map is the largest array (a tiny cache; CLIP's D = 512 with a few
    hundred images)."""
    from tests.reliability import crafted_npz as npz

    paths, _, source = every_method
    bounds = FittedBounds(classes=5, dim=16, templates=3, rows=12)
    (cmm,) = [p for p in paths if p.parent.name == "cmm+aug"]
    rng = np.random.default_rng(0)
    path = npz.replace(cmm, tmp_path / "w.npz", "fitted__extra_W_", npz.stored(
        "fitted__extra_W_", npz.npy_of((0.01 * rng.standard_normal((2, 16, 16))).astype(np.float32))))
    path = npz.replace(path, tmp_path / "wt.npz", "fitted__extra_prototypes_", npz.stored(
        "fitted__extra_prototypes_", npz.npy_of(rng.standard_normal((2, 5, 16)).astype(np.float32))))
    path = npz.replace(path, tmp_path / "wta.npz", "fitted__extra_alpha_", npz.stored(
        "fitted__extra_alpha_", npz.npy_of(np.array([0.5, 0.25]))))
    averaged = load_fitted(path, bounds)
    assert averaged.estimator.extra_W_.shape == (2, 16, 16)
    X = source.features("test")
    assert np.abs(averaged.decision_function(X) - load_fitted(cmm).decision_function(X)).max() > 1e-3
