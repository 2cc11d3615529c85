"""The bounded ``.npz`` reader: members read only on request, headers checked before anything is allocated."""

from __future__ import annotations

import os
import re
import tracemalloc
import zipfile

import numpy as np
import pytest

from stages.shared.fitted_file import (MAX_META_BYTES, MAX_PROJECTED, PROJECTION, FittedFile, FittedFileError,
                                       read_meta, read_projection)
from tests.reliability import crafted_npz as npz


def test_members_read_as_numpy_wrote_them(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "f": np.asfortranarray(np.eye(3)[:, :2]),
              "s": np.array('{"x": 1}'), "e": np.zeros((0, 5), np.int8), "b": np.array([True, False])}
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "deflated.npz", **arrays)
    for name in ("plain.npz", "deflated.npz"):
        with FittedFile(tmp_path / name) as fitted:
            assert sorted(fitted.names) == sorted(arrays)
            for key, value in arrays.items():
                got = fitted.read(key)
                assert got.dtype == value.dtype and got.shape == value.shape
                np.testing.assert_array_equal(got, value)
            assert fitted.read("s")[()] == '{"x": 1}'


def test_meta_is_bounded_json(tmp_path):
    np.savez(tmp_path / "r.npz", __meta__=np.array('{"classes": ["a"]}'))
    with FittedFile(tmp_path / "r.npz") as fitted:
        assert read_meta(fitted) == {"classes": ["a"]}
    huge = npz.zero_bomb("__meta__", f"<U{MAX_META_BYTES}", ())  # 64 MiB of text from 64 KB
    with FittedFile(npz.write_npz(tmp_path / "huge.npz", [huge])) as fitted:
        with pytest.raises(FittedFileError, match="not one JSON text of at most"):
            read_meta(fitted)
    np.savez(tmp_path / "deep.npz", __meta__=np.array("[" * 100_000 + "]" * 100_000))
    with FittedFile(tmp_path / "deep.npz") as fitted, pytest.raises(FittedFileError, match="is not JSON"):
        read_meta(fitted)


def test_an_unused_member_is_never_read(tmp_path):
    """A member with a wrong checksum (or a bomb) beside the one asked for costs nothing."""
    good = npz.stored("good", npz.npy("i8", (3,), np.arange(3).tobytes()))
    bad = npz.stored("bad", npz.npy("i8", (3,), bytes(24)), crc=12345)
    path = npz.write_npz(tmp_path / "r.npz", [good, bad])
    with FittedFile(path) as fitted:
        np.testing.assert_array_equal(fitted.read("good"), [0, 1, 2])
        with pytest.raises(FittedFileError, match="member 'bad' cannot be read .*CRC"):
            fitted.read("bad")


def test_a_huge_header_is_refused_before_anything_is_allocated(tmp_path):
    path = npz.write_npz(tmp_path / "r.npz", [npz.stored("w", npz.npy("f8", (10**7, 5 * 10**3), bytes(16)))])
    tracemalloc.start()
    try:
        with FittedFile(path) as fitted, pytest.raises(FittedFileError, match="'w' declares 372.5 GiB of values "
                                                                              "but the archive holds 16 bytes"):
            fitted.read("w")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024**2


def test_the_callers_check_sees_the_header_first(tmp_path):
    seen = []

    def check(dtype, shape):
        seen.append((dtype, shape))
        return "more than allowed"

    np.savez(tmp_path / "r.npz", w=np.ones((4, 2), np.float32))
    with FittedFile(tmp_path / "r.npz") as fitted, pytest.raises(FittedFileError, match="'w': more than allowed"):
        fitted.read("w", check)
    assert seen == [(np.dtype(np.float32), (4, 2))]


def test_deflated_data_may_not_expand_past_deflate(tmp_path):
    head = npz.npy("u1", (2 * 1024**3,))
    member = npz.deflated("w", head + bytes(100))
    member.size = len(head) + 2 * 1024**3
    with FittedFile(npz.write_npz(tmp_path / "r.npz", [member])) as fitted:
        with pytest.raises(FittedFileError, match="more than deflate can expand"):
            fitted.read("w")
    honest = npz.zero_bomb("w", "u1", (64 * 1024**2,))  # about 1011:1, as deflate allows
    with FittedFile(npz.write_npz(tmp_path / "bomb.npz", [honest])) as fitted:
        assert fitted.read("w", lambda dtype, shape: None).shape == (64 * 1024**2,)


