"""Image decoding: unusual but valid files become 8-bit RGB; broken ones raise BadImageError naming the file."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stages.shared.errors import DatasetError
from stages.extract.images import MAX_IMAGE_PIXELS, BadImageError, load_rgb


def _rgb(path):
    image = load_rgb(path)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def test_rgb_jpeg(tmp_path):
    Image.new("RGB", (5, 3), (10, 200, 30)).save(tmp_path / "a.jpg", quality=95)
    pixels = _rgb(tmp_path / "a.jpg")
    assert pixels.shape == (3, 5, 3)
    assert np.abs(pixels - [10, 200, 30]).max() <= 3


@pytest.mark.parametrize("mode, value, expected", [("L", 77, 77), ("1", 1, 255), ("1", 0, 0)])
def test_greyscale_and_bilevel(tmp_path, mode, value, expected):
    Image.new(mode, (4, 4), value).save(tmp_path / "g.png")
    assert (_rgb(tmp_path / "g.png") == expected).all()


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "p.png")
    assert _rgb(tmp_path / "p.png").tolist() == [[[255, 0, 0], [0, 0, 255]]]
    image.save(tmp_path / "pt.png", transparency=1)
    assert _rgb(tmp_path / "pt.png").tolist() == [[[255, 0, 0], [255, 255, 255]]]
    image.save(tmp_path / "pt.gif", transparency=1)
    assert _rgb(tmp_path / "pt.gif").tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_alpha_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [255, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = _rgb(tmp_path / "a.png")
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 1].tolist() == [255, 255, 255]
    assert np.abs(pixels[0, 2] - [255, 127, 127]).max() <= 1
    la = np.array([[[0, 0], [0, 255]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert _rgb(tmp_path / "la.png").tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert np.abs(_rgb(tmp_path / "c.jpg")[2, 2] - [255, 0, 0]).max() <= 6


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode.startswith("I")
    assert _rgb(tmp_path / "w.png")[0, :, 0].tolist() == [0, 128, 255]


def test_32_bit_integer_image_is_read_as_16_bit_range(tmp_path):
    Image.fromarray(np.array([[0, 257, 65535, 70000]], dtype=np.int32), "I").save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert _rgb(tmp_path / "i.tif")[0, :, 1].tolist() == [0, 1, 255, 255]


def test_exif_orientation_applied(tmp_path):
    stored = Image.new("RGB", (16, 8), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    stored.save(tmp_path / "r.jpg", exif=exif, quality=95)
    pixels = _rgb(tmp_path / "r.jpg")
    assert pixels.shape == (16, 8, 3)
    assert pixels[3, 4].argmax() == 0 and pixels[12, 4].argmax() == 2  # red on top, blue below


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (1-bit grey), with no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    import io
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) // 2]


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "cannot decode image"),
    ("text.jpg", b"hello, I am not an image\n", "cannot decode image"),
    ("half.jpg", _truncated_jpeg(), "truncated"),
    ("bad.png", _png_header(4, 4)[:20] + b"garbage" * 10, "cannot decode image"),
    ("huge.png", _png_header(20000, 20000), "DecompressionBomb"),
    ("big.png", _png_header(10000, 10000), "DecompressionBombWarning"),
])
def test_bad_files_raise_one_line_error_naming_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadImageError) as err:
        load_rgb(path)
    message = str(err.value)
    assert str(path) in message and reason in message and "\n" not in message
    assert isinstance(err.value, DatasetError)


def test_pixel_limit_holds_even_if_pillow_limit_disabled(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(10000, 10000))
    with pytest.raises(BadImageError, match=f"too large to decode safely: {path} is 10000x10000 pixels"):
        load_rgb(path)
    assert MAX_IMAGE_PIXELS < 10000 * 10000


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match=f"image file not found: {tmp_path / 'gone.jpg'}"):
        load_rgb(tmp_path / "gone.jpg")


def test_returned_image_outlives_the_file(tmp_path):
    Image.new("RGB", (3, 3), (1, 2, 3)).save(tmp_path / "x.png")
    image = load_rgb(tmp_path / "x.png")
    (tmp_path / "x.png").unlink()
    assert image.getpixel((1, 1)) == (1, 2, 3)
