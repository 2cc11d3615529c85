"""``fit_runs``: records, skipping, subsets, shift evaluation, and the test split kept out of every choice."""

from __future__ import annotations

import inspect
import re
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stages.shared.errors import FitError
from stages.fit.persist import load_fitted
from stages.fit.run import fit_runs
from stages.shared.sampling import write_subsets
from stages.fit.source import ArraySource
from stages.fit.synthetic import make_clip_like
from stages.shared.record import read_record

FAST = dict(methods=["cmm", "zero_shot"], shots=[2], seeds=[1])


@pytest.fixture(scope="module")
def source() -> ArraySource:
    return make_clip_like(n_classes=8, dim=32, train_per_class=10, val_per_class=4, test_per_class=12, seed=2)


@pytest.fixture(scope="module")
def runs(source, tmp_path_factory) -> tuple[Path, list[Path]]:
    runs_dir = tmp_path_factory.mktemp("runs")
    return runs_dir, fit_runs(source, runs_dir=runs_dir, progress=lambda _: None, **FAST)


def test_one_record_per_run_in_the_documented_layout(runs):
    runs_dir, paths = runs
    assert sorted(p.relative_to(runs_dir).as_posix() for p in paths) == [
        "synthetic/synthetic__none/cmm/shots2_seed1.json", "synthetic/synthetic__none/zero_shot/shots2_seed1.json"]
    for path in paths:
        record = read_record(path)  # the shared validator (report, predict) accepts it
        assert record.shots == 2 and record.seed == 1
        raw = json.loads(path.read_text())
        assert raw["search"].get("selected_on", "val") == "val"
        assert raw["subset"]["source"] == "coop" and len(raw["subset"]["train"]) == 16
        assert raw["timing"]["fit_seconds"] >= 0 and raw["versions"]["numpy"]


def test_recorded_accuracy_is_the_saved_model_on_test(source, runs):
    _, paths = runs
    X, y = source.image["test"]
    for path in paths:
        fitted = load_fitted(path)
        accuracy = float(np.mean(fitted.estimator.predict(X) == y) * 100)
        assert json.loads(path.read_text())["metrics"]["test_top1"] == pytest.approx(accuracy)
        assert fitted.classes == source.classes


def test_records_carry_top5_and_mean_per_class_of_the_saved_model(source, runs):
    _, paths = runs
    X, y = source.image["test"]
    for path in paths:
        logits = load_fitted(path).estimator.decision_function(X)
        metrics = json.loads(path.read_text())["metrics"]
        top5 = np.argsort(-logits, axis=1)[:, :5]
        assert metrics["test_top5"] == pytest.approx(float(np.mean([y[i] in top5[i] for i in range(len(y))]) * 100))
        recalls = [np.mean(logits[y == c].argmax(1) == c) for c in np.unique(y)]
        assert metrics["test_mean_per_class"] == pytest.approx(float(np.mean(recalls) * 100))
        assert metrics["test_top5"] >= metrics["test_top1"]


def test_cmm_record_has_gap_before_and_after_and_the_projection(runs):
    _, paths = runs
    cmm = next(p for p in paths if "/cmm/" in p.as_posix())
    gap = json.loads(cmm.read_text())["gap"]
    assert set(gap) == {"before", "after"} and gap["before"]["centroid_gap"] > 0
    with np.load(cmm.with_suffix(".npz"), allow_pickle=False) as npz:
        assert npz["proj_images_before"].shape[1] == 2
        assert npz["proj_protos_after"].shape == (8, 2)


def test_rerun_skips_and_force_refits(source, runs):
    runs_dir, paths = runs
    stamps = [p.stat().st_mtime_ns for p in paths]
    lines: list[str] = []
    fit_runs(source, runs_dir=runs_dir, progress=lines.append, **FAST)
    assert lines == [f"2 records exist, skipped; 0 fitted (under {paths[0].parent.parent})"]  # one summary line
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    lines.clear()
    fit_runs(source, runs_dir=runs_dir, progress=lines.append, force=True, **FAST)
    assert not any("skipped" in line for line in lines)


def test_records_of_another_cache_content_are_refitted(source, tmp_path):
    fit_runs(source, runs_dir=tmp_path, progress=lambda _: None, **FAST)
    lines: list[str] = []
    fit_runs(replace(source, cache_key="rebuilt"), runs_dir=tmp_path, progress=lines.append, **FAST)
    assert not any("skipped" in line for line in lines)


