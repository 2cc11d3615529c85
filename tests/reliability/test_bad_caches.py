"""Bad cache files: a clear one-line error from ``pipeline info`` and ``pipeline extract``; ``--force`` rebuilds."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import pytest

from cache import FeatureCache
from tests.reliability.helpers import CACHE_NAME, error_line, extract_args, run_cli


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def other_tool(path: Path) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        f.attrs["creator"] = "some other tool"
        f["data"] = [1, 2, 3]


def future_schema(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99


CASES = {
    "truncated": (truncate, "truncated file"),
    "random bytes": (random_bytes, "not an HDF5 file"),
    "another tool's HDF5": (other_tool, "not a feature cache of this tool"),
    "schema from the future": (future_schema, "newer than this version understands"),
}


@pytest.fixture
def built(small_dataset, tmp_path) -> Path:
    result = run_cli(*extract_args(small_dataset, tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / CACHE_NAME


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cache_is_refused_then_force_rebuilds(small_dataset, tmp_path, built, case):
    damage, message = CASES[case]
    damage(built)
    info = run_cli("info", str(built))
    assert info.exit_code == 1 and message in error_line(info.output)
    refused = run_cli(*extract_args(small_dataset, tmp_path))
    assert refused.exit_code == 1
    line = error_line(refused.output)
    assert message in line and "--force" in line
    rebuilt = run_cli(*extract_args(small_dataset, tmp_path, "--force"))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert FeatureCache(built).features("train").shape == (12, 32)
    assert "complete: yes" in run_cli("info", str(built)).output


def test_key_mismatch_names_the_fields_and_force_rebuilds(small_dataset, tmp_path, built):
    refused = run_cli(*extract_args(small_dataset, tmp_path, "--store-dtype", "float16"))
    assert refused.exit_code == 1
    line = error_line(refused.output)
    assert "built for different inputs" in line and "store_dtype" in line and "--force" in line
    assert FeatureCache(built).features("train").dtype.name == "float32"  # untouched
    rebuilt = run_cli(*extract_args(small_dataset, tmp_path, "--store-dtype", "float16", "--force"))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert FeatureCache(built).key_fields["store_dtype"] == "float16"
