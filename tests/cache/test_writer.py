"""Round trips, refusals and atomic commits of the cache writer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cache import CacheError, CacheReader, CacheWriter, FeatureCache, partial_path

KEY = {"model": "toy", "weights": "none", "precision": "fp32", "split_hash": "abc"}


def write_small(path, key=KEY, features=None, force=False):
    features = np.arange(20, dtype=np.float32).reshape(10, 2) if features is None else features
    with CacheWriter(path, key, attrs={"dataset": "toy", "logit_scale": 100.0}, force=force) as writer:
        writer.put("classes", ["cat", "dog"])
        writer.put("image/test/labels", np.arange(10) % 2)
        writer.put("image/test/paths", [f"img{i}.png" for i in range(10)])
        writer.put("image/test/positions", np.arange(10))
        array = writer.array("image/test/features", features.shape, "float32", block_rows=4)
        for index, rows in array.blocks():
            array.write(index, features[rows])
        writer.commit()
    return features


def test_round_trip_and_no_partial_left(tmp_path):
    path = tmp_path / "c.h5"
    features = write_small(path)
    assert path.exists() and not partial_path(path).exists()
    cache = FeatureCache(path)
    np.testing.assert_array_equal(cache.features("test"), features)
    np.testing.assert_array_equal(cache.features("test", np.array([7, 2, 7])), features[[7, 2, 7]])
    assert cache.classes == ["cat", "dog"]
    assert cache.split_paths("test")[3] == "img3.png"
    assert cache.key_fields == KEY
    assert cache.logit_scale == 100.0


def test_file_is_invisible_until_commit(tmp_path):
    path = tmp_path / "c.h5"
    with CacheWriter(path, KEY) as writer:
        array = writer.array("image/test/features", (10, 2), "float32", block_rows=4)
        array.write((0,), np.zeros((4, 2), np.float32))
        with pytest.raises(CacheError, match="incomplete"):
            writer.commit()
    assert not path.exists()
    with pytest.raises(CacheError, match="only an unfinished write of it"):
        CacheReader(path)


def test_mismatched_key_names_the_field(tmp_path):
    path = tmp_path / "c.h5"
    write_small(path)
    other = dict(KEY, precision="fp16")
    with pytest.raises(CacheError, match=r"precision: cache has 'fp32', requested 'fp16'"):
        with CacheWriter(path, other):
            pass
    with pytest.raises(CacheError, match=r"precision"):
        CacheReader(path).check_key(other)
    CacheReader(path).check_key(KEY)


def test_force_rebuilds_and_keeps_old_file_until_commit(tmp_path):
    path = tmp_path / "c.h5"
    write_small(path)
    other = dict(KEY, precision="fp16")
    with CacheWriter(path, other, force=True) as writer:
        writer.array("image/test/features", (10, 2), "float32", block_rows=4)
        assert CacheReader(path).key_fields == KEY  # the old file is untouched meanwhile
    write_small(path, key=other, features=np.ones((10, 2), np.float32), force=True)
    assert CacheReader(path).key_fields == other


def test_extending_a_finished_file_keeps_its_content(tmp_path):
    path = tmp_path / "c.h5"
    features = write_small(path)
    with CacheWriter(path, KEY) as writer:
        assert writer.state == "extending"
        array = writer.array("text/coop/features", (2, 1, 2), "float32", block_rows=2)
        array.write((0,), np.ones((2, 1, 2), np.float32))
        writer.commit()
    cache = FeatureCache(path)
    np.testing.assert_array_equal(cache.features("test"), features)
    assert cache.text_features("coop").shape == (2, 1, 2)


def test_non_finite_rows_are_refused_at_write_time(tmp_path):
    with CacheWriter(tmp_path / "c.h5", KEY) as writer:
        array = writer.array("image/test/features", (4, 2), "float16", block_rows=4)
        bad = np.array([[1, np.nan], [0, 0], [np.inf, 0], [0, 0]], np.float32)
        with pytest.raises(CacheError, match="2 row.*NaN/Inf"):
            array.write((0,), bad)
        assert array.missing() == [(0,)]


def test_changed_listing_is_refused(tmp_path):
    path = tmp_path / "c.h5"
    write_small(path)
    with CacheWriter(path, KEY) as writer:
        with pytest.raises(CacheError, match="image/test/labels differs"):
            writer.put("image/test/labels", np.zeros(10, int))


def test_lead_axes_arrays_track_each_view(tmp_path):
    path = tmp_path / "c.h5"
    with CacheWriter(path, KEY) as writer:
        array = writer.array("image/train/aug_features", (3, 5, 2), "float32", block_rows=2, lead_axes=1)
        assert len(array.missing()) == 3 * 3
        for index, rows in array.blocks():
            array.write(index, np.full((rows.stop - rows.start, 2), index[0], np.float32))
        writer.commit()
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["image/train/aug_features"][:, 0, 0], [0, 1, 2])
