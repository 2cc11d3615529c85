"""Every user mistake and environment failure is one ``error:`` line, no traceback, exit 1 (2 for bad arguments),
and nothing already written changes: unwritable folders, read-only lock files, a missing GPU, wrong files,
Ctrl-C. Also what must work: open_clip's own ``open_clip_config.json`` and ``--pretrained none`` with a
``local-dir:`` model (random weights of that architecture, marked everywhere).

Unwritable folders are real: ``chmod``, and when the tests run as root the child process drops the capability
that lets root write anyway (CAP_DAC_OVERRIDE), so the kernel refuses the write as it would for a user.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cache import FeatureCache
from tests.conftest import TINY_MODEL_CONFIG, write_coop_dataset
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import CACHE_NAME, ROOT, extract_args, lock_holder, run_cli, spawn

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _drop_root_overrides() -> None:
    """In the child before exec: without these capabilities root obeys file permissions like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_restricted(*args: str) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in a child that file permissions apply to (even when the tests run as root)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300,
                          preexec_fn=_drop_root_overrides if os.geteuid() == 0 else None)


def one_line_failure(output: str, code: int, exit_code: int) -> str:
    """The single ``error:`` line of a failed command; no traceback, nothing else but warnings."""
    assert exit_code == code, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    others = [line for line in output.splitlines() if line.strip() and not line.startswith(("error:", "WARNING"))]
    assert not others, output
    return errors[0]


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path -> sha256 (what 'nothing written changed' compares)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class ReadOnly:
    """``chmod a-w`` on a folder for the duration of a ``with`` block."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> Path:
        self.mode = self.folder.stat().st_mode
        self.folder.chmod(0o555)
        return self.folder

    def __exit__(self, *exc: object) -> None:
        self.folder.chmod(self.mode)


def fit_args(cache_dir: Path, runs_dir: Path, *extra: str) -> list[str]:
    return ["fit", "--dataset", "folder", "--model", str(TINY_MODEL_CONFIG), "--pretrained", "none", "--cache-dir",
            str(cache_dir), "--runs-dir", str(runs_dir), "--method", "zero_shot", "--shots", "1", "--seeds", "1",
            *extra]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A finished extract -> fit -> report of a small dataset with the tiny random model."""
    root = tmp_path_factory.mktemp("failures")
    split = write_coop_dataset(root / "data", CLASSES, {"train": 4, "val": 1, "test": 2})
    cache_dir, runs, out = root / "cache", root / "runs", root / "report"
    for args in (extract_args(split, cache_dir), fit_args(cache_dir, runs),
                 ["report", "--runs-dir", str(runs), "--out", str(out), "--no-plots"]):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
    return {"root": root, "split": split, "cache_dir": cache_dir, "cache": cache_dir / CACHE_NAME, "runs": runs,
            "out": out}


def test_no_lock_file_outlives_a_successful_run(workspace):
    assert not list(workspace["cache_dir"].rglob("*.lock"))


def test_cache_dir_that_cannot_exist(workspace, tmp_path):
    result = run_cli(*extract_args(workspace["split"], Path("/proc/no/such/dir")))
    line = one_line_failure(result.output, 1, result.exit_code)
    assert line.startswith("error: /proc/no") and "no such file or directory" in line


def test_read_only_cache_folder_refuses_the_lock_and_keeps_the_cache(workspace):
    before = tree(workspace["cache_dir"])
    with ReadOnly(workspace["cache"].parent):  # a new template set would write into the existing cache
        result = run_restricted("-q", *extract_args(workspace["split"], workspace["cache_dir"], "--templates",
                                                    "coop,imagenet7"))
    line = one_line_failure(result.stderr + result.stdout, 1, result.returncode)
    assert f"{workspace['cache']}.lock: permission denied" in line
    assert tree(workspace["cache_dir"]) == before


def test_read_only_cache_dir_is_refused_before_any_work(workspace, tmp_path):
    cache_dir = tmp_path / "locked"
    cache_dir.mkdir()
    with ReadOnly(cache_dir):
        result = run_restricted("-q", *extract_args(workspace["split"], cache_dir / "sub"))
    line = one_line_failure(result.stderr + result.stdout, 1, result.returncode)
    assert line.startswith(f"error: --cache-dir {cache_dir / 'sub'}: not writable") and "choose a folder" in line
    assert not list(cache_dir.iterdir())


