"""``--train-views released``: each method uses the cached augmented views as its released code does, beside the
project's ``aug`` protocol and plain training, all from one cache; and the dataset key reaches the estimators."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from stages.shared.errors import FitError
from stages.fit.baselines import GDAClassifier, LinearProbeClassifier, LPPlusPlusClassifier, ProKeRClassifier
from stages.fit.baselines.released import tip_grid
from stages.fit.estimator import check_fit_inputs
from stages.fit.features import l2_normalize
from stages.fit.methods import make_estimator
from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like
from stages.shared.record import read_record
from tests.fit.conftest import few_shot_split


@pytest.fixture(scope="module")
def source():
    return make_clip_like(n_classes=6, dim=32, train_per_class=8, val_per_class=4, test_per_class=10, aug_views=3,
                          image_only=1.0, seed=4)


@pytest.fixture(scope="module")
def data(source) -> dict:
    out = few_shot_split(source, shots=4, seed=1)
    out["T"] = source.text["coop"]
    return out


def test_training_row_policies(data):
    fit_data = check_fit_inputs("test", data["T"], data["X"], data["y"], None, None, data["X_aug"])
    views, n = data["X_aug"], len(data["X"])
    rows, labels = fit_data.training_rows("shots_and_views")
    np.testing.assert_array_equal(rows, np.concatenate([data["X"], *views]))
    np.testing.assert_array_equal(labels, np.tile(data["y"], 4))
    rows, labels = fit_data.training_rows("views")
    np.testing.assert_array_equal(rows, np.concatenate(list(views)))
    np.testing.assert_array_equal(labels, np.tile(data["y"], 3))
    rows, labels = fit_data.training_rows("one_view", seed=5)
    pick = np.random.default_rng(5).integers(3, size=n)
    np.testing.assert_array_equal(rows, views[pick, np.arange(n)])
    np.testing.assert_array_equal(labels, data["y"])
    assert len(set(pick)) > 1, "precondition: the draw mixes views"
    rows, labels = fit_data.training_rows("shots")
    np.testing.assert_array_equal(rows, data["X"])
    with pytest.raises(FitError, match="training rows"):
        fit_data.training_rows("all")


def test_gda_released_trains_on_the_views_alone(data):
    released = GDAClassifier(data["T"], views="released").fit(data["X"], data["y"], X_aug=data["X_aug"])
    views_only = GDAClassifier(data["T"]).fit(np.concatenate(list(data["X_aug"])), np.tile(data["y"], 3))
    np.testing.assert_array_equal(released.W_, views_only.W_)
    aug = GDAClassifier(data["T"]).fit(data["X"], data["y"], X_aug=data["X_aug"])
    assert not np.allclose(aug.W_, released.W_)


def test_lp_pp_released_trains_on_one_view_per_image(data):
    pick = np.random.default_rng(5).integers(3, size=len(data["X"]))
    released = LPPlusPlusClassifier(data["T"], epochs=20, views="released", random_state=5).fit(
        data["X"], data["y"], X_aug=data["X_aug"])
    one_view = LPPlusPlusClassifier(data["T"], epochs=20).fit(data["X_aug"][pick, np.arange(len(pick))], data["y"])
    np.testing.assert_array_equal(released.W_, one_view.W_)


def test_proker_released_takes_the_views_as_its_support(data):
    est = ProKeRClassifier(data["T"], views="released").fit(data["X"], data["y"], data["X_val"], data["y_val"],
                                                            data["X_aug"])
    np.testing.assert_allclose(est.support_, l2_normalize(np.concatenate(list(data["X_aug"]))), atol=1e-6)


def test_linear_probe_released_ignores_the_views(data):
    released = LinearProbeClassifier(data["T"], C_grid=None, views="released").fit(data["X"], data["y"],
                                                                                   X_aug=data["X_aug"])
    plain = LinearProbeClassifier(data["T"], C_grid=None).fit(data["X"], data["y"])
    np.testing.assert_array_equal(released.coef_, plain.coef_)


def test_an_unknown_views_value_is_one_line(data):
    with pytest.raises(FitError, match="views must be one of aug, released"):
        GDAClassifier(data["T"], views="all").fit(data["X"], data["y"])


def test_make_estimator_passes_the_dataset_and_the_view_use(data):
    released = {m: make_estimator(m, data["T"], 100.0, random_state=1, dataset="dtd", train_views="released")
                for m in ("gda", "lp_pp", "proker", "linear_probe", "tip_adapter", "ape")}
    assert {m: e.get_params().get("views") for m, e in released.items()} == {
        "gda": "released", "lp_pp": "released", "proker": "released", "linear_probe": "released",
        "tip_adapter": None, "ape": None}  # Tip-Adapter and APE: the release's cache = the project's aug
    assert {m: e.get_params().get("dataset") for m, e in released.items()} == {
        "gda": None, "lp_pp": None, "proker": "dtd", "linear_probe": None, "tip_adapter": "dtd", "ape": "dtd"}
    assert make_estimator("gda", data["T"], 100.0, random_state=1, train_views="aug").views == "aug"


def test_fit_runs_label_and_record_the_released_protocol(source, tmp_path):
    methods = ["gda", "lp_pp", "proker", "tip_adapter"]
    run = dict(methods=methods, shots=[2], seeds=[1], progress=lambda _: None, runs_dir=tmp_path)
    released = fit_runs(source, train_views="released", **run)
    aug = fit_runs(source, train_views="aug", **run)
    assert [p.parent.name for p in released] == [f"{m}+released" for m in methods]
    assert [p.parent.name for p in aug] == [f"{m}+aug" for m in methods]
    for path in released:
        record = read_record(path)
        assert record.train_views == "released" and record.method_label.endswith("+released")


def test_fit_runs_gives_the_dataset_key_to_the_released_grids(source, tmp_path):
    flowers = replace(source, dataset="oxford_flowers")
    [path] = fit_runs(flowers, methods=["tip_adapter"], shots=[2], seeds=[1], runs_dir=tmp_path,
                      progress=lambda _: None)
    search = json.loads(path.read_text())["search"]
    assert search["config"] == "oxford_flowers" and search["grid"]["beta"] == tip_grid(50, 200)

