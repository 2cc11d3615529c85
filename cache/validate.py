"""Bounds of every field read from a cache file, checked before use.

A cache is a file on disk: truncated, edited or written by another tool, it can hold anything. Each check
raises a one-line :class:`CacheMismatchError` naming the file, the field and the bound (the CLI adds the fix: rebuild).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache.errors import CacheMismatchError

MAX_LOGIT_SCALE = 1000.0  # CLIP clamps its learned scale at 100; anything far above is not a CLIP model


def _bad(path: Path | str, what: str) -> CacheMismatchError:
    return CacheMismatchError(f"{path}: {what}; the cache is corrupt or was edited")


def schema_version(path: Path | str, value: object) -> int:
    """The schema version attribute as an int (refuses strings, floats, arrays)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _bad(path, f"schema_version is {value!r}, not an integer")
    return int(value)


def key_attr(path: Path | str, value: object) -> str:
    """The cache key digest: a non-empty string."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        raise _bad(path, f"the 'key' attribute is {'missing' if value is None else repr(value)[:60]}")
    return value


def logit_scale(path: Path | str, value: object) -> float:
    """CLIP's logit scale: a finite number in (0, MAX_LOGIT_SCALE]."""
    try:
        scale = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(path, f"logit_scale is {value!r}, not a number") from None
    if not np.isfinite(scale) or not 0.0 < scale <= MAX_LOGIT_SCALE:
        raise _bad(path, f"logit_scale is {scale}, outside (0, {MAX_LOGIT_SCALE:g}]")
    return scale


def integers(path: Path | str, name: str, values: np.ndarray, low: int, high: int) -> np.ndarray:
    """A 1-D integer array with every value in ``[low, high)``, as int64."""
    values = np.asarray(values)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iub"):
        raise _bad(path, f"{name} is {values.dtype}{values.shape}, expected a 1-D integer array")
    values = values.astype(np.int64)
    if values.size and (values.min() < low or values.max() >= high):
        bad = values[(values < low) | (values >= high)][0]
        raise _bad(path, f"{name} holds {int(bad)}, outside {low}..{high - 1}")
    return values


def positions(path: Path | str, name: str, values: np.ndarray, n_items: int) -> np.ndarray:
    """Encoded positions: integers in ``[0, n_items)``, strictly increasing (the reader searches them)."""
    values = integers(path, name, values, 0, n_items)
    if values.size > 1 and not np.all(np.diff(values) > 0):
        raise _bad(path, f"{name} is not strictly increasing")
    return values


def rows(path: Path | str, name: str, shape: tuple[int, ...], n_rows: int, axis: int = 0) -> None:
    """A feature array has one row per encoded position along ``axis``."""
    if len(shape) <= axis or shape[axis] != n_rows:
        raise _bad(path, f"{name} has shape {shape}, expected {n_rows} rows along axis {axis}")


def finite(path: Path | str, name: str, values: np.ndarray) -> np.ndarray:
    """Features are finite after the cast to float32 (a float16 or crafted cache can hold Inf/NaN)."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        count = int((~np.isfinite(values)).sum())
        raise _bad(path, f"{name} holds {count} NaN/Inf value(s)")
    return values


def text_shape(path: Path | str, name: str, shape: tuple[int, ...], n_classes: int) -> None:
    """Text features are (C, L, D) with one row per class and at least one template."""
    if len(shape) != 3 or shape[0] != n_classes or shape[1] < 1 or shape[2] < 1:
        raise _bad(path, f"{name} has shape {shape}, expected ({n_classes}, templates, dim)")


def block_layout(path: Path | str, name: str, block_rows: object, lead_axes: object, shape: tuple[int, ...],
                 done_shape: tuple[int, ...]) -> tuple[int, int]:
    """A block-written array's ``block_rows`` and ``lead_axes`` attributes, and its done mask's shape."""
    values = []
    for attr, value in (("block_rows", block_rows), ("lead_axes", lead_axes)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise _bad(path, f"{name}: {attr} is {str(value)[:40]!r}, not an integer")
        values.append(int(value))
    rows, lead = values
    if rows < 1 or not 0 <= lead < len(shape):
        raise _bad(path, f"{name}: block_rows {rows} or lead_axes {lead} out of range for shape {shape}")
    expected = tuple(shape[:lead]) + (-(-shape[lead] // rows),)
    if tuple(done_shape) != expected:
        raise _bad(path, f"{name}: its progress mask has shape {tuple(done_shape)}, expected {expected}")
    return rows, lead
