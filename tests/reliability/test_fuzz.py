"""Fuzz: random mutations of valid split files, subset files, run records, cache files and fitted ``.npz``
files end in success or a one-line user error; never another exception, a hang or unbounded memory. Records
holding hostile text (newlines, NULs, formulas, Markdown, LaTeX) are refused or reported with nothing injected
(fuzz_child.report_case).

The loop runs in a child process (``fuzz_child.py``) whose data segment is capped at 2 GiB (``RLIMIT_DATA``:
``RLIMIT_AS`` cannot be used, torch maps more address space than that at import), with ``SIGALRM`` bounding
each case. ``PIPELINE_FUZZ_CASES`` and ``PIPELINE_FUZZ_SEED`` change the number of cases (400) and the seed.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages.shared.sampling import write_subsets
from tests.conftest import write_coop_dataset
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import CACHE_NAME, ROOT, extract_args, run_cli

CASES = int(os.environ.get("PIPELINE_FUZZ_CASES", "400"))
SEED = int(os.environ.get("PIPELINE_FUZZ_SEED", "15"))
MEMORY_CAP = 2 * 1024**3


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Valid inputs: a split file with its images, a subset file, a run record (+ .npz), a CMM run, a cache."""
    work = tmp_path_factory.mktemp("fuzz")
    split = write_coop_dataset(work / "data", CLASSES, {"train": 4, "val": 1, "test": 2})
    shutil.copy(split, work / "split.json")
    shutil.copytree(split.parent / "images", work / "images")
    assert run_cli(*extract_args(split, work / "cache", "--skip-bad")).exit_code == 0
    shutil.copy(work / "cache" / CACHE_NAME, work / "c.h5")
    fit = run_cli("fit", "--cache", str(work / "c.h5"), "--runs-dir", str(work / "runs"), "--shots", "1",
                  "--seeds", "1", "--method", "linear_probe")
    assert fit.exit_code == 0, fit.output
    fit = run_cli("fit", "--cache", str(work / "c.h5"), "--runs-dir", str(work / "cmm_runs"), "--shots", "1",
                  "--seeds", "1", "--method", "cmm")  # a fitted file with the gap plot's projection
    assert fit.exit_code == 0, fit.output
    labels = json.loads(split.read_text())
    write_subsets([r[1] for r in labels["train"]], [r[1] for r in labels["val"]], [2], [1], work)
    return work


def test_fuzzed_inputs_end_in_success_or_one_line_user_error(work):
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    child = subprocess.run([sys.executable, "-m", "tests.reliability.fuzz_child", str(work), str(SEED), str(CASES)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, preexec_fn=cap)
    assert child.returncode == 0, child.stderr[-3000:]
    summary = json.loads(child.stdout.strip().splitlines()[-1])
    assert sum(summary["outcomes"].values()) + len(summary["failures"]) == CASES
    distinct = {f"{f['target']}: {f['error'][:50]}": f for f in summary["failures"]}  # one of each kind
    assert not summary["failures"], json.dumps(list(distinct.values())[:8], indent=1)
    for target in ("split", "subset", "record", "cache", "report", "npz"):  # each both succeeds and fails sometimes
        assert summary["outcomes"].get(f"{target}: user error", 0) > 0, summary["outcomes"]
        assert summary["outcomes"].get(f"{target}: ok", 0) > 0, summary["outcomes"]


ARCHIVE_CASES = int(os.environ.get("PIPELINE_FUZZ_ARCHIVE_CASES", "300"))


def test_fuzzed_archives_end_in_success_or_one_line_user_error(tmp_path):
    """Random and damaged tar/zip archives through the real unpacker (``fuzz_archives.py``): success or one
    UserError line, never a file written or changed outside the staging folder, never a link made in it."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    child = subprocess.run([sys.executable, "-m", "tests.reliability.fuzz_child", str(tmp_path), str(SEED),
                            str(ARCHIVE_CASES), "archive"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600, preexec_fn=cap)
    assert child.returncode == 0, child.stderr[-3000:]
    summary = json.loads(child.stdout.strip().splitlines()[-1])
    distinct = {f"{f['error'][:50]}": f for f in summary["failures"]}
    assert not summary["failures"], json.dumps(list(distinct.values())[:8], indent=1)
    assert summary["outcomes"].get("archive: ok", 0) > 0 and summary["outcomes"].get("archive: user error", 0) > 0
    assert sum(summary["outcomes"].values()) == ARCHIVE_CASES
