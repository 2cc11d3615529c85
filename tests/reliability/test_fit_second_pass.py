"""Holes of the second pass on the fit/predict side: concurrent fits, subset identity, predict from anywhere,
one-class datasets, crafted caches, records and .npz files, deep or huge JSON, a full disk.

Every case checks the one-line error (or the right result) and that what was already written is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cache import FeatureCache
from stages.fit.persist import load_fitted
from tests.conftest import class_image, write_coop_dataset
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import CACHE_NAME, ROOT, error_line, extract_args, run_cli, sha256, spawn
from tests.reliability.test_disk_full import limited


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One complete cache of the 3-class dataset (train 4 / val 1 / test 2 per class), shared read-only."""
    root = tmp_path_factory.mktemp("fit2")
    split = write_coop_dataset(root / "small", CLASSES, {"train": 4, "val": 1, "test": 2})
    result = run_cli(*extract_args(split, root / "cache"))
    assert result.exit_code == 0, result.output
    return root / "cache" / CACHE_NAME


def fit_args(cache: Path, runs: Path, *extra: str, method: str = "zero_shot") -> list[str]:
    return ["fit", "--cache", str(cache), "--runs-dir", str(runs), "--shots", "1", "--seeds", "1",
            "--method", method, *extra]


def records(runs: Path) -> dict[str, str]:
    """Every file under the runs folder by relative path, with its digest (lock files hold a pid: left out)."""
    return {str(p.relative_to(runs)): sha256(p) for p in sorted(runs.rglob("*")) if p.is_file() and p.suffix != ".lock"}


def one_record(runs: Path) -> Path:
    (path,) = [p for p in runs.rglob("shots*_seed*.json")]
    return path


def test_concurrent_fits_of_one_run_both_succeed_with_a_matching_pair(built, tmp_path):
    """Item 4: two real `pipeline fit` processes, same method, same runs folder, several runs each."""
    runs = tmp_path / "runs"
    args = fit_args(built, runs, method="zero_shot,linear_probe")
    args[args.index("--shots") + 1], args[args.index("--seeds") + 1] = "1,2,4", "1,2,3,4"
    children = [spawn(args) for _ in range(2)]
    outputs = [child.communicate(timeout=600) for child in children]
    for child, (_, err) in zip(children, outputs):
        assert child.returncode == 0, err
        assert "Traceback" not in err
    paths = sorted(runs.rglob("shots*_seed*.json"))
    assert len(paths) == 2 * 3 * 4
    assert not [p for p in runs.rglob("*.tmp")]
    cache = FeatureCache(built)
    X, y = cache.features("test"), cache.split_labels("test")[cache.positions("test")]
    for path in paths:  # the .json and the .npz beside it come from the same fit
        record = json.loads(path.read_text())
        fitted = load_fitted(path)
        assert float(fitted.estimator.score(X, y) * 100.0) == pytest.approx(record["metrics"]["test_top1"])


def test_subset_files_are_part_of_the_record_identity(built, tmp_path):
    """Item 5: --subsets with other positions refits instead of keeping the CoOp record; floats are refused."""
    runs = tmp_path / "runs"
    assert run_cli(*fit_args(built, runs)).exit_code == 0
    coop = json.loads(one_record(runs).read_text())["subset"]
    subsets = tmp_path / "subsets"
    subsets.mkdir()
    chosen = {"train": [p for p in range(12) if p not in coop["train"]][:3], "val": [2, 1, 0]}
    (subsets / "shots1_seed1.json").write_text(json.dumps(chosen))
    refit = run_cli(*fit_args(built, runs, "--subsets", str(subsets)))
    assert refit.exit_code == 0 and "exists, skipped" not in refit.output, refit.output
    record = json.loads(one_record(runs).read_text())
    assert record["subset"]["train"] == chosen["train"] and record["subset"]["source"].startswith("file:")
    again = run_cli(*fit_args(built, runs, "--subsets", str(subsets)))
    assert "exists, skipped" in again.output  # the same file: reused

    before = records(runs)
    (subsets / "shots1_seed1.json").write_text(json.dumps({"train": [0.9, 4, 8], "val": [0, 1, 2]}))
    floats = run_cli(*fit_args(built, runs, "--subsets", str(subsets)))
    assert floats.exit_code == 1
    assert "train position '0.9' is not an integer" in error_line(floats.output)
    assert records(runs) == before


