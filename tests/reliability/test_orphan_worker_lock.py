"""Item 7: SIGKILL an extract while its DataLoader workers run; an immediate rerun is not refused.

A ``flock`` belongs to the open file that ``fork`` shares with DataLoader workers; a worker orphaned by the
kill noticed its parent's death only after up to 5 s, and until then the rerun was refused naming a dead pid.
Workers now close their inherited copy of the lock at fork, so the kernel frees the lock with the writer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from cache import FeatureCache, partial_path
from cache.errors import CacheLockedError
from cache.lock import WriteLock
from tests.conftest import write_coop_dataset
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import CACHE_NAME, extract_args, lock_holder, run_cli, spawn


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find the worker processes")
def test_rerun_right_after_a_kill_is_not_refused_by_an_orphaned_worker(tmp_path):
    split = write_coop_dataset(tmp_path / "data", CLASSES, {"train": 16, "val": 4, "test": 8})
    cache_dir = tmp_path / "cache"
    cache = cache_dir / CACHE_NAME
    args = extract_args(split, cache_dir, batch_size=1)
    args[args.index("--workers") + 1] = "2"
    child = spawn(args)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not (lock_holder(cache) == str(child.pid) and partial_path(cache).exists() and workers):
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
            workers = [p for p in _children(child.pid) if _alive(p)]
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        orphans_alive = [p for p in workers if _alive(p)]
        lock = WriteLock(cache, wait=0)
        try:
            lock.acquire()  # what the rerun does first, at once, while the orphans still run
            locked = ""
        except CacheLockedError as exc:
            locked = str(exc)
        finally:
            lock.release()
        alive_after_lock = [p for p in orphans_alive if _alive(p)]
        rerun = run_cli(*extract_args(split, cache_dir, batch_size=1), "--wait", "0")
    finally:
        for pid in workers:  # the workers this test started (through the child): never leave them behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)
    assert alive_after_lock, "no worker outlived the lock attempt: the test did not reproduce the race"
    assert not locked, locked
    assert rerun.exit_code == 0, rerun.output
    assert "being written by another process" not in rerun.output
    assert FeatureCache(cache).features("test").shape == (24, 32)
