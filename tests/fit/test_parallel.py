"""``fit_runs(jobs=N)``: the same records as one process, and a killed sweep keeps only whole records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stages.shared.safe_io import atomic_write, remove_stale_temps
from stages.fit.parallel import usable_cores
from stages.fit.run import fit_runs
from tests.fit import sweep_child

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = ("timing", "created")


def records(runs_dir: Path) -> dict[str, dict]:
    """Every record under ``runs_dir`` by relative path, timings and dates left out."""
    out = {}
    for path in sorted(runs_dir.rglob("*.json")):
        record = json.loads(path.read_text())
        out[path.relative_to(runs_dir).as_posix()] = {k: v for k, v in record.items() if k not in VOLATILE}
    return out


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files if name != "__meta__"}


def assert_same_sweep(a: Path, b: Path) -> None:
    """Identical records (up to timings) and bit-identical fitted arrays."""
    ra, rb = records(a), records(b)
    assert ra and list(ra) == list(rb)
    for name in ra:
        assert ra[name] == rb[name], name
        npz_a, npz_b = arrays(a / name.replace(".json", ".npz")), arrays(b / name.replace(".json", ".npz"))
        assert list(npz_a) == list(npz_b)
        for key in npz_a:
            np.testing.assert_array_equal(npz_a[key], npz_b[key], err_msg=f"{name}: {key}")


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent's pid), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def running(pids) -> set[int]:
    """The ``pids`` that still run (zombies, which only wait to be reaped, count as ended)."""
    return {pid for pid in pids if (fields := stat_fields(pid)) is not None and fields[0] != "Z"}


def descendants(pid: int) -> set[int]:
    """Every running process below ``pid`` (its forkserver and the workers under it), from /proc."""
    parents: dict[int, list[int]] = {}
    for child in running(int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        fields = stat_fields(child)
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_two_jobs_write_the_records_of_one(tmp_path):
    source = sweep_child.source()
    sweep = dict(sweep_child.SWEEP, shots=[1, 4], seeds=[1, 2])
    lines: list[str] = []
    serial = fit_runs(source, runs_dir=tmp_path / "serial", jobs=1, progress=lambda _: None, **sweep)
    parallel = fit_runs(source, runs_dir=tmp_path / "parallel", jobs=2, progress=lines.append, **sweep)
    assert [p.relative_to(tmp_path / "parallel") for p in parallel] == \
        [p.relative_to(tmp_path / "serial") for p in serial]
    assert_same_sweep(tmp_path / "serial", tmp_path / "parallel")
    fitted = [line for line in lines if line.startswith("[")]
    assert len(fitted) == 12 and fitted[-1].startswith("[12/12]") and "ETA" in fitted[0]
    assert "in 2 worker processes" in lines[0]


def test_sigkill_mid_sweep_keeps_whole_records_and_a_rerun_completes(tmp_path):
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, sweep_child.__file__, str(runs), "2"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    total = len(sweep_child.SWEEP["methods"]) * len(sweep_child.SWEEP["shots"]) * len(sweep_child.SWEEP["seeds"])
    deadline = time.monotonic() + 120
    while len(list(runs.rglob("*.json"))) < 2:
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "the sweep wrote no record in time"
        time.sleep(0.005)
    below = descendants(child.pid) if sys.platform.startswith("linux") else set()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    time.sleep(2.0)  # the workers end with the sweep: nothing is written after this
    if sys.platform.startswith("linux"):
        assert len(below) >= 3, f"expected a forkserver and two workers under the sweep, found {below}"
        deadline = time.monotonic() + 10
        while running(below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(below), f"processes of the killed sweep are still running: {running(below)}"
    err = child.stderr.read().decode()  # to its end: the resource tracker, its last writer, has exited
    assert "leaked semaphore" not in err and "Traceback" not in err, err
    finished = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")}
    time.sleep(2.0)
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")} == finished, "orphan workers kept writing"
    assert 2 <= len(finished) < total, "the kill did not land mid-sweep"
    for path in finished:  # only whole records, each with its parameters
        record = json.loads(path.read_text())
        assert record["metrics"]["test_top1"] >= 0 and path.with_suffix(".npz").is_file()
        assert arrays(path.with_suffix(".npz"))

    lines: list[str] = []
    fit_runs(sweep_child.source(), runs_dir=runs, jobs=2, progress=lines.append, **sweep_child.SWEEP)
    assert any(line.startswith(f"{len(finished)} record") and "skipped" in line for line in lines), lines
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in finished.items())
    assert not [p for p in runs.rglob("*.tmp")], "temporary files of the killed sweep were left behind"
    fit_runs(sweep_child.source(), runs_dir=tmp_path / "clean", jobs=1, progress=lambda _: None, **sweep_child.SWEEP)
    assert_same_sweep(tmp_path / "clean", runs)


def test_atomic_write_replaces_whole_and_stale_temps_of_dead_writers_go(tmp_path):
    target = tmp_path / "r.json"
    atomic_write(target, "old")
    atomic_write(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.json"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".r.json.{int(dead.stdout)}.abcd1234.tmp"
    stale.write_text("half")
    mine = tmp_path / f".r.json.{os.getpid()}.efgh5678.tmp"  # this process is alive: its temp stays
    mine.write_text("in progress")
    assert remove_stale_temps(tmp_path) == [stale]
    assert mine.exists() and target.read_text() == "new"


def test_usable_cores_follow_the_affinity_mask():
    assert usable_cores() == len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else usable_cores() >= 1


def test_jobs_below_one_are_refused(tmp_path):
    from stages.shared.errors import FitError

    with pytest.raises(FitError, match="jobs must be at least 1"):
        fit_runs(sweep_child.source(), runs_dir=tmp_path, jobs=0, progress=lambda _: None, methods=["zero_shot"],
                 shots=[1], seeds=[1])


def test_an_error_in_a_worker_reaches_the_caller_as_the_same_one_line_error(tmp_path):
    from stages.shared.errors import FitError

    with pytest.raises(FitError, match="augmented views"):
        fit_runs(sweep_child.source(), runs_dir=tmp_path, jobs=2, train_views="aug", progress=lambda _: None,
                 methods=["zero_shot"], shots=[1, 2], seeds=[1])


def test_cli_refuses_jobs_below_one(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["fit", "--cache", str(tmp_path / "none.h5"), "--jobs", "0"])
    assert result.exit_code == 2 and "--jobs" in result.output
