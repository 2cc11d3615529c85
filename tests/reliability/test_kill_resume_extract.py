"""SIGKILL a real ``pipeline extract`` process at random moments; the rerun's cache equals an uninterrupted run's.

Each trial starts ``python -m pipeline extract`` (tiny model, batch size 1: one chunk commit per image, so the
encoding, not the start-up, fills most of a run),
waits until it holds the cache's write lock, sleeps a random fraction of an uninterrupted run's measured
duration and kills it with SIGKILL. Every fourth trial starts from nothing and aims at the last 15% of the
run, where the text prompts are encoded and the commit (fsync + atomic rename) happens. After every kill the
final cache path either does not exist (``FeatureCache`` refuses it, as ``fit`` would) or holds exactly the
uninterrupted run's content. A last, uninterrupted rerun resumes and must give the same content bit for bit.

``PIPELINE_KILL_TRIALS`` sets the number of kills of the default test (4); the ``slow`` test makes 24.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from cache import CacheError, FeatureCache, partial_path
from tests.conftest import write_coop_dataset
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import (CACHE_NAME, assert_same_content, extract_args, lock_holder, run_cli,
                                       snapshot, spawn)

TRIALS = int(os.environ.get("PIPELINE_KILL_TRIALS", "4"))
SLOW_TRIALS = max(24, TRIALS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """120 images (3 classes x 24/6/10): 120 chunk commits at batch size 1."""
    return write_coop_dataset(tmp_path_factory.mktemp("kill") / "data", CLASSES, {"train": 24, "val": 6, "test": 10})


def args_for(split_file: Path, cache_dir: Path) -> list[str]:
    return extract_args(split_file, cache_dir, batch_size=1)


def wait_until_writing(child, cache: Path) -> None:
    """Until the child holds the write lock (it writes its pid there) or has exited."""
    deadline = time.monotonic() + 120
    while lock_holder(cache) != str(child.pid) and child.poll() is None:
        assert time.monotonic() < deadline, "the child never took the write lock"
        time.sleep(0.002)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> tuple[dict[str, np.ndarray], float]:
    """An uninterrupted child run: its cache content and its duration from taking the lock to the commit (the
    moment the cache appears under its name; the interpreter's exit after that is not part of the write)."""
    cache_dir = tmp_path_factory.mktemp("reference")
    cache = cache_dir / CACHE_NAME
    child = spawn(args_for(dataset, cache_dir))
    wait_until_writing(child, cache)
    start = time.monotonic()
    while not cache.exists() and child.poll() is None:
        time.sleep(0.002)
    duration = time.monotonic() - start
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    return snapshot(cache), duration


def progress(cache: Path) -> str:
    """Where a kill landed, judged by what it left behind."""
    if cache.exists():
        return "after the rename (complete)"
    partial = partial_path(cache)
    if not partial.exists():
        return "before the partial file existed"
    try:
        with h5py.File(partial, "r") as f:
            masks = []
            f.visititems(lambda n, o: masks.append(o[()]) if n.endswith("__done") else None)
    except OSError:
        return "while creating the partial file"
    done = sum(int(m.sum()) for m in masks)
    total = sum(int(m.size) for m in masks)
    if not masks:
        return "while laying out the arrays"
    return "all blocks written, before the rename" if done == total else "between chunk commits"


def kill_trials(split_file: Path, cache_dir: Path, expected: dict, duration: float, trials: int,
                seed: int) -> Counter:
    """Kill ``trials`` runs at random moments, checking after each that no short file is visible."""
    cache = cache_dir / CACHE_NAME
    rng = random.Random(seed)
    landed: Counter = Counter()
    for trial in range(trials):
        aim_at_end = trial % 4 == 3
        resuming = partial_path(cache).exists() and not aim_at_end
        if aim_at_end:  # from nothing, so the measured duration applies: land in the last 15% (prompts, commit)
            for path in (cache, partial_path(cache)):
                path.unlink(missing_ok=True)
        child = spawn(args_for(split_file, cache_dir))
        wait_until_writing(child, cache)
        # a resumed run has less left to do: aim inside the first part of a full run's duration
        fraction = rng.uniform(0.85, 1.02) if aim_at_end else rng.uniform(0.0, 0.5 if resuming else 1.0)
        time.sleep(duration * fraction)
        killed = child.poll() is None
        if killed:
            child.kill()
        _, err = child.communicate(timeout=300)
        assert killed or child.returncode == 0, err
        landed["killed " + progress(cache) if killed else "finished before the kill"] += 1
        if cache.exists():  # complete: it must be exactly the uninterrupted result; then start over
            assert_same_content(snapshot(cache), expected)
            assert FeatureCache(cache).features("train").shape == (72, 32)
            cache.unlink()
        else:
            with pytest.raises(CacheError):
                FeatureCache(cache)
    return landed


def finish_and_compare(split_file: Path, cache_dir: Path, expected: dict) -> None:
    result = run_cli(*args_for(split_file, cache_dir))
    assert result.exit_code == 0, result.output
    cache = cache_dir / CACHE_NAME
    assert_same_content(snapshot(cache), expected)
    assert not partial_path(cache).exists()
    FeatureCache(cache)  # opens: complete and ours


def test_kills_then_resume_give_the_uninterrupted_cache(dataset, reference, tmp_path):
    expected, duration = reference
    landed = kill_trials(dataset, tmp_path, expected, duration, TRIALS, seed=TRIALS)
    print(f"\n{TRIALS} kill trials landed: {dict(landed)}")
    assert landed["killed between chunk commits"] >= 1, landed  # the kills must reach the encoding itself
    finish_and_compare(dataset, tmp_path, expected)


@pytest.mark.slow
def test_many_kills_then_resume_give_the_uninterrupted_cache(dataset, reference, tmp_path):
    expected, duration = reference
    landed = kill_trials(dataset, tmp_path, expected, duration, SLOW_TRIALS, seed=1000 + SLOW_TRIALS)
    print(f"\n{SLOW_TRIALS} kill trials landed: {dict(landed)}")
    assert landed["killed between chunk commits"] >= SLOW_TRIALS // 3, landed
    finish_and_compare(dataset, tmp_path, expected)


def test_killed_between_last_block_and_rename_resumes_to_the_same_cache(dataset, reference, tmp_path):
    """The commit window is too short to hit with random kills, so its state is built exactly: a finished
    run's file put back under its partial name is what a kill after the last block and before the rename
    leaves. ``fit`` must refuse it, and a rerun must commit it unchanged, encoding nothing."""
    expected, _ = reference
    finish_and_compare(dataset, tmp_path, expected)
    cache = tmp_path / CACHE_NAME
    os.replace(cache, partial_path(cache))
    with pytest.raises(CacheError, match="unfinished"):
        FeatureCache(cache)
    result = run_cli(*args_for(dataset, tmp_path))
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "encoded 0 images" in result.output
    assert_same_content(snapshot(cache), expected)
