"""Bad cache files are refused with a message that says what is wrong."""

from __future__ import annotations

import h5py
import pytest

from cache import CacheError, CacheReader, FeatureCache
from tests.cache.test_writer import write_small


def test_missing_file(tmp_path):
    with pytest.raises(CacheError, match="no cache file at "):
        CacheReader(tmp_path / "none.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "c.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(CacheError, match="not an HDF5 file"):
        CacheReader(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "c.h5"
    write_small(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="c.h5"):
        FeatureCache(path).features("test")


def test_other_tools_hdf5(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(CacheError, match="not a feature cache of this tool"):
        CacheReader(path)


def test_schema_from_the_future(tmp_path):
    path = tmp_path / "c.h5"
    write_small(path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(CacheError, match="schema 99, newer"):
        CacheReader(path)


def test_missing_split_and_template_set_are_named(tmp_path):
    path = tmp_path / "c.h5"
    write_small(path)
    cache = FeatureCache(path)
    with pytest.raises(CacheError, match="no 'train' split \\(has: test\\)"):
        cache.split_labels("train")
    with pytest.raises(CacheError, match="no template set 'coop'"):
        cache.text_features("coop")


def test_reader_survives_fork(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "c.h5"
    expected = write_small(path)
    cache = FeatureCache(path)
    cache.features("test")  # open a handle in the parent first
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply(cache.features, ("test",))
    assert (got == expected).all()
