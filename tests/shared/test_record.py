"""The run record round trip: written by fit, read back by the report and by predict, for awkward model ids."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from stages.fit.persist import load_fitted
from stages.fit.run import fit_runs
from stages.fit.source import ArraySource
from stages.fit.synthetic import make_clip_like
from stages.report import build_report
from stages.report.records import load_records
from stages.report.style import model_title
from stages.shared.errors import RecordError, UserError
from stages.shared.naming import model_name
from stages.shared.record import RunRecord, parse_record, read_record, record_path, write_record

# (model, weights) identities as caches store them, one per kind of --model / --pretrained
IDENTITIES = {
    "hf-hub": ("hf-hub:timm/ViT-B-16-SigLIP", "hf-hub:timm/ViT-B-16-SigLIP"),
    "local-dir": ("local-dir:/models/my clip", "local-dir:my clip@0123456789ab"),
    "checkpoint": ("ViT-B-16", "file:vit b16 (copy).pt@fedcba987654"),
    "odd": ("ViT/B:32 é$x", "tag with space;rm -rf"),
    "tag": ("ViT-B-32", "openai"),
}
UNSAFE = re.compile(r"[@:/\\ $;'\"`]")


@pytest.fixture(scope="module")
def base() -> ArraySource:
    return make_clip_like(n_classes=4, dim=16, train_per_class=4, val_per_class=2, test_per_class=5, seed=3)


@pytest.fixture(scope="module", params=sorted(IDENTITIES))
def fitted(request, base, tmp_path_factory) -> tuple[Path, ArraySource, list[Path]]:
    model, weights = IDENTITIES[request.param]
    source = replace(base, model=model, weights=weights)
    runs = tmp_path_factory.mktemp(f"runs_{request.param}")
    paths = fit_runs(source, runs_dir=runs, methods=["cmm", "zero_shot"], shots=[2], seeds=[1],
                     progress=lambda _: None)
    return runs, source, paths


def test_fit_writes_at_the_layout_path_with_a_safe_short_name(fitted) -> None:
    runs, source, paths = fitted
    name = model_name(source.model, source.weights)
    assert not UNSAFE.search(name) and len(name) <= 60
    for path in paths:
        record = read_record(path)
        assert path == record.layout_path(runs) == record_path(runs, source.dataset, source.model, source.weights,
                                                               record.method_label, 2, 1)
        assert path.relative_to(runs).parts[:2] == (source.dataset, name)
        assert (record.model, record.weights, record.name) == (source.model, source.weights, name)


def test_the_report_reads_them_and_names_its_files_and_titles_by_the_short_name(fitted, tmp_path) -> None:
    runs, source, paths = fitted
    copy = runs / "0_backup" / "x" / paths[0].name  # a copy that sorts first: the layout path must still win
    copy.parent.mkdir(parents=True)
    shutil.copy(paths[0], copy)
    warnings: list[str] = []
    records, skipped = load_records(runs, warnings.append)
    assert sorted(r.path for r in records) == sorted(paths) and skipped == [copy]
    name = model_name(source.model, source.weights)
    written = build_report(runs, tmp_path / "report", formats=("md",), plots=False, progress=lambda _: None)
    files = [p for p in (tmp_path / "report").rglob("*.md") if p.name != "README.md"]
    assert files and all(name in p.name and not UNSAFE.search(p.name) for p in files), files
    title = model_title(source.model, source.weights)  # titles: the model without paths, and its weights (i12)
    assert all(f"— {title}" in p.read_text(encoding="utf-8") for p in files)
    assert written is not None


def test_predict_reads_the_record_and_its_fitted_classifier(fitted) -> None:
    """What predict does with a record before encoding images: read it, then load the classifier beside it."""
    runs, source, paths = fitted
    X, y = source.image["test"]
    for path in paths:
        record = read_record(path)
        classifier = load_fitted(record.path)
        assert classifier.classes == source.classes
        assert record.params_path == path.with_suffix(".npz")
        best = [row[0][0] for row in classifier.top_k(X, 2)]
        assert np.mean(np.array(best) == np.array(source.classes)[y]) * 100 == pytest.approx(record.test_top1)


def test_predict_refuses_a_record_without_a_cache_in_one_line(fitted) -> None:
    _, _, paths = fitted  # in-memory sources have no cache file
    image = paths[0].parent / "x.png"
    image.write_bytes(b"not used")
    result = CliRunner().invoke(cli, ["predict", str(image), "--run", str(paths[0])])
    assert result.exit_code == 1 and "no cache path/key" in result.output and str(paths[0]) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_record_round_trips_unchanged_with_unknown_fields_kept(fitted, tmp_path) -> None:
    _, _, paths = fitted
    raw = json.loads(paths[0].read_text())
    raw["added_by_a_newer_version"] = {"x": [1, 2]}
    record = parse_record(raw, paths[0])
    again = write_record(tmp_path / "copy" / "shots2_seed1.json", record)
    assert json.loads(again.read_text()) == raw
    assert read_record(again) == record
    assert [p.name for p in again.parent.iterdir()] == ["shots2_seed1.json"]  # no temporary left behind


def _minimal(**changes) -> dict:
    raw = {"schema": "cmm-run/1", "dataset": "dtd", "model": "RN50", "weights": "openai", "method": "cmm",
           "shots": 1, "seed": 1, "metrics": {"test_top1": 50.0}}
    raw.update(changes)
    return raw


@pytest.mark.parametrize("changes, field", [
    ({"schema": "cmm-run/2"}, '"schema"'),
    ({"model": None}, '"model" is missing'),
    ({"model": 3}, '"model"'),
    ({"shots": -1}, '"shots" must be an integer >= 0'),
    ({"seed": 1.5}, '"seed"'),
    ({"shots": True}, '"shots"'),
    ({"metrics": {"test_top1": 120.0}}, '"metrics.test_top1" must be a finite number in [0.0, 100.0]'),
    ({"metrics": {"test_top1": 50.0, "val_top1": "x"}}, '"metrics.val_top1"'),
    ({"metrics": {"test_top1": 50.0, "shift": {"imagenet_v2": None}}}, '"metrics.shift.imagenet_v2"'),
    ({"metrics": {}}, '"metrics.test_top1"'),
    ({"random_weights": "yes"}, '"random_weights" must be true or false'),
    ({"ablation": {"no_triplet": 1}}, '"ablation.no_triplet"'),
    ({"train_views": "both"}, '"train_views" must be plain or aug or released'),
    ({"subset": {"train": [0, -3]}}, '"subset.train"'),
    ({"gap": {"before": {"cos_own": "high"}}}, '"gap.before.cos_own"'),
    ({"timing": {"fit_seconds": -1}}, '"timing.fit_seconds"'),
    ({"params_file": "../../etc/passwd"}, '"params_file" must be a file name beside the record'),
    ({"cache": {"path": 5, "key": "k"}}, '"cache.path"'),
    ({"short_classes": ["a", 3]}, '"short_classes"'),
])
def test_every_field_is_checked_with_a_one_line_error_naming_file_and_field(tmp_path, changes, field) -> None:
    path = tmp_path / "shots1_seed1.json"
    path.write_text(json.dumps(_minimal(**changes)))
    with pytest.raises(RecordError) as info:
        read_record(path)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert message.startswith(f"{path}: ") and field in message, message


def test_a_minimal_record_reads_with_defaults(tmp_path) -> None:
    path = tmp_path / "shots1_seed1.json"
    path.write_text(json.dumps(_minimal(weights="none")))
    record = read_record(path)
    assert isinstance(record, RunRecord) and record.method_label == "cmm" and record.random_weights
    assert record.params_path is None and record.shift == {} and record.name == "RN50__none"


def test_fit_names_an_old_run_folder_of_the_same_model_and_how_to_move_it(base, tmp_path) -> None:
    source = replace(base, model="hf-hub:timm/ViT-B-16-SigLIP", weights="hf-hub:timm/ViT-B-16-SigLIP")
    runs = tmp_path / "runs"
    [new] = fit_runs(source, runs_dir=runs, methods=["zero_shot"], shots=[1], seeds=[1], progress=lambda _: None)
    old_folder = runs / source.dataset / "hf-hub_timm_ViT-B-16-SigLIP__hf-hub_timm_ViT-B-16-SigLIP"
    shutil.move(str(new.parents[1]), str(old_folder))  # what an earlier version wrote
    lines: list[str] = []
    fit_runs(source, runs_dir=runs, methods=["zero_shot"], shots=[1], seeds=[1], progress=lines.append)
    [note] = [line for line in lines if line.startswith("note:")]
    assert f"mv '{old_folder}' '{new.parents[1]}'" in note
    records, skipped = load_records(runs, lambda _: None)
    assert [r.path for r in records] == [new] and len(skipped) == 1  # the old copy is not counted twice
