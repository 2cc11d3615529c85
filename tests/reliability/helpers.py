"""Shared helpers of the reliability tests: the real ``pipeline`` command in-process and as a child process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
from click.testing import CliRunner, Result

from pipeline.cli import cli
from tests.conftest import TINY_MODEL_CONFIG

ROOT = Path(__file__).resolve().parents[2]
CACHE_NAME = "folder/tiny-test-clip__none.h5"


def extract_args(split_file: Path, cache_dir: Path, *extra: str, batch_size: int = 4) -> list[str]:
    """Arguments of ``pipeline extract`` for a CoOp-layout dataset with the tiny random model."""
    return ["extract", "--dataset", "folder", "--data-root", str(split_file.parent / "images"), "--split-file",
            str(split_file), "--model", str(TINY_MODEL_CONFIG), "--pretrained", "none", "--cache-dir",
            str(cache_dir), "--batch-size", str(batch_size), "--workers", "0", *extra]


def run_cli(*args: str) -> Result:
    """Invoke the real click command in this process (usage errors exit 2, user errors exit 1)."""
    return CliRunner().invoke(cli, list(args))


def spawn(args: list[str], preexec_fn: Callable[[], Any] | None = None) -> subprocess.Popen:
    """Start ``python -m pipeline -q <args>`` as a child process (output captured)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "pipeline", "-q", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)


def error_line(output: str) -> str:
    """The one ``error:`` line of a failed command; asserts there is no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def snapshot(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by name (progress masks included), for exact comparison."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_content(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Same dataset names and bit-identical values."""
    assert sorted(found) == sorted(expected)
    for name, value in expected.items():
        assert found[name].shape == value.shape, name
        assert np.array_equal(found[name], value), name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_holder(cache: Path) -> str:
    """The pid written in a cache file's lock file ('' when none)."""
    lock = Path(str(cache) + ".lock")
    return lock.read_text().strip() if lock.exists() else ""
