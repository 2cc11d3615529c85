"""Lists where researchers expect them: several datasets for extract and fit (one cache and one set of records
each, refused in one line where a list makes no sense), and folders for predict."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import TINY_MODEL_CONFIG, class_image, write_coop_dataset
from tests.extract.conftest import Miniatures
from tests.reliability.helpers import error_line

MODEL = ["--model", str(TINY_MODEL_CONFIG), "--pretrained", "none"]


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """dtd and eurosat in CoOp's layouts under one data folder, both extracted with the tiny model in one call."""
    root = tmp_path_factory.mktemp("lists")
    data = root / "data"
    for key in ("dtd", "eurosat"):
        Miniatures(data).coop(key, per_split=2)
    cache = root / "cache"
    result = run("extract", "--dataset", "dtd,eurosat", "--data-root", data, *MODEL, "--cache-dir", cache,
                 "--workers", "0")
    return {"root": root, "data": data, "cache": cache, "extract": result}


def test_extract_writes_one_cache_per_dataset(two_datasets):
    result = two_datasets["extract"]
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(two_datasets["cache"]).as_posix() for p in two_datasets["cache"].rglob("*.h5")) == [
        "dtd/tiny-test-clip__none.h5", "eurosat/tiny-test-clip__none.h5"]
    assert result.output.count("encoded 18 images") == 2


def test_fit_writes_one_set_of_records_per_dataset(two_datasets, tmp_path):
    runs = tmp_path / "runs"
    result = run("fit", "--dataset", "dtd,eurosat", *MODEL, "--cache-dir", two_datasets["cache"], "--runs-dir", runs,
                 "--method", "zero_shot", "--shots", "1", "--seeds", "1,2", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*.json")) == [
        f"{key}/tiny-test-clip__none/zero_shot/shots1_seed{seed}.json" for key in ("dtd", "eurosat") for seed in (1, 2)]


def test_a_missing_dataset_in_a_list_stops_before_any_is_encoded(two_datasets, tmp_path):
    cache = tmp_path / "cache"
    result = run("extract", "--dataset", "dtd,oxford_pets", "--data-root", two_datasets["data"], *MODEL,
                 "--cache-dir", cache, "--workers", "0")
    assert result.exit_code == 1 and "oxford_pets" in error_line(result.output)
    assert not list(cache.rglob("*.h5"))


def test_fit_of_a_list_opens_every_cache_before_fitting(two_datasets, tmp_path):
    runs = tmp_path / "runs"
    result = run("fit", "--dataset", "dtd,oxford_pets", *MODEL, "--cache-dir", two_datasets["cache"],
                 "--runs-dir", runs, "--method", "zero_shot", "--shots", "1", "--seeds", "1")
    assert result.exit_code == 1 and "oxford_pets" in error_line(result.output)
    assert not runs.exists() or not list(runs.rglob("*.json"))


@pytest.mark.parametrize("args, message", [
    (["extract", "--dataset", "dtd,eurosat", "--split-file", "x.json"], "--split-file belongs to one dataset"),
    (["extract", "--dataset", "dtd,folder"], "--dataset folder belongs to one dataset"),
    (["extract", "--dataset", "dtd,dtdd"], "unknown dataset 'dtdd'"),
    (["fit", "--dataset", "dtd,eurosat", "--cache", "x.h5"], "--cache belongs to one dataset"),
    (["fit", "--dataset", "dtd,eurosat", "--eval-on", "imagenet_v2"], "--eval-on belongs to one dataset"),
    (["fit", "--dataset", "dtd,digits", "--subsets", "."], "--subsets belongs to one dataset"),
    (["subsets", "--dataset", "dtd,eurosat", "--out", "s"], "subsets are drawn from one dataset"),
])
def test_lists_that_make_no_sense_are_one_line_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert message in error_line(result.output)
    assert not (tmp_path / "cache").exists()


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    """A zero-shot run of a 3-class folder dataset (red fox, blue jay, green frog), tiny model."""
    root = tmp_path_factory.mktemp("predict")
    split = write_coop_dataset(root / "toy", ["red fox", "blue jay", "green frog"], {"train": 3, "val": 1, "test": 2})
    common = ["--dataset", "folder", *MODEL, "--cache-dir", root / "cache"]
    assert run("extract", *common[:2], "--data-root", split.parent / "images", "--split-file", split, *common[2:],
               "--workers", "0").exit_code == 0
    assert run("fit", *common, "--runs-dir", root / "runs", "--method", "zero_shot", "--shots", "1",
               "--seeds", "1").exit_code == 0
    return next((root / "runs").rglob("shots1_seed1.json"))


def test_predict_takes_a_folder_recursively_in_sorted_order(fitted_run, tmp_path):
    photos = tmp_path / "photos"
    for relpath in ("b.png", "a/z.png", "a/b.jpg", ".hidden/x.png"):
        (photos / relpath).parent.mkdir(parents=True, exist_ok=True)
        class_image(1, len(relpath)).save(photos / relpath)
    (photos / "notes.txt").write_text("not an image")
    single = tmp_path / "single.png"
    class_image(0, 1).save(single)
    out = tmp_path / "preds.csv"
    result = run("predict", photos, single, "--run", fitted_run, "--top-k", "1", "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == [str(photos / "a/b.jpg"), str(photos / "a/z.png"), str(photos / "b.png"),
                                          str(single)]
    assert "note: 1 file(s) without an image suffix left out" in result.output and "notes.txt" in result.output


def test_predict_on_an_empty_folder_is_one_line(fitted_run, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("x")
    result = run("predict", tmp_path / "empty", "--run", fitted_run)
    assert result.exit_code == 1
    line = error_line(result.output)
    assert str(tmp_path / "empty") in line and "no image files" in line
