"""A writer killed with SIGKILL leaves either a resumable partial file or nothing; never a short cache."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cache import CacheError, CacheLockedError, CacheWriter, FeatureCache, partial_path
from tests.cache import writer_child

ROOT = Path(__file__).resolve().parents[2]


def spawn(path: Path, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, writer_child.__file__, str(path), str(delay)], env=env)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("child did not reach the expected state in time")
        time.sleep(0.01)


@pytest.mark.parametrize("trial", range(4))
def test_sigkill_then_resume_gives_identical_cache(tmp_path, trial):
    path = tmp_path / "c.h5"
    child = spawn(path, delay=0.01)
    wait_for(lambda: partial_path(path).exists())
    time.sleep(random.Random(trial).uniform(0.0, 0.3))
    child.send_signal(signal.SIGKILL)
    child.wait()

    if not path.exists():  # killed before commit: nothing may look complete
        with pytest.raises(CacheError):
            FeatureCache(path)
    assert spawn(path, delay=0.0).wait() == 0
    np.testing.assert_array_equal(FeatureCache(path).features("train"), writer_child.expected_features())
    assert not partial_path(path).exists()


def test_second_writer_is_refused_while_first_runs(tmp_path):
    path = tmp_path / "c.h5"
    child = spawn(path, delay=0.05)
    try:
        wait_for(lambda: partial_path(path).exists())
        with pytest.raises(CacheLockedError, match=r"being written by another process \(pid \d+\)"):
            with CacheWriter(path, writer_child.KEY, wait=0):
                pass
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_many_random_kills(tmp_path):
    """The long form of the kill test: 20 kills at random moments of one run, then a clean finish."""
    path = tmp_path / "c.h5"
    rng = random.Random(0)
    for _ in range(20):
        child = spawn(path, delay=0.002)
        time.sleep(rng.uniform(0.05, 0.8))
        child.send_signal(signal.SIGKILL)
        child.wait()
        if path.exists():
            break
        with pytest.raises(CacheError):
            FeatureCache(path)
    assert spawn(path, delay=0.0).wait() == 0
    np.testing.assert_array_equal(FeatureCache(path).features("train"), writer_child.expected_features())