class SplitSpy(ArraySource):
    """A source that fails the test if test features are read while any estimator is fitting."""

    test_reads = 0

    def features(self, split, positions=None):
        if split == "test":
            assert not any(frame.function in ("fit", "_fit_one", "_fit_grid", "_fit_guarded", "_train", "_search")
                           for frame in inspect.stack()), \
                "test features were read during fit"
            type(self).test_reads += 1
        return super().features(split, positions)


def test_no_fit_code_path_reads_test_features(source, tmp_path):
    spy = SplitSpy(**{f: getattr(source, f) for f in source.__dataclass_fields__})
    fit_runs(spy, runs_dir=tmp_path, progress=lambda _: None,
             methods=["cmm", "zero_shot", "gda", "lp_pp", "proker", "ape", "tip_adapter"], shots=[1, 4], seeds=[1, 2])
    assert SplitSpy.test_reads >= 1


def test_test_features_cannot_change_the_new_baselines_choices(source, tmp_path):
    X_test, y_test = source.image["test"]
    noise = np.random.default_rng(1).standard_normal(X_test.shape).astype(np.float32)
    poisoned = replace(source, image={**source.image, "test": (noise, y_test)})
    run = dict(methods=["gda", "lp_pp", "cmm", "proker", "ape", "tip_adapter"], shots=[4], seeds=[2],
               progress=lambda _: None)
    for clean, dirty in zip(fit_runs(source, runs_dir=tmp_path / "a", **run),
                            fit_runs(poisoned, runs_dir=tmp_path / "b", **run)):
        ra, rb = json.loads(clean.read_text()), json.loads(dirty.read_text())
        assert ra["hyperparameters"] == rb["hyperparameters"] and ra["search"] == rb["search"]


def test_test_features_cannot_change_any_choice(source, tmp_path):
    X_test, y_test = source.image["test"]
    noise = np.random.default_rng(0).standard_normal(X_test.shape).astype(np.float32)
    poisoned = replace(source, image={**source.image, "test": (noise, y_test)})
    a = fit_runs(source, runs_dir=tmp_path / "a", progress=lambda _: None, **FAST)
    b = fit_runs(poisoned, runs_dir=tmp_path / "b", progress=lambda _: None, **FAST)
    for clean, dirty in zip(a, b):
        ra, rb = json.loads(clean.read_text()), json.loads(dirty.read_text())
        assert ra["hyperparameters"] == rb["hyperparameters"]
        assert ra["metrics"]["val_top1"] == rb["metrics"]["val_top1"]
        np.testing.assert_array_equal(load_fitted(clean).estimator.decision_function(X_test),
                                      load_fitted(dirty).estimator.decision_function(X_test))


def test_subset_files_are_used_as_given(source, tmp_path):
    train, val = source.split_labels("train"), source.split_labels("val")
    write_subsets(train, val, [2], [1], tmp_path / "subsets")
    custom = {"train": [0, 1, 2, 3, 4, 5, 6, 7], "val": [0, 1]}
    (tmp_path / "subsets" / "shots2_seed1.json").write_text(json.dumps(custom))
    [path] = fit_runs(source, runs_dir=tmp_path / "runs", subsets_dir=tmp_path / "subsets", methods=["zero_shot"],
                      shots=[2], seeds=[1], progress=lambda _: None)
    subset = json.loads(path.read_text())["subset"]
    assert subset["train"] == custom["train"] and subset["val"] == custom["val"]
    assert subset["source"].startswith("file:shots2_seed1.json@")


def test_shift_sets_score_only_their_classes(source, tmp_path):
    X, y = source.image["test"]
    keep = np.isin(y, [1, 3, 5])
    remap = {1: 0, 3: 1, 5: 2}
    shifted = ArraySource(dataset="synthetic_r", classes=["class 1", "class 3", "class 5"],
                          image={"test": (X[keep], np.array([remap[int(v)] for v in y[keep]]))},
                          text={}, parent_class_ids=np.array([1, 3, 5]))
    [path] = fit_runs(source, runs_dir=tmp_path, eval_sources={"synthetic_r": shifted}, methods=["zero_shot"],
                      shots=[2], seeds=[1], progress=lambda _: None)
    estimator = load_fitted(path).estimator
    logits = estimator.decision_function(X[keep])[:, [1, 3, 5]]
    expected = float(np.mean(np.array([1, 3, 5])[logits.argmax(1)] == y[keep]) * 100)
    assert json.loads(path.read_text())["metrics"]["shift"] == {"synthetic_r": pytest.approx(expected)}


