"""Item 11: SIGKILL a real ``pipeline report`` at random moments; no torn file, no index that lies.

Every table and plot is written to a unique temporary name and renamed; the index (README.md) is removed
when the report starts writing and written last. The report is deterministic, so after a kill every
visible file must equal, byte for byte, the same file of an uninterrupted report, and the index is either
absent or complete. A rerun restores everything.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import write_coop_dataset
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import CACHE_NAME, extract_args, run_cli, sha256, spawn

TRIALS = 4


def visible(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): sha256(p) for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-kill")
    split = write_coop_dataset(root / "data", CLASSES, {"train": 4, "val": 1, "test": 2})
    assert run_cli(*extract_args(split, root / "cache")).exit_code == 0
    fit = run_cli("fit", "--cache", str(root / "cache" / CACHE_NAME), "--runs-dir", str(root / "runs"),
                  "--shots", "1,2", "--seeds", "1,2,3", "--method", "zero_shot,linear_probe")
    assert fit.exit_code == 0, fit.output
    return root / "runs"


def report(runs: Path, out: Path) -> None:
    child = spawn(["report", "--runs-dir", str(runs), "--out", str(out)])
    _, err = child.communicate(timeout=600)
    assert child.returncode == 0, err


def test_killed_report_leaves_whole_files_and_no_lying_index(runs, tmp_path):
    """A report of fewer runs exists; a report of more runs over it is killed: each file is the old or the new
    one, whole, and the index is either gone or the new, complete one (never the old one beside new tables)."""
    fewer = tmp_path / "fewer"
    shutil.copytree(runs, fewer)
    for folder in list(fewer.rglob("linear_probe")):
        shutil.rmtree(folder)
    old_out, new_out, out = tmp_path / "old", tmp_path / "new", tmp_path / "report"
    report(fewer, old_out)
    started = time.monotonic()
    report(runs, new_out)
    duration = time.monotonic() - started
    old, new = visible(old_out), visible(new_out)
    assert "README.md" in old and any(name.endswith(".png") for name in new) and old["README.md"] != new["README.md"]

    rng = random.Random(15)
    landed = []  # what each kill left: the index gone (mid-report), or a complete report
    for _ in range(TRIALS):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(old_out, out)
        child = spawn(["report", "--runs-dir", str(runs), "--out", str(out)])
        time.sleep(rng.uniform(0.4, 1.0) * duration)
        child.kill()
        child.communicate(timeout=60)
        found = visible(out)
        for name, digest in found.items():  # every file is whole: the old report's or the new one's
            assert digest in (old.get(name), new.get(name)), name
        if "README.md" in found:
            assert found["README.md"] == new["README.md"]  # an index exists only for the complete new report
            assert found == new
        landed.append("complete" if "README.md" in found else "mid-report")
        leftovers = [p.name for p in out.rglob(".*") if p.is_file()]
        assert all(name.endswith(".tmp") for name in leftovers), leftovers  # only unique temp names remain

    assert "mid-report" in landed, landed  # at least one kill landed while the report was being written
    again = run_cli("report", "--runs-dir", str(runs), "--out", str(out))
    assert again.exit_code == 0, again.output
    assert visible(out) == new