def test_read_only_lock_file(workspace):
    lock = Path(f"{workspace['cache']}.lock")
    lock.write_text("")
    lock.chmod(0o444)
    before = tree(workspace["cache_dir"])
    try:
        result = run_restricted("-q", *extract_args(workspace["split"], workspace["cache_dir"], "--templates",
                                                    "coop,imagenet7"))
        line = one_line_failure(result.stderr + result.stdout, 1, result.returncode)
        assert f"{lock}: permission denied" in line
        assert tree(workspace["cache_dir"]) == before
    finally:
        lock.unlink()


@pytest.mark.parametrize("locked", ["top", "nested"])
def test_read_only_runs_dir(workspace, locked):
    runs = workspace["runs"]
    before = tree(runs)
    folder = runs if locked == "top" else next(runs.glob("*/*/zero_shot"))  # RUNS/<dataset>/<model>__<weights>/<method>
    with ReadOnly(folder):
        result = run_restricted("-q", *fit_args(workspace["cache_dir"], runs, "--seeds", "1,2"))
    line = one_line_failure(result.stderr + result.stdout, 1, result.returncode)
    if locked == "top":
        assert line.startswith(f"error: --runs-dir {runs}: not writable")
    else:
        assert str(folder) in line and "permission denied" in line
    assert tree(runs) == before


@pytest.mark.parametrize("locked", ["top", "nested"])
def test_read_only_report_out(workspace, locked):
    out = workspace["out"]
    before = tree(out)
    if locked == "top":
        with ReadOnly(out):
            result = run_restricted("-q", "report", "--runs-dir", str(workspace["runs"]), "--out", str(out),
                                    "--no-plots")
    else:  # a tables folder someone made read-only: the --out check passes, the write itself is refused
        # (a read-only table FILE is no obstacle: tables are written to a temporary file and renamed over it)
        tables = out / "tables"
        with ReadOnly(tables):
            result = run_restricted("-q", "report", "--runs-dir", str(workspace["runs"]), "--out", str(out),
                                    "--no-plots")
    line = one_line_failure(result.stderr + result.stdout, 1, result.returncode)
    if locked == "top":
        assert line.startswith(f"error: --out {out}: not writable")
        assert tree(out) == before
    else:
        assert str(tables) in line and "permission denied" in line.lower()
        after = tree(out)  # every table is as it was; the index is removed first and written last (a report
        assert {k: v for k, v in after.items() if k != "README.md"} == {  # that stops midway has none)
            k: v for k, v in before.items() if k != "README.md"}


