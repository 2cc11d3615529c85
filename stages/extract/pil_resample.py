"""Pillow's resampling algorithm as two matrix products that run on any torch device.

Pillow resizes an 8-bit image in two separable passes, each a weighted sum of the input pixels with
fixed-point integer weights (22 fractional bits), rounded and clipped to 0..255 between the passes
(``libImaging/Resample.c``). Written as matrices of those same integer weights, each pass is one matrix
product whose every partial sum is an integer below 2**31, which float64 holds exactly, so the rounding and
the clip are exact too. A single pass gives Pillow's bytes exactly. Two passes run horizontal first, as
Pillow up to 12 always does; Pillow 13 runs some sizes vertical first, and there the second pass's rounding
can differ by one level in some pixels (tests/extract/test_tensor_decode.py measures it).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

PRECISION_BITS = 22  # Pillow's: 32 - 8 - 2


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x *= math.pi
    return math.sin(x) / x * (float(np.float32(0.54)) + float(np.float32(0.46)) * math.cos(x))


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


#: name -> (filter, support), as Pillow defines them
FILTERS = {"box": (_box, 0.5), "bilinear": (_bilinear, 1.0), "hamming": (_hamming, 1.0),
           "bicubic": (_bicubic, 2.0), "lanczos": (_lanczos, 3.0)}


@lru_cache(maxsize=1024)
def weights(in_size: int, out_size: int, filter_name: str) -> np.ndarray:
    """The (out_size, in_size) matrix of Pillow's fixed-point weights for one pass (integers, as float64)."""
    filt, support = FILTERS[filter_name]
    scale = float(np.float32(in_size)) / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    matrix = np.zeros((out_size, in_size), np.float64)
    ss = 1.0 / filterscale
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        taps = [filt((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in taps:  # summed in Pillow's order: the last bit of the normalisation matters
            total += w
        k = np.array(taps, np.float64)
        if total != 0.0:
            k = k / total
        fixed = np.where(k < 0, np.trunc(-0.5 + k * (1 << PRECISION_BITS)), np.trunc(0.5 + k * (1 << PRECISION_BITS)))
        matrix[xx, xmin:xmin + xmax] = fixed
    return matrix


_DEVICE_WEIGHTS: dict[tuple, torch.Tensor] = {}
_DEVICE_WEIGHTS_MAX = 512


def _on(device: torch.device, in_size: int, out_size: int, filter_name: str, keep: slice) -> torch.Tensor:
    """The pass's weights restricted to the output rows ``keep``, on ``device`` (kept for reuse)."""
    key = (str(device), in_size, out_size, filter_name, keep.start, keep.stop)
    found = _DEVICE_WEIGHTS.get(key)
    if found is None:
        if len(_DEVICE_WEIGHTS) >= _DEVICE_WEIGHTS_MAX:
            _DEVICE_WEIGHTS.pop(next(iter(_DEVICE_WEIGHTS)))
        found = torch.from_numpy(weights(in_size, out_size, filter_name)[keep]).to(device)
        _DEVICE_WEIGHTS[key] = found
    return found


def _round_clip(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``clip8((sum + 2**21) >> 22)`` on exact integer sums held in float64."""
    return x.add_(1 << (PRECISION_BITS - 1)).mul_(1.0 / (1 << PRECISION_BITS)).floor_().clamp_(0, 255)


def resize(images: torch.Tensor, size: tuple[int, int], filter_name: str = "bicubic",
           rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
    """``PIL.Image.resize`` of uint8 images (..., H, W) to ``size`` (h, w), then rows/cols of the result kept.

    Keeping only ``rows`` and ``cols`` (a centre crop) computes just those output pixels: each is
    independent of the others, so the bytes are those of a full resize followed by the crop.
    """
    if filter_name not in FILTERS:
        raise ValueError(f"no exact tensor resampling for filter '{filter_name}'")
    in_h, in_w = images.shape[-2:]
    out_h, out_w = size
    rows = rows or slice(0, out_h)
    cols = cols or slice(0, out_w)
    x = images.to(torch.float64)
    if out_w != in_w:  # Pillow skips a pass that changes nothing
        x = _round_clip(x @ _on(x.device, in_w, out_w, filter_name, cols).T)
    else:
        x = x[..., :, cols]
    if out_h != in_h:
        x = _round_clip(_on(x.device, in_h, out_h, filter_name, rows) @ x)
    else:
        x = x[..., rows, :]
    return x.to(torch.uint8)
