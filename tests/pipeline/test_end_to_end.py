"""The whole tool through its CLI with the tiny model: extract -> subsets -> fit -> report -> predict."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import TINY_MODEL_CONFIG, class_image


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One extracted cache of a generated CoOp-layout dataset, shared by the steps below."""
    from tests.conftest import write_coop_dataset

    root = tmp_path_factory.mktemp("e2e")
    split_file = write_coop_dataset(root / "toy", ["red fox", "blue jay", "green frog", "grey wolf"],
                                    {"train": 6, "val": 3, "test": 4})
    cache_dir = root / "cache"
    result = run("extract", "--dataset", "folder", "--data-root", split_file.parent / "images", "--split-file",
                 split_file, "--model", TINY_MODEL_CONFIG, "--pretrained", "none", "--cache-dir", cache_dir,
                 "--aug-views", "2", "--batch-size", "8", "--workers", "0")
    assert result.exit_code == 0, result.output
    return {"root": root, "cache_dir": cache_dir, "split_file": split_file,
            "cache_args": ["--dataset", "folder", "--model", TINY_MODEL_CONFIG, "--pretrained", "none",
                           "--cache-dir", cache_dir]}


def test_extract_fit_report_predict(workspace):
    root, runs, report = workspace["root"], workspace["root"] / "runs", workspace["root"] / "report"
    fit = run("fit", *workspace["cache_args"], "--runs-dir", runs, "--shots", "1,2", "--seeds", "1,2",
              "--method", "cmm,zero_shot,tip_adapter")
    assert fit.exit_code == 0, fit.output
    records = sorted(runs.rglob("shots*_seed*.json"))
    assert len(records) == 3 * 2 * 2
    assert fit.output.count("test ") == 12 and "\n12 fitted (under " in fit.output
    record = json.loads(next(p for p in records if "/cmm/" in p.as_posix()).read_text())
    assert record["random_weights"] is True and record["weights"] == "none"

    again = run("fit", *workspace["cache_args"], "--runs-dir", runs, "--shots", "1,2", "--seeds", "1,2",
                "--method", "cmm,zero_shot,tip_adapter")
    assert "12 records exist, skipped; 0 fitted" in again.output and "test " not in again.output  # one line

    rep = run("report", "--runs-dir", runs, "--out", report)
    assert rep.exit_code == 0, rep.output
    table = (report / "tables").glob("*.md")
    text = "\n".join(p.read_text() for p in table)
    assert "folder" in text and "random" in text.lower()

    images = []
    for label in (0, 2):
        path = root / f"new_{label}.png"
        class_image(label, 99).save(path)
        images.append(path)
    cmm_run = next(p for p in records if "/cmm/" in p.as_posix() and p.name == "shots2_seed1.json")
    out = root / "predictions.csv"
    pred = run("predict", *images, "--run", cmm_run, "--top-k", "2", "--out", out)
    assert pred.exit_code == 0, pred.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["class"] for r in rows} <= {"red fox", "blue jay", "green frog", "grey wolf"}
    for image in images:
        probabilities = [float(r["probability"]) for r in rows if r["image"] == str(image)]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001


def test_subsets_round_trip_into_fit(workspace):
    root = workspace["root"]
    made = run("subsets", *workspace["cache_args"], "--shots", "2", "--seeds", "3", "--out", root / "subsets")
    assert made.exit_code == 0, made.output
    from_split = run("subsets", "--split-file", workspace["split_file"], "--shots", "2", "--seeds", "3",
                     "--out", root / "subsets_from_split")
    assert from_split.exit_code == 0, from_split.output
    subset = json.loads((root / "subsets" / "shots2_seed3.json").read_text())
    assert subset == json.loads((root / "subsets_from_split" / "shots2_seed3.json").read_text())
    fit = run("fit", *workspace["cache_args"], "--runs-dir", root / "runs_subsets", "--shots", "2", "--seeds", "3",
              "--method", "zero_shot", "--subsets", root / "subsets")
    assert fit.exit_code == 0, fit.output
    [path] = (root / "runs_subsets").rglob("shots2_seed3.json")
    recorded = json.loads(path.read_text())["subset"]
    assert recorded["train"] == subset["train"] and recorded["val"] == subset["val"]


def test_augmented_views_and_ablation_from_the_same_cache(workspace):
    runs = workspace["root"] / "runs_ablation"
    fit = run("fit", *workspace["cache_args"], "--runs-dir", runs, "--shots", "1", "--seeds", "1", "--method", "cmm",
              "--train-views", "aug", "--ablation", "no_triplet")
    assert fit.exit_code == 0, fit.output
    [path] = runs.rglob("shots1_seed1.json")
    assert json.loads(path.read_text())["method_label"] == "cmm+no_triplet+aug"


def test_released_view_protocol_beside_the_clean_one_from_the_same_cache(workspace):
    runs = workspace["root"] / "runs_released"
    for views in ("plain", "released"):
        fit = run("fit", *workspace["cache_args"], "--runs-dir", runs, "--shots", "2", "--seeds", "1",
                  "--method", "gda,lp_pp,proker,ape", "--train-views", views)
        assert fit.exit_code == 0, fit.output
    labels = sorted(p.parent.name for p in runs.rglob("shots2_seed1.json"))
    assert labels == ["ape", "ape+released", "gda", "gda+released", "lp_pp", "lp_pp+released", "proker",
                      "proker+released"]
    proker = json.loads(next(runs.rglob("proker+released/shots2_seed1.json")).read_text())
    assert proker["train_views"] == "released" and proker["search"]["config"] == "caltech101"  # a folder dataset
    rep = run("report", "--runs-dir", runs, "--out", workspace["root"] / "report_released")
    assert rep.exit_code == 0, rep.output


def test_predict_refuses_a_changed_cache(workspace, tmp_path):
    runs = workspace["root"] / "runs"
    record_path = next(runs.rglob("shots1_seed1.json"))
    record = json.loads(record_path.read_text())
    record["cache"]["key"] = "0" * 64
    forged = tmp_path / "shots1_seed1.json"
    forged.write_text(json.dumps(record))
    image = tmp_path / "x.png"
    class_image(1, 5).save(image)
    result = CliRunner().invoke(cli, ["predict", str(image), "--run", str(forged)])
    assert result.exit_code == 1 and "refit" in result.output