def test_fit_on_a_gpu_that_is_not_there(workspace, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli(*fit_args(workspace["cache_dir"], tmp_path / "runs", "--device", "cuda"))
    line = one_line_failure(result.output, 1, result.exit_code)
    assert "--device cuda" in line and "no CUDA device" in line and "--device cpu" in line
    assert not (tmp_path / "runs").exists()


def test_malformed_device_is_a_usage_error(workspace, tmp_path):
    result = run_cli(*fit_args(workspace["cache_dir"], tmp_path / "runs", "--device", "gpu"))
    assert result.exit_code == 2 and "'gpu' is not a torch device" in result.output
    assert "Traceback" not in result.output


def test_info_on_a_text_file_gives_no_force_advice(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    result = run_cli("info", str(notes))
    line = one_line_failure(result.output, 1, result.exit_code)
    assert str(notes) in line and "not a feature cache" in line and "--force" not in line.replace("extract --force", "")
    assert notes.read_text() == "hello"


def test_predict_on_a_non_image(workspace, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    record = next(workspace["runs"].rglob("shots1_seed1.json"))
    result = run_cli("predict", str(notes), "--run", str(record))
    line = one_line_failure(result.output, 1, result.exit_code)
    assert str(notes) in line and "not an image" in line and "split" not in line


def test_interrupted_extract_says_a_rerun_resumes(tmp_path):
    split = write_coop_dataset(tmp_path / "data", CLASSES, {"train": 24, "val": 6, "test": 10})
    cache = tmp_path / "cache" / CACHE_NAME
    child = spawn(extract_args(split, tmp_path / "cache", batch_size=1))
    deadline = time.monotonic() + 120
    while lock_holder(cache) != str(child.pid) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=120)
    if child.returncode == 0:
        pytest.skip("the extraction finished before the interrupt landed")
    line = one_line_failure(stderr + stdout, 130, child.returncode)
    assert "interrupted" in line and "rerun the same command to resume" in line
    result = run_cli(*extract_args(split, tmp_path / "cache", batch_size=1))
    assert result.exit_code == 0, result.output


# -- model configs and --pretrained none -------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """An open_clip model folder as open_clip saves one: open_clip_config.json (model_cfg, preprocess_cfg) and
    trained-looking weights (the tiny architecture, seeded init, scaled so they differ from a fresh init)."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("models") / "tiny-clip-folder"
    folder.mkdir()
    config = {"model_cfg": json.loads(TINY_MODEL_CONFIG.read_text()),
              "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    open_clip.add_model_config(TINY_MODEL_CONFIG)
    torch.manual_seed(123)
    model = open_clip.create_model("tiny-test-clip")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def _extract(split: Path, cache_dir: Path, model: str, pretrained: str):
    args = extract_args(split, cache_dir)
    args[args.index("--model") + 1] = model
    args[args.index("--pretrained") + 1] = pretrained
    return run_cli(*args)


def test_open_clip_config_json_is_a_model_config(workspace, model_folder, tmp_path):
    config = model_folder / "open_clip_config.json"
    result = _extract(workspace["split"], tmp_path / "cache", str(config), "none")
    assert result.exit_code == 0, result.output
    cache = tmp_path / "cache" / "folder" / "tiny-clip-folder__none.h5"  # named by its folder, not 'open_clip_config'
    with h5py.File(cache, "r") as f:
        assert bool(f.attrs["random_weights"]) and f.attrs["weights"] == "none"
    preprocess = FeatureCache(cache).key_fields["preprocess"]
    assert "mean=(0.5, 0.5, 0.5)" in preprocess and "std=(0.25, 0.25, 0.25)" in preprocess  # its preprocess_cfg
    fit = run_cli("fit", "--dataset", "folder", "--model", str(config), "--pretrained", "none", "--cache-dir",
                  str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"), "--method", "zero_shot",
                  "--shots", "1", "--seeds", "1")
    assert fit.exit_code == 0, fit.output


def test_a_config_json_that_is_not_a_model_config(workspace, tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text(json.dumps({"hello": 1}))
    result = _extract(workspace["split"], tmp_path / "cache", str(bad), "none")
    line = one_line_failure(result.output, 1, result.exit_code)
    assert str(bad) in line and "embed_dim" in line and "open_clip_config.json" in line
    assert not (tmp_path / "cache").exists()


def test_unknown_model_message_is_whole(workspace, tmp_path):
    result = _extract(workspace["split"], tmp_path / "cache", "ViT-B-32-nope", "none")
    assert result.exit_code == 2
    assert "unknown open_clip model 'ViT-B-32-nope' (did you mean ViT-B-32" in result.output
    assert "?) (see " in one_line_failure(result.output, 2, result.exit_code)  # the list is whole, then the help hint


def test_pretrained_none_with_local_dir_is_random_and_marked(workspace, model_folder, tmp_path):
    model = f"local-dir:{model_folder}"
    with_weights = _extract(workspace["split"], tmp_path / "cache", model, "openai")  # --pretrained unused here
    assert with_weights.exit_code == 0, with_weights.output
    random = _extract(workspace["split"], tmp_path / "cache", model, "none")
    assert random.exit_code == 0, random.output
    caches = sorted((tmp_path / "cache" / "folder").glob("*.h5"))
    by_weights = {p.name.rsplit("__", 1)[1].split("-")[0].removesuffix(".h5"): p for p in caches}
    assert sorted(by_weights) == ["local", "none"]  # <name>__local-dir-<8 hex of its files>.h5 and <name>__none.h5
    assert caches[1].name.endswith("__none.h5") and caches[0].name.rsplit("__", 1)[1].startswith("local-dir-")
    with h5py.File(by_weights["none"], "r") as rand, h5py.File(by_weights["local"], "r") as real:
        assert bool(rand.attrs["random_weights"]) and rand.attrs["weights"] == "none"
        assert not bool(real.attrs["random_weights"]) and str(real.attrs["weights"]).startswith("local-dir:")
        a, b = rand["image/test/features"][()], real["image/test/features"][()]
        assert a.shape == b.shape and not np.allclose(a, b)  # the folder's weights were not loaded
    fit = run_cli("fit", "--dataset", "folder", "--model", model, "--pretrained", "none", "--cache-dir",
                  str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"), "--method", "zero_shot",
                  "--shots", "1", "--seeds", "1")
    assert fit.exit_code == 0, fit.output
    record = json.loads(next((tmp_path / "runs").rglob("shots1_seed1.json")).read_text())
    assert record["random_weights"] is True and record["weights"] == "none"
    report = run_cli("report", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--no-plots")
    assert report.exit_code == 0, report.output
    assert "RANDOM WEIGHTS" in (tmp_path / "report" / "README.md").read_text()


# -- help ----------------------------------------------------------------------------------------------------

def test_top_level_help_lists_every_command():
    from pipeline.cli import cli

    result = run_cli("--help")
    assert result.exit_code == 0
    for name in cli.commands:
        assert f"pipeline {name}" in result.output, name  # in the description, not only the generated list
    commands = result.output.split("Commands:", 1)[1]
    for name in cli.commands:
        assert f"\n  {name} " in commands
    assert "..." not in commands  # no short help cut off


def test_every_command_help_has_a_real_example():
    from pipeline.cli import cli

    for name in cli.commands:
        result = run_cli(name, "--help")
        assert result.exit_code == 0
        section = re.split(r"Examples?:", result.output)
        assert len(section) == 2, name
        examples = [line.strip() for line in section[1].split("Options:")[0].splitlines() if line.strip()]
        assert examples, name
        assert all(line.startswith(f"pipeline {name}") for line in examples), (name, examples)
        known = {o for p in cli.commands[name].params for o in p.opts}
        used = {t for line in examples for t in line.split("#")[0].split() if t.startswith("--")}
        assert used <= known, (name, used - known)  # every option an example uses exists


# -- quiet and informative output ----------------------------------------------------------------------------

def test_quiet_fit_prints_the_summary_only_and_a_rerun_one_line(workspace, tmp_path):
    args = fit_args(workspace["cache_dir"], tmp_path / "runs", "--method", "zero_shot,cmm", "--seeds", "1,2")
    first = run_cli("-q", *args)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [f"4 fitted (under {tmp_path / 'runs' / 'folder' / 'tiny-test-clip__none'})"]
    loud = run_cli(*args)
    assert loud.output.splitlines() == [
        f"4 records exist, skipped; 0 fitted (under {tmp_path / 'runs' / 'folder' / 'tiny-test-clip__none'})"]


def test_quiet_extract_says_what_it_encoded_and_warns_once(workspace, tmp_path):
    result = run_cli("-q", *extract_args(workspace["split"], tmp_path / "cache", "--aug-views", "2"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "RANDOM weights" in warnings[0]  # open_clip's own duplicate is dropped
    (summary,) = [line for line in lines if not line.startswith("WARNING")]
    # 3 classes x (4 + 1 + 2) images, 2 views of the 12 train images, 3 classes x 1 coop template
    assert summary.startswith(f"{tmp_path / 'cache' / CACHE_NAME}: encoded 21 images, 24 augmented views (")
    assert summary.endswith("img/s) and 3 prompts (coop) [RANDOM WEIGHTS: not CLIP features]")
    more = run_cli("-q", *extract_args(workspace["split"], tmp_path / "cache", "--aug-views", "2",
                                       "--templates", "coop,imagenet7"))
    assert [line for line in more.output.splitlines() if not line.startswith("WARNING")] == [
        f"{tmp_path / 'cache' / CACHE_NAME}: encoded 0 images and 21 prompts (imagenet7) "
        "[RANDOM WEIGHTS: not CLIP features]"]
    assert not list((tmp_path / "cache").rglob("*.lock"))
