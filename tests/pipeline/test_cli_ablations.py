"""``pipeline fit --ablation``: each ablation its own run, ``a+b`` one combined run, the removed plain_map refused
with its reason, and records of the former plain_map (on users' disks) still read by report and predict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from stages.fit.cmm import CMMClassifier
from stages.fit.persist import load_fitted, save_fitted
from tests.conftest import TINY_MODEL_CONFIG, class_image, write_coop_dataset
from tests.reliability.helpers import error_line


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablations")
    split = write_coop_dataset(root / "toy", ["red fox", "blue jay", "green frog"], {"train": 4, "val": 2, "test": 3})
    common = ["--dataset", "folder", "--model", TINY_MODEL_CONFIG, "--pretrained", "none", "--cache-dir",
              root / "cache"]
    extract = run("extract", *common, "--data-root", split.parent / "images", "--split-file", split, "--workers", "0")
    assert extract.exit_code == 0, extract.output
    return {"root": root, "fit": ["fit", *common, "--shots", "2", "--seeds", "1", "--jobs", "1"]}


def labels(runs) -> list[str]:
    return sorted({json.loads(p.read_text())["method_label"] for p in runs.rglob("shots*_seed*.json")})


def test_each_ablation_is_its_own_run_and_plus_combines(workspace, tmp_path):
    runs = tmp_path / "runs"
    result = run(*workspace["fit"], "--runs-dir", runs, "--method", "cmm,zero_shot", "--ablation", "no_triplet",
                 "--ablation", "frozen_prototypes,no_prior", "--ablation", "no_triplet+frozen_prototypes")
    assert result.exit_code == 0, result.output
    assert labels(runs) == ["cmm+frozen_prototypes", "cmm+frozen_prototypes+no_triplet", "cmm+no_prior",
                            "cmm+no_triplet", "zero_shot"]
    assert "\n5 fitted (under " in result.output


@pytest.mark.parametrize("value, message", [
    ("plain_map", "'plain_map' was removed: v' = vW with W = I pulled towards I is the residual map"),
    ("no_triplet+nope", "unknown ablation 'nope'"),
    ("+", "names no ablation"),
])
def test_bad_ablations_are_one_line_exit_2(workspace, tmp_path, value, message):
    result = run(*workspace["fit"], "--runs-dir", tmp_path / "runs", "--method", "cmm", "--ablation", value)
    assert result.exit_code == 2
    assert message in error_line(result.output)
    assert not (tmp_path / "runs").exists()


def test_records_of_the_former_plain_map_are_still_read(workspace, tmp_path):
    """A cmm+plain_map run as older versions wrote it (label, flag, and a map='plain' estimator): report lists
    it, predict classifies with it."""
    runs = tmp_path / "runs"
    assert run(*workspace["fit"], "--runs-dir", runs, "--method", "cmm").exit_code == 0
    record_path = next(runs.rglob("cmm/shots2_seed1.json"))
    old = record_path.parent.parent / "cmm+plain_map"
    shutil.copytree(record_path.parent, old)
    record = json.loads((old / record_path.name).read_text())
    record.update(method_label="cmm+plain_map", ablation={"plain_map": True})
    (old / record_path.name).write_text(json.dumps(record))
    fitted = load_fitted(record_path)
    plain = CMMClassifier(np.stack([fitted.estimator.zs_prototypes_] * 2, axis=1), map="plain", steps=5)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, plain.prototypes.shape[-1])).astype(np.float32)
    plain.fit(X, np.array([0, 1, 2, 0, 1, 2]))
    with np.load(record_path.with_suffix(".npz"), allow_pickle=False) as npz:
        extra = {k: npz[k] for k in npz.files if k.startswith("proj_")}
    save_fitted(plain, (old / record_path.name).with_suffix(".npz"), method="cmm", classes=fitted.classes,
                extra=extra)

    report = run("report", "--runs-dir", runs, "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    tables = "\n".join(p.read_text() for p in (tmp_path / "report" / "tables").glob("*.md"))
    assert "plain map" in tables or "plain_map" in tables

    image = tmp_path / "photo.png"
    class_image(1, 3).save(image)
    predicted = run("predict", image, "--run", old / record_path.name, "--top-k", "1")
    assert predicted.exit_code == 0, predicted.output
    assert f"\n{image}: " in f"\n{predicted.output}"


def test_augmented_views_leave_out_what_trains_on_no_image(workspace, tmp_path):
    result = run(*workspace["fit"], "--runs-dir", tmp_path / "runs", "--method", "zero_shot", "--train-views", "aug")
    assert result.exit_code == 0, result.output
    assert "note: zero_shot not fitted with --train-views aug (they train on no image" in result.output
    assert "0 fitted" in result.output and not list((tmp_path / "runs").rglob("*.json"))
