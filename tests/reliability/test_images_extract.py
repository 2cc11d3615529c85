"""Unusual but valid images encode like their plain RGB twins; broken ones stop extraction or, with --skip-bad,
are skipped, recorded in the cache and counted. End to end through ``pipeline extract``."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache import FeatureCache, partial_path
from stages.extract.images import load_rgb
from tests.conftest import class_image
from tests.reliability.helpers import CACHE_NAME, error_line, extract_args, run_cli


def write_split(root: Path, files: dict[str, list[tuple[str, int]]]) -> Path:
    """A CoOp split JSON for files already under ``root/images``; classes 'cat' (0) and 'dog' (1)."""
    names = ["cat", "dog"]
    split = {s: [[rel, label, names[label]] for rel, label in rows] for s, rows in files.items()}
    (root / "split.json").write_text(json.dumps(split))
    return root / "split.json"


def plain(root: Path, count: int, prefix: str) -> list[tuple[str, int]]:
    rows = []
    for i in range(count):
        rel = f"{prefix}_{i}.png"
        class_image(i % 2, i).save(root / "images" / rel)
        rows.append((rel, i % 2))
    return rows


def odd_images(folder: Path) -> dict[str, Image.Image]:
    """Valid images in unusual modes, by file name."""
    rgb = class_image(1, 7)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewed rotated 90 degrees clockwise
    images = {
        "cmyk.jpg": (rgb.convert("CMYK"), {"quality": 95}),
        "grey16.png": (Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)), {}),
        "palette_alpha.png": (rgb.convert("P"), {"transparency": 0}),
        "grey.png": (rgb.convert("L"), {}),
        "rotated.jpg": (rgb.crop((0, 0, 40, 24)), {"exif": exif, "quality": 95}),
    }
    for name, (image, options) in images.items():
        image.save(folder / name, **options)
    return images


def test_unusual_valid_images_encode_like_their_rgb_twins(tmp_path):
    root = tmp_path / "odd"
    (root / "images").mkdir(parents=True)
    names = list(odd_images(root / "images"))
    rows = []
    for name in names:  # each odd file and a plain RGB PNG of what it should decode to
        load_rgb(root / "images" / name).save(root / "images" / f"{name}.twin.png")
        rows += [(name, 0), (f"{name}.twin.png", 1)]
    assert Image.open(root / "images" / "rotated.jpg").size == (40, 24)
    assert load_rgb(root / "images" / "rotated.jpg").size == (24, 40)  # the twin is the rotated view
    split = write_split(root, {"train": rows + plain(root, 2, "tr"), "val": plain(root, 2, "va"),
                               "test": plain(root, 2, "te")})
    result = run_cli(*extract_args(split, tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    cache = FeatureCache(tmp_path / "cache" / CACHE_NAME)
    features = cache.features("train")
    assert np.isfinite(features).all() and cache.skipped_paths("train") == []
    for i, name in enumerate(names):
        np.testing.assert_allclose(features[2 * i], features[2 * i + 1], rtol=1e-5, atol=1e-6, err_msg=name)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels and holds none (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)) + chunk(
        b"IEND", b"")


def truncated_jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()[: len(out.getvalue()) // 2]


BROKEN = {
    "corrupt.png": png_header(8, 8)[:20] + b"garbage" * 10,
    "truncated.jpg": truncated_jpeg(),
    "empty.jpg": b"",
    "notes.jpg": b"I am a text file, not an image\n",
    "bomb.png": png_header(20000, 20000),
}


@pytest.fixture
def broken_dataset(tmp_path) -> Path:
    root = tmp_path / "broken"
    (root / "images").mkdir(parents=True)
    for name, content in BROKEN.items():
        (root / "images" / name).write_bytes(content)
    test = plain(root, 3, "te")
    test[1:1] = [(name, i % 2) for i, name in enumerate(BROKEN)]  # broken files in the middle of the split
    return write_split(root, {"train": plain(root, 4, "tr"), "val": plain(root, 2, "va"), "test": test})


def test_broken_image_stops_extraction_naming_the_file(broken_dataset, tmp_path):
    result = run_cli(*extract_args(broken_dataset, tmp_path / "cache"))
    assert result.exit_code == 1
    line = error_line(result.output)
    assert str(broken_dataset.parent / "images" / "corrupt.png") in line and "--skip-bad" in line
    assert not (tmp_path / "cache" / CACHE_NAME).exists()  # only a resumable partial file, never a cache


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "after-a-stop"])
def test_skip_bad_skips_records_and_counts(broken_dataset, tmp_path, resume):
    if resume:  # a stopped run leaves a partial file; --skip-bad resumes it
        assert run_cli(*extract_args(broken_dataset, tmp_path / "cache")).exit_code == 1
        assert partial_path(tmp_path / "cache" / CACHE_NAME).exists()
    result = run_cli(*extract_args(broken_dataset, tmp_path / "cache", "--skip-bad"))
    assert result.exit_code == 0, result.output
    assert f"skipped {len(BROKEN)} unreadable image(s)" in result.output
    cache = FeatureCache(tmp_path / "cache" / CACHE_NAME)
    assert sorted(cache.skipped_paths("test")) == sorted(BROKEN)
    assert cache.positions("test").tolist() == [0, 6, 7]  # the usable images only
    assert cache.features("test").shape == (3, 32) and np.isfinite(cache.features("test")).all()
    assert cache.skipped_paths("train") == []
