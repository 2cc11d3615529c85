"""Decode any valid image file to 8-bit RGB, and turn every unreadable one into a one-line error.

Policy (set here, for the whole process, because Pillow keeps it in module globals):
- images above ``MAX_IMAGE_PIXELS`` (Pillow's own default, ~89.5 MPixel, about 9459 x 9459) are refused:
  Pillow's ``DecompressionBombWarning`` is raised as an error, its ``DecompressionBombError`` is caught,
  and the size is checked again here in case another library disabled Pillow's limit;
- images more than ``MAX_ASPECT_RATIO`` times longer than wide (or the reverse) are refused: CLIP's
  ``Resize(224)`` scales the SHORT side to 224, so a 162-byte 1 x 20000 PNG would become 224 x 4.5M pixels;
- truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES = False``), never padded with grey;
- EXIF orientation is applied (``ImageOps.exif_transpose``), so a photo is encoded the way it is viewed;
- transparency (RGBA, LA, PA, palette with a transparent colour) is composited on white, the
  background a viewer shows and the one most web images with alpha were drawn for;
- 16- and 32-bit integer greyscale ("I;16*", "I") is scaled from 0..65535 to 0..255 (Pillow's own
  ``convert`` would clip it instead); float greyscale ("F") is clipped to 0..255 by Pillow;
- everything else (L, 1, P, CMYK, YCbCr, LAB, HSV) goes through Pillow's ``convert("RGB")``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from stages.shared.errors import DatasetError

MAX_IMAGE_PIXELS = 89_478_485
MAX_ASPECT_RATIO = 50  # resized, such an image is at most 50 crops (224 x 11200, ~7.5 MB as uint8 RGB)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WIDE_INT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
_WHITE = (255, 255, 255)


class BadImageError(DatasetError):
    """An image file is missing, corrupt, truncated, empty, not an image, or too large to decode."""


def load_rgb(path: str | os.PathLike[str], draft: int | None = None) -> Image.Image:
    """Fully decode the image at ``path`` and return it as an 8-bit RGB image (see the module policy).

    ``draft``: for a JPEG, let libjpeg decode at the smallest 1/2, 1/4 or 1/8 scale that keeps both sides at
    least ``draft`` pixels (Pillow's draft mode: the DCT is scaled, so large photos decode several times faster).
    The pixels then differ from a full decode followed by the same resize: opt-in (``extract --fast-decode``).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(img, path)
                if draft and img.format == "JPEG":
                    img.draft(img.mode, (draft, draft))
                img.load()
                rgb = to_rgb(ImageOps.exif_transpose(img))
                if rgb is img:
                    rgb = img.copy()
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(f"image file not found: {path} — check the path") from None
    except Exception as exc:  # any decoder failure (incl. the bomb warning raised as error) is a bad file
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise BadImageError(
            f"cannot decode image {path} ({reason}) — the file is corrupt, truncated or not an image; "
            "pass a readable image file"
        ) from None
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB (returns ``img`` itself when already RGB)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        mode, img = "RGBA", img.convert("RGBA")
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _WIDE_INT_MODES:
        wide = np.asarray(img, dtype=np.int64)
        grey = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


def _check_size(img: Image.Image, path: Path) -> None:
    """Refuse images over the pixel limit even when Pillow's own limit was switched off elsewhere."""
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise BadImageError(
            f"image too large to decode safely: {path} is {width}x{height} pixels "
            f"(limit {MAX_IMAGE_PIXELS:,}); shrink it"
        )
    if max(width, height) > MAX_ASPECT_RATIO * max(min(width, height), 1):
        raise BadImageError(
            f"image too elongated to resize safely: {path} is {width}x{height} pixels (aspect ratio over "
            f"{MAX_ASPECT_RATIO}:1); crop it or remove it from the split"
        )
