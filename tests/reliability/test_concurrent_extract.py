"""Two ``pipeline extract`` runs on one cache file: the second is refused (or waits with --wait), never interleaves."""

from __future__ import annotations

import os
import signal
import threading
import time

from cache import FeatureCache, partial_path
from tests.reliability.helpers import (CACHE_NAME, assert_same_content, error_line, extract_args, lock_holder,
                                       run_cli, sha256, snapshot, spawn)


def test_second_run_is_refused_or_waits_and_the_file_is_correct(small_dataset, tmp_path):
    reference = run_cli(*extract_args(small_dataset, tmp_path / "reference", batch_size=2))
    assert reference.exit_code == 0, reference.output
    expected = snapshot(tmp_path / "reference" / CACHE_NAME)

    cache_dir = tmp_path / "shared"
    cache = cache_dir / CACHE_NAME
    first = spawn(extract_args(small_dataset, cache_dir, batch_size=2))
    try:
        deadline = time.monotonic() + 120
        while lock_holder(cache) != str(first.pid) or not partial_path(cache).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.002)
        os.kill(first.pid, signal.SIGSTOP)  # hold the first run mid-write, lock taken
        before = sha256(partial_path(cache))

        refused = run_cli(*extract_args(small_dataset, cache_dir, batch_size=2), "--wait", "0")
        assert refused.exit_code == 1
        line = error_line(refused.output)
        assert f"being written by another process (pid {first.pid})" in line and "--wait" in line
        assert sha256(partial_path(cache)) == before  # the refused run wrote nothing
        assert not cache.exists()

        threading.Timer(1.0, os.kill, (first.pid, signal.SIGCONT)).start()
        waited = run_cli(*extract_args(small_dataset, cache_dir, batch_size=2), "--wait", "120")
        assert waited.exit_code == 0, waited.output
        # it could only go on once the first run had committed and let go of the lock: nothing left to encode
        assert "encoded 0 images" in waited.output or "nothing to encode" in waited.output
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_same_content(snapshot(cache), expected)
    assert FeatureCache(cache).features("test").shape == (6, 32)
    assert not partial_path(cache).exists()