@pytest.mark.parametrize("case, message", [
    ("pickled", "holds pickled Python objects"),
    ("structured", "not plain numbers or text"),
    ("short data", "declares 24 bytes of values but the archive holds 8 bytes"),
    ("data past the end", "lies past the end of the file"),
    ("encrypted", "is encrypted"),
    ("bzip2", "compression method 12"),
    ("not .npy", "is not one array of a NumPy .npz"),
    ("twice", "is not one array of a NumPy .npz"),
    ("npy version 3", ".npy version (3, 0)"),
    ("negative shape", "declares the shape"),
])
def test_malformed_members_are_one_line(tmp_path, case, message):
    three = npz.npy("i8", (3,), bytes(24))
    members = {
        "pickled": [npz.stored("w", npz.npy("O", (1,), b"x"))],
        "structured": [npz.stored("w", npz.npy([("a", "f4")], (1,), bytes(4)))],
        "short data": [npz.stored("w", npz.npy("i8", (3,), bytes(8)))],
        "encrypted": [npz.Member("w", three, len(three), 0, flags=1)],
        "bzip2": [npz.Member("w", three, len(three), 0, method=zipfile.ZIP_BZIP2)],
        "not .npy": [npz.stored("w", three)],
        "twice": [npz.stored("w", three), npz.stored("w", three)],
        "npy version 3": [npz.stored("w", b"\x93NUMPY\x03\x00" + three[8:])],
        "negative shape": [npz.stored("w", three.replace(b"(3,), ", b"(-3,),"))],
        "data past the end": [npz.stored("w", three)],
    }[case]
    path = npz.write_npz(tmp_path / "r.npz", members)
    if case == "not .npy":
        path.write_bytes(path.read_bytes().replace(b"w.npy", b"w.txt"))
    if case == "data past the end":
        data = path.read_bytes()
        start = data.index(b"PK\x01\x02")
        offset = start + 42  # the directory's local-header offset of the only member
        path.write_bytes(data[:offset] + (10**6).to_bytes(4, "little") + data[offset + 4:])
    with pytest.raises(FittedFileError, match=re.escape(message)) as raised:
        with FittedFile(path) as fitted:
            fitted.read("w")
    assert "\n" not in str(raised.value)


def test_not_a_regular_file_or_not_a_zip(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(FittedFileError, match="not a regular file"):
        FittedFile(tmp_path / "pipe.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 junk")
    with pytest.raises(FittedFileError, match="cannot be read as an .npz archive"):
        FittedFile(tmp_path / "junk.npz")


def _projection(n: int, classes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"proj_images_before": rng.normal(size=(n, 2)), "proj_images_after": rng.normal(size=(n, 2)),
            "proj_labels": rng.integers(0, classes, n), "proj_protos_before": rng.normal(size=(classes, 2)),
            "proj_protos_after": rng.normal(size=(classes, 2))}


def test_projection_bounds(tmp_path):
    np.savez(tmp_path / "none.npz", W=np.zeros(2))
    with FittedFile(tmp_path / "none.npz") as fitted:
        assert read_projection(fitted, 3) is None
    np.savez(tmp_path / "ok.npz", **_projection(MAX_PROJECTED, 3))
    with FittedFile(tmp_path / "ok.npz") as fitted:
        assert read_projection(fitted, 3)["proj_labels"].shape == (MAX_PROJECTED,)
        with pytest.raises(FittedFileError, match=r"'proj_protos_before': is float64\(3, 2\), expected \(4, 2\)"):
            read_projection(fitted, 4)  # the class list says 4 classes
    np.savez(tmp_path / "many.npz", **_projection(MAX_PROJECTED + 1, 3))
    with FittedFile(tmp_path / "many.npz") as fitted, pytest.raises(FittedFileError, match="n <= 600"):
        read_projection(fitted)
    arrays = _projection(10, 3)
    np.savez(tmp_path / "skewed.npz", **{**arrays, "proj_images_after": arrays["proj_images_after"][:9]})
    with FittedFile(tmp_path / "skewed.npz") as fitted, pytest.raises(FittedFileError, match="inconsistent shapes"):
        read_projection(fitted, 3)
    assert set(PROJECTION) == set(arrays)
