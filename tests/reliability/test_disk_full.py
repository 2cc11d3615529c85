"""A write error mid-extraction (file size limit, like a full disk): one-line error, exit 1, old cache intact.

The child runs under ``RLIMIT_FSIZE`` with SIGXFSZ ignored, so a write past the limit fails with EFBIG the way
a full disk fails with ENOSPC. The run extends a complete cache (adds augmented views), which works on a copy.
"""

from __future__ import annotations

import resource
import signal

import numpy as np
import pytest

from cache import FeatureCache, partial_path
from tests.reliability.helpers import (CACHE_NAME, assert_same_content, error_line, extract_args, run_cli, sha256,
                                       snapshot, spawn)


def limited(max_bytes: int):
    """A preexec_fn: files this process writes may not grow past ``max_bytes``."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


@pytest.mark.parametrize("headroom", [-4096, 2048], ids=["copy-fails", "extension-fails"])
def test_write_error_keeps_the_previous_cache(small_dataset, tmp_path, headroom):
    first = run_cli(*extract_args(small_dataset, tmp_path))
    assert first.exit_code == 0, first.output
    cache = tmp_path / CACHE_NAME
    digest, features = sha256(cache), FeatureCache(cache).features("train")

    child = spawn(extract_args(small_dataset, tmp_path, "--aug-views", "4"),
                  preexec_fn=limited(cache.stat().st_size + headroom))
    out, err = child.communicate(timeout=300)
    assert child.returncode == 1, err  # not a crash (negative: killed by a signal)
    line = error_line(err)
    assert "File too large" in line and str(partial_path(cache)) in line and "unchanged" in line

    assert sha256(cache) == digest  # the previous complete cache is untouched and still reads the same
    np.testing.assert_array_equal(FeatureCache(cache).features("train"), features)
    if headroom < 0:
        assert not partial_path(cache).exists()  # a truncated copy is never left to be resumed

    again = run_cli(*extract_args(small_dataset, tmp_path, "--aug-views", "4"))  # space freed: rerun finishes
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(FeatureCache(cache).features("train"), features)
    fresh = run_cli(*extract_args(small_dataset, tmp_path / "fresh", "--aug-views", "4"))
    assert fresh.exit_code == 0, fresh.output
    assert_same_content(snapshot(cache), snapshot(tmp_path / "fresh" / CACHE_NAME))