def test_predict_works_from_any_folder(built, tmp_path):
    """Item 6: a fit run with a RELATIVE cache path; predict from another folder finds the cache."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "cache").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(built, work / "cache" / "c.h5")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    fit = subprocess.run([sys.executable, "-m", "pipeline", "-q", *fit_args(Path("cache/c.h5"), Path("runs"))],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    record = one_record(work / "runs")
    assert Path(json.loads(record.read_text())["cache"]["path"]).is_absolute()
    image = elsewhere / "new.png"
    class_image(1, 7).save(image)
    predict = subprocess.run([sys.executable, "-m", "pipeline", "-q", "predict", str(image), "--run", str(record)],
                             cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert predict.stdout.startswith(f"{image}: ")

    old = json.loads(record.read_text())  # a record from before: relative path, predict run elsewhere
    old["cache"]["path"] = "cache/c.h5"
    record.write_text(json.dumps(old))
    refused = subprocess.run([sys.executable, "-m", "pipeline", "-q", "predict", str(image), "--run", str(record)],
                             cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert "relative path cache/c.h5" in error_line(refused.stderr) and "where pipeline fit ran" in refused.stderr


def test_one_class_dataset_is_refused_before_anything_is_written(tmp_path):
    """Item 8: one class: a one-line error, no orphan .npz, no record."""
    split = write_coop_dataset(tmp_path / "one", ["lonely"], {"train": 3, "val": 1, "test": 2})
    assert run_cli(*extract_args(split, tmp_path / "cache")).exit_code == 0
    runs = tmp_path / "runs"
    result = run_cli(*fit_args(tmp_path / "cache" / CACHE_NAME, runs, method="zero_shot,linear_probe"))
    assert result.exit_code == 1
    assert "1 class(es); classification needs at least 2" in error_line(result.output)
    assert not runs.exists() or not [p for p in runs.rglob("*") if p.is_file()]


def _set_attr(name, value):
    def damage(f: h5py.File) -> None:
        f.attrs[name] = value
    return damage


def _del_attr(name):
    def damage(f: h5py.File) -> None:
        del f.attrs[name]
    return damage


def _replace(name, make):
    def damage(f: h5py.File) -> None:
        old = f[name][()]
        attrs = dict(f[name].attrs)
        del f[name]
        f[name] = make(old)
        for key, value in attrs.items():
            f[name].attrs[key] = value
    return damage


CRAFTED = {
    "label out of range": (_replace("image/train/labels", lambda a: np.where(np.arange(len(a)) == 0, 99, a)),
                           "image/train/labels holds 99, outside 0..2"),
    "negative label": (_replace("image/test/labels", lambda a: a - 1), "image/test/labels holds -1"),
    "position out of range": (_replace("image/train/positions", lambda a: a + 5), "outside 0..11"),
    "positions unsorted": (_replace("image/train/positions", lambda a: a[::-1].copy()), "not strictly increasing"),
    "rows missing": (_replace("image/test/features", lambda a: a[:-1]), "expected 6 rows"),
    "NaN text features": (_replace("text/coop/features", lambda a: np.full_like(a, np.nan)), "NaN/Inf"),
    "Inf image features": (_replace("image/test/features", lambda a: np.full_like(a, np.inf)), "NaN/Inf"),
    "NaN logit scale": (_set_attr("logit_scale", float("nan")), "logit_scale is nan"),
    "huge logit scale": (_set_attr("logit_scale", 1e30), "logit_scale is 1e+30"),
    "text logit scale": (_set_attr("logit_scale", "big"), "logit_scale is 'big'"),
    "no key": (_del_attr("key"), "the 'key' attribute is missing"),
    "string schema": (_set_attr("schema_version", "1"), "schema_version is '1', not an integer"),
    "no classes": (_replace("classes", lambda a: a[:0]), "classes has shape (0,)"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_cache_fields_are_refused_by_fit(built, tmp_path, case):
    """Item 9: each field fit reads is checked against its bounds: one line naming it, nothing written."""
    damage, message = CRAFTED[case]
    cache = tmp_path / "crafted.h5"
    shutil.copy(built, cache)
    with h5py.File(cache, "r+") as f:
        damage(f)
    runs = tmp_path / "runs"
    result = run_cli(*fit_args(cache, runs, method="zero_shot,linear_probe"))
    assert result.exit_code == 1, result.output
    line = error_line(result.output)
    assert message in line and str(cache) in line and "--force" in line
    assert not runs.exists() or not [p for p in runs.rglob("*") if p.is_file()]
    if case in ("no key", "string schema"):
        info = run_cli("info", str(cache))
        assert info.exit_code == 1 and message in error_line(info.output)


def _rewrite_meta(npz: Path, change) -> None:
    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__meta__"]))
    arrays = change(meta, arrays)
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(npz, "wb") as handle:
        np.savez(handle, **arrays)


NPZ_CASES = {
    "params not a dict": (lambda m, a: (m.__setitem__("params", [1]), a)[1], "params must map"),
    "dunder fitted attribute": (lambda m, a: (m["fitted"].__setitem__("__class__", 1), a)[1], "fitted attributes"),
    "dunder fitted array": (lambda m, a: {**a, "fitted____class__": np.zeros(2)}, "not a fitted attribute name"),
    "classes not strings": (lambda m, a: (m.__setitem__("classes", [1, 2]), a)[1], "classes must be"),
    "NaN weights": (lambda m, a: {k: (np.full_like(v, np.nan) if k.startswith("fitted__") and v.dtype.kind == "f"
                                      else v) for k, v in a.items()}, "holds NaN/Inf"),
    "wrong shape": (lambda m, a: {k: (v[..., :1] if k.startswith("fitted__") and v.ndim == 2 else v)
                                  for k, v in a.items()}, "does not fit these features"),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_crafted_npz_is_one_line_in_predict(built, tmp_path, case):
    """Item 9: crafted .npz metadata or arrays: predict prints one line; the record is untouched."""
    runs = tmp_path / "runs"
    assert run_cli(*fit_args(built, runs, method="linear_probe")).exit_code == 0
    record = one_record(runs)
    change, message = NPZ_CASES[case]
    _rewrite_meta(record.with_suffix(".npz"), change)
    before = sha256(record)
    image = tmp_path / "x.png"
    class_image(0, 3).save(image)
    result = run_cli("predict", str(image), "--run", str(record))
    assert result.exit_code == 1, result.output
    assert message in error_line(result.output)
    assert sha256(record) == before


DEEP = "[" * 200_000 + "]" * 200_000
HUGE_INT = "1" * 5000
BAD_JSON = {"deep nesting": (DEEP, "nests too deeply"), "huge integer": (HUGE_INT, "cannot be decoded"),
            "huge float": ('{"train": [1e999], "val": []}', "too large for a float"),
            "NaN": ('{"train": [NaN], "val": []}', "NaN")}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_deep_or_huge_json_is_one_line_everywhere(built, tmp_path, case):
    """Item 9: subset files, run records (predict, report) and split files."""
    text, message = BAD_JSON[case]
    subsets = tmp_path / "subsets"
    subsets.mkdir()
    (subsets / "shots1_seed1.json").write_text(text)
    fit = run_cli(*fit_args(built, tmp_path / "runs", "--subsets", str(subsets)))
    assert fit.exit_code == 1 and message in error_line(fit.output)

    record = tmp_path / "runs2" / "d" / "m__w" / "zero_shot" / "shots1_seed1.json"
    record.parent.mkdir(parents=True)
    record.write_text(text)
    image = tmp_path / "x.png"
    class_image(0, 3).save(image)
    predict = run_cli("predict", str(image), "--run", str(record))
    assert predict.exit_code == 1 and message in error_line(predict.output)
    report = run_cli("report", "--runs-dir", str(tmp_path / "runs2"), "--out", str(tmp_path / "rep"))
    assert report.exit_code == 1 and "no valid run records" in error_line(report.output)
    assert message in report.output  # the warning names why the record was skipped

    split = write_coop_dataset(tmp_path / "ds", CLASSES, {"train": 1, "val": 1, "test": 1})
    split.write_text(text)
    extract = run_cli(*extract_args(split, tmp_path / "cache"))
    assert extract.exit_code == 1 and message in error_line(extract.output)


@pytest.mark.parametrize("command", ["fit", "report"])
def test_full_disk_during_fit_or_report_is_one_line_and_keeps_old_files(built, tmp_path, command):
    """Item 9: a write past the file-size limit (as a full disk): one line, exit 1, earlier files unchanged."""
    runs = tmp_path / "runs"
    assert run_cli(*fit_args(built, runs)).exit_code == 0
    out = tmp_path / "report"
    assert run_cli("report", "--runs-dir", str(runs), "--out", str(out), "--no-plots").exit_code == 0
    before_runs, before_report = records(runs), records(out)
    if command == "fit":
        args = fit_args(built, runs, "--force")
    else:
        args = ["report", "--runs-dir", str(runs), "--out", str(out), "--no-plots"]
    child = spawn(args, preexec_fn=limited(64))
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    line = error_line(err)
    assert "failed ([Errno 27] File too large)" in line and "unchanged" in line
    assert records(runs) == before_runs
    if command == "fit":
        assert records(out) == before_report
    else:  # the index went first, so no index now lies about the tables; every table left is whole
        after = records(out)
        assert "README.md" not in after
        assert all(after[name] == before_report[name] for name in after)


def test_shift_cache_with_parent_ids_outside_the_fitted_classes_is_refused(tmp_path):
    """Item 9 (bounds): an --eval-on cache whose parent class ids point past the fitted classes: one line."""
    from stages.shared.errors import FitError
    from stages.fit.run import fit_runs
    from stages.fit.synthetic import make_clip_like

    source = make_clip_like(n_classes=4, dim=16, train_per_class=4, val_per_class=2, test_per_class=3, seed=1)
    shifted = make_clip_like(n_classes=2, dim=16, train_per_class=1, val_per_class=1, test_per_class=3, seed=2)
    shifted.dataset, shifted.parent_class_ids = "shifted", np.array([1, 7])
    with pytest.raises(FitError, match="parent class id 7 is outside the 4 classes"):
        fit_runs(source, methods=["zero_shot"], shots=[1], seeds=[1], runs_dir=tmp_path / "runs",
                 eval_sources={"shifted": shifted}, progress=lambda _: None)
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