def test_augmented_training_needs_cached_views(source, tmp_path):
    with pytest.raises(FitError, match="--aug-views"):
        fit_runs(source, runs_dir=tmp_path, train_views="aug", progress=lambda _: None, **FAST)


def test_each_ablation_is_its_own_run_and_a_combination_is_one(source, tmp_path):
    paths = fit_runs(source, runs_dir=tmp_path, methods=["cmm", "zero_shot"], shots=[1], seeds=[1],
                     progress=lambda _: None, ablations=[{"no_triplet": True}, {"frozen_prototypes": True},
                                                         {"no_triplet": True, "frozen_prototypes": True}])
    records = {json.loads(p.read_text())["method_label"]: json.loads(p.read_text()) for p in paths}
    assert sorted(records) == ["cmm+frozen_prototypes", "cmm+frozen_prototypes+no_triplet", "cmm+no_triplet",
                               "zero_shot"]
    both = records["cmm+frozen_prototypes+no_triplet"]
    assert both["ablation"] == {"frozen_prototypes": True, "no_triplet": True}
    assert both["hyperparameters"]["lambda_tri"] == 0.0 and both["hyperparameters"]["train_prototypes"] is False
    assert records["cmm+no_triplet"]["hyperparameters"]["train_prototypes"] is True
    assert records["cmm+frozen_prototypes"]["hyperparameters"]["lambda_tri"] == 1.0
    assert records["zero_shot"]["ablation"] == {} and "lambda_tri" not in both["search"]["grid"]


@pytest.mark.parametrize("name, message", [("plain_map", "was removed"), ("nope", "unknown ablation 'nope'")])
def test_unknown_and_removed_ablations_are_refused_before_any_fit(source, tmp_path, name, message):
    with pytest.raises(FitError, match=message):
        fit_runs(source, runs_dir=tmp_path, methods=["zero_shot", "cmm"], shots=[1], seeds=[1],
                 progress=lambda _: None, ablations=[{name: True}])
    assert not list(tmp_path.rglob("*.json"))


def test_classes_shorter_than_k_use_all_their_images_and_say_so(tmp_path):
    short = make_clip_like(n_classes=4, dim=16, train_per_class=[10, 2, 10, 10], val_per_class=2, test_per_class=3)
    lines: list[str] = []
    [path] = fit_runs(short, runs_dir=tmp_path, methods=["zero_shot"], shots=[4], seeds=[1], progress=lines.append)
    record = json.loads(path.read_text())
    assert len(record["subset"]["train"]) == 4 + 2 + 4 + 4
    assert record["short_classes"] == ["class 1"]
    assert any("fewer than 4 train images" in line and "as CoOp does" in line for line in lines)


def test_crafted_names_cannot_write_outside_the_runs_folder(source, tmp_path):
    crafted = replace(source, dataset="..", model="../../x", weights="/etc/y")
    [path] = fit_runs(crafted, runs_dir=tmp_path / "runs", methods=["zero_shot"], shots=[1], seeds=[1],
                      progress=lambda _: None)
    assert path.resolve().is_relative_to((tmp_path / "runs").resolve())
    dataset, name = path.relative_to(tmp_path / "runs").parts[:2]
    assert re.fullmatch(r"unnamed-[0-9a-f]{8}", dataset)  # '..' has nothing readable: only its hash
    assert re.fullmatch(r"x-[0-9a-f]{8}__etc_y-[0-9a-f]{8}", name)


def test_both_feature_sources_meet_the_protocol_fit_is_typed_with(source):
    from cache import FeatureCache
    from stages.fit.source import FeatureSource

    assert isinstance(source, FeatureSource)
    members = [name for name in dir(FeatureSource) if not name.startswith("_")]
    members += list(FeatureSource.__annotations__)
    missing = [name for name in members if not hasattr(FeatureCache, name)]
    assert missing == [] and "positions" in members and "skipped_paths" in members
