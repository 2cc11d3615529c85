"""The fitted ``.npz`` beside a run record (docs/records.md), read with bounded work.

``np.load`` reads a member by allocating whatever its ``.npy`` header declares and inflating it, and callers
used to read every member: a 0.5 MB file declaring 20M projection points, a header declaring 373 GiB or a
26 MB deflate bomb in a member nobody uses each cost gigabytes. Here a member is read only when asked for by
name, and its header (dtype, shape) is checked before anything is allocated: against the bounds the caller
gives (the record's classes, the cache's feature width, ...) and against the bytes the file really holds (a
stored member's bytes must all be in the file; a deflated one may not expand beyond deflate's own limit).
Every refusal is a :class:`FittedFileError` with a one-line reason; callers add the file and the fix.

Fit writes (stages/fit/persist.py) and report reads (stages/report/plot_gap.py) through the names here.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

META = "__meta__"  # the estimator's JSON description: a 0-d unicode array
PROJECTION = ("proj_images_before", "proj_images_after", "proj_labels", "proj_protos_before", "proj_protos_after")
MAX_PROJECTED = 600  # test images kept in a run's gap projection (stages/fit/gap.py samples down to it)
MAX_CLASSES = 100_000  # classes a gap projection may hold prototypes for (ImageNet-21k has 21,841)
MAX_META_BYTES = 16 * 1024**2  # ~4M characters of JSON; ImageNet-21k's class names take ~0.7M
MAX_MEMBERS = 1_000  # a fitted file holds about a dozen
MAX_DEFLATE_RATIO = 1032  # the most deflate expands a stored byte (RFC 1951's longest match per 2 bits)
MAX_HEADER_BYTES = 10_000  # numpy's own limit on a .npy header
_CHUNK = 1 << 20

Check = Callable[[np.dtype, tuple[int, ...]], "str | None"]


class FittedFileError(ValueError):
    """A fitted file, or one of its members, is malformed or exceeds its bounds; the message is one line."""


class FittedFile:
    """Read-only access to the members of one ``.npz``, each read on request, checked before allocation."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            info = os.stat(self.path)
            if not stat.S_ISREG(info.st_mode):
                raise FittedFileError("it is not a regular file (a folder, pipe or device)")
            self.size = info.st_size
            self._zip = zipfile.ZipFile(self.path)
        except FittedFileError:
            raise
        except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise FittedFileError(f"it cannot be read as an .npz archive ({_reason(exc)})") from None
        try:
            self._members = self._check_members()
        except FittedFileError:
            self.close()
            raise

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        entries = self._zip.infolist()
        if len(entries) > MAX_MEMBERS:
            raise FittedFileError(f"it holds {len(entries)} members, more than the {MAX_MEMBERS} of a fitted file")
        for entry in entries:
            name = entry.filename[:-4] if entry.filename.endswith(".npy") else None
            if name is None or name in members:
                raise FittedFileError(f"member {entry.filename[:80]!r} is not one array of a NumPy .npz")
            if entry.flag_bits & 0x1:
                raise FittedFileError(f"member {name[:80]!r} is encrypted")
            if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise FittedFileError(f"member {name[:80]!r} uses compression method {entry.compress_type}, "
                                      "which NumPy never writes")
            if entry.header_offset + entry.compress_size > self.size:
                raise FittedFileError(f"member {name[:80]!r} lies past the end of the file (truncated?)")
            members[name] = entry
        return members

    @property
    def names(self) -> list[str]:
        """The members' array names, in archive order (nothing is read)."""
        return list(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str, check: Check | None = None) -> np.ndarray:
        """Member ``name`` as an array. Its header is read first and refused (one line) when its dtype is not
        plain numbers or text, when the archive does not hold the bytes it declares, or when ``check(dtype,
        shape)`` names a problem; only then is the array allocated and filled."""
        entry = self._members.get(name)
        if entry is None:
            raise FittedFileError(f"it has no member {name[:80]!r}")
        try:
            with self._zip.open(entry) as stream:
                dtype, shape, fortran = _header(stream, name)
                count = math.prod(shape)
                problem = _plain_dtype(dtype)
                if not problem:
                    self._check_size(entry, name, stream.tell(), count * dtype.itemsize)
                    problem = check(dtype, shape) if check is not None else None
                if problem:
                    raise FittedFileError(f"member {name!r}: {problem}")
                array = np.empty(count, dtype=dtype)
                _fill(stream, array, name)
        except FittedFileError:
            raise
        except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError) as exc:  # CRC, bad deflate data
            raise FittedFileError(f"member {name!r} cannot be read ({_reason(exc)})") from None
        return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)

    def _check_size(self, entry: zipfile.ZipInfo, name: str, header: int, data: int) -> None:
        """The bytes a header declares are the ones the archive declares, and the file can hold them."""
        if header + data != entry.file_size:
            raise FittedFileError(f"member {name!r} declares {_size(data)} of values but the archive holds "
                                  f"{_size(max(entry.file_size - header, 0))}")
        if entry.compress_type == zipfile.ZIP_STORED and entry.compress_size != entry.file_size:
            raise FittedFileError(f"member {name!r} is stored with {_size(entry.compress_size)} for "
                                  f"{_size(entry.file_size)} of content")
        if entry.compress_type == zipfile.ZIP_DEFLATED and entry.file_size > entry.compress_size * MAX_DEFLATE_RATIO:
            raise FittedFileError(f"member {name!r} declares {_size(entry.file_size)} from "
                                  f"{_size(entry.compress_size)} of deflated data, more than deflate can expand")

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "FittedFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_meta(fitted: FittedFile) -> object:
    """The decoded ``__meta__`` JSON (its size bounded before it is read)."""
    def check(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
        if dtype.kind == "U" and shape == () and dtype.itemsize <= MAX_META_BYTES:
            return None
        return f"is {dtype}{shape}, not one JSON text of at most {MAX_META_BYTES // 4:,} characters"

    text = fitted.read(META, check)
    try:
        return json.loads(str(text))
    except (ValueError, RecursionError) as exc:
        raise FittedFileError(f"member {META!r} is not JSON ({_reason(exc)})") from None


def read_projection(fitted: FittedFile, n_classes: int | None = None) -> dict[str, np.ndarray] | None:
    """The gap plot's projection (``PROJECTION``), or None when the file holds none (not a mapping method).

    Each header is checked before its member is read: at most ``MAX_PROJECTED`` images (n x 2 points, n
    integer labels) and one prototype per class (C x 2, with C = ``n_classes`` when the caller knows the
    classes, else at most ``MAX_CLASSES``); the points must be finite and agree in n and C.
    """
    if not all(name in fitted for name in PROJECTION):
        return None
    if n_classes is not None and not 0 < n_classes <= MAX_CLASSES:
        raise FittedFileError(f"its projection is for {n_classes} classes, outside 1..{MAX_CLASSES:,}")
    classes = f"{n_classes}" if n_classes is not None else f"C <= {MAX_CLASSES:,}"

    def check(name: str) -> Check:
        def bounded(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
            if name == "proj_labels":
                ok, want = dtype.kind in "iu" and len(shape) == 1 and shape[0] <= MAX_PROJECTED, "(n,) integers"
            elif name.startswith("proj_images"):
                ok = dtype.kind == "f" and len(shape) == 2 and shape[0] <= MAX_PROJECTED and shape[1] == 2
                want = "(n, 2) floats"
            else:
                ok = dtype.kind == "f" and len(shape) == 2 and shape[1] == 2 and (
                    shape[0] == n_classes if n_classes is not None else 0 < shape[0] <= MAX_CLASSES)
                want = f"({classes}, 2) floats, one per class"
            return None if ok else f"is {dtype}{shape}, expected {want} with n <= {MAX_PROJECTED}"
        return bounded

    arrays = {name: fitted.read(name, check(name)) for name in PROJECTION}
    rows = {"images": len(arrays["proj_labels"]), "protos": len(arrays["proj_protos_before"])}
    for name in PROJECTION:
        expected = rows["protos" if name.startswith("proj_protos") else "images"]
        if arrays[name].shape[0] != expected:
            raise FittedFileError(f"the projection arrays have inconsistent shapes ({name!r} has "
                                  f"{arrays[name].shape[0]} rows, not {expected})")
        if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
            raise FittedFileError(f"member {name!r} holds NaN/Inf")
    return arrays


def _header(stream, name: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    """A ``.npy`` header's dtype, shape and order (versions 1.0 and 2.0, the ones ``np.savez`` writes)."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_HEADER_BYTES)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_HEADER_BYTES)
    else:
        raise FittedFileError(f"member {name!r} is .npy version {version}, which this tool never writes")
    if any(n < 0 for n in shape):
        raise FittedFileError(f"member {name!r} declares the shape {shape}")
    return dtype, tuple(int(n) for n in shape), bool(fortran)


def _plain_dtype(dtype: np.dtype) -> str | None:
    if dtype.hasobject:
        return "holds pickled Python objects, which are never loaded (allow_pickle=False)"
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufU":
        return f"holds {dtype} values, not plain numbers or text"
    return None


def _fill(stream, array: np.ndarray, name: str) -> None:
    """Read exactly ``array.nbytes`` into ``array`` (a short member is refused), then reach the end of the
    member so that zipfile checks its CRC."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        got = stream.readinto(view[done:done + _CHUNK])
        if not got:
            raise FittedFileError(f"member {name!r} ends after {_size(done)} of {_size(len(view))} (truncated)")
        done += got
    if stream.read(1):
        raise FittedFileError(f"member {name!r} holds more bytes than its header declares")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
