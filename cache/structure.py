"""What a cache file may hold, checked on its metadata alone before any array is read.

A crafted HDF5 file can declare arrays far larger than its bytes (a 75 GiB dataset with no storage reads as
zeros, allocated in full), reach outside itself (external links, external raw storage, virtual datasets),
loop (a hard link to an ancestor group), or put a group, strings or compound values where this tool reads
numbers. The writer (cache/writer.py) makes none of these: only hard links, each object under one name,
contiguous datasets of integers, floats or strings whose storage is allocated in full. So every link must be
hard and reach a new object, no dataset may be virtual or store its data elsewhere, every dataset's
storage must hold its declared shape (a chunked one, as another tool may repack it: every chunk written and
no filter inflating more than deflate can), and each name of the layout (cache/features.py) must have its kind,
type and rank. Reading is then bounded by the file's own size. Each refusal is one line naming the file,
the object and the rule.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import h5py
from h5py import h5d, h5l, h5t

from cache.errors import CacheMismatchError
from cache.layout import DONE_SUFFIX

MAX_OBJECTS = 100_000  # links in one file; a cache holds a few per split and template set
MAX_INFLATION = 1100  # decoded bytes per stored byte of a filtered dataset: deflate's limit is 1032
SMALL_BYTES = 1 << 20  # a filtered dataset this small may compress any amount (a mask of ones)
VLEN_MIN_BYTES = 12  # the smallest on-disk variable-length element: a length and a global heap id
_GIB = 1024**3

# name pattern -> (kind, allowed ranks); kinds: "group", "int", "float", "str"
LAYOUT: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    (r"image|text|image/[^/]+|text/[^/]+", "group", ()),
    (r"classes", "str", (1,)),
    (r"parent_class_ids", "int", (1,)),
    (r"image/[^/]+/(labels|positions|bad)", "int", (1,)),
    (r"image/[^/]+/paths", "str", (1,)),
    (r"image/[^/]+/features", "float", (2,)),
    (r"image/[^/]+/aug_features", "float", (3,)),
    (r"text/[^/]+/templates", "str", (1,)),
    (r"text/[^/]+/prompts", "str", (2,)),
    (r"text/[^/]+/features", "float", (3,)),
    (r".+" + re.escape(DONE_SUFFIX), "int", (1, 2)),
)
_CLASSES = {"int": h5t.INTEGER, "float": h5t.FLOAT, "str": h5t.STRING}


def _bad(path: Path | str, what: str) -> CacheMismatchError:
    return CacheMismatchError(f"{path}: {what}; the cache is corrupt or was edited")


def check_file(f: h5py.File, path: Path | str) -> None:
    """Refuse ``f`` (opened from ``path``) unless every link, object and storage is one this tool writes."""
    links: list[tuple[str, int, int | None]] = []

    def visit(name: str) -> bool | None:  # raising here would leave h5py's lock in a bad state: collect
        info = f.id.links.get_info(name.encode())
        links.append((name, info.type, info.u if info.type == h5l.TYPE_HARD else None))
        return True if len(links) > MAX_OBJECTS else None  # anything but None stops the walk

    try:
        f.visit_links(visit)
        if len(links) > MAX_OBJECTS:
            raise _bad(path, f"it holds more than {MAX_OBJECTS} objects")
        seen: dict[int, str] = {}
        for name, kind, address in links:
            if kind == h5l.TYPE_SOFT:
                raise _bad(path, f"{_short(name)} is a soft link, which this tool never writes")
            if kind != h5l.TYPE_HARD:
                raise _bad(path, f"{_short(name)} is an external link (into another file), which this tool never "
                                 "writes")
            if address in seen:
                raise _bad(path, f"{_short(name)} is a second name of {_short(seen[address])} (a hard link loop?); "
                                 "this tool gives each object one name")
            seen[address] = name
        size = os.stat(f.filename).st_size
        for name, _, _ in links:
            _check_object(f, name, size, path)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # HDF5 metadata it cannot parse
        raise _bad(path, f"its structure cannot be read ({' '.join(str(exc).split())[:160]})") from None


def _check_object(f: h5py.File, name: str, size: int, path: Path | str) -> None:
    obj = f[name]
    kind, ranks = _expected(name)
    if kind == "group" and not isinstance(obj, h5py.Group):
        raise _bad(path, f"{_short(name)} is a dataset where this tool keeps a group")
    if not isinstance(obj, h5py.Dataset):
        if kind not in (None, "group"):
            raise _bad(path, f"{_short(name)} is a group where this tool keeps an array")
        return
    tid = obj.id.get_type()
    if kind is not None:
        if tid.get_class() != _CLASSES[kind] or (kind == "float" and tid.get_size() not in (2, 4, 8)):
            raise _bad(path, f"{_short(name)} holds {_type_name(tid)} values, not {_KIND_NAMES[kind]}")
        if len(obj.shape) not in ranks:
            raise _bad(path, f"{_short(name)} has shape {obj.shape}, not {' or '.join(map(str, ranks))}-dimensional")
    _check_storage(obj, name, tid, size, path)


def _check_storage(obj: h5py.Dataset, name: str, tid: h5t.TypeID, size: int, path: Path | str) -> None:
    """The dataset's values are in this file, and its declared size is backed by stored bytes."""
    dcpl = obj.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5d.VIRTUAL:
        raise _bad(path, f"{_short(name)} is a virtual dataset (it reads other files), which this tool never writes")
    if dcpl.get_external_count():
        raise _bad(path, f"{_short(name)} keeps its values in an external file, which this tool never does")
    count = math.prod(obj.shape) if obj.shape is not None else 0
    variable = tid.get_class() == h5t.STRING and tid.is_variable_str() or tid.get_class() == h5t.VLEN
    declared = count * (VLEN_MIN_BYTES if variable else tid.get_size())
    stored = obj.id.get_storage_size()
    if stored > size:
        raise _bad(path, f"{_short(name)} claims {_bytes(stored)} of storage in a file of {_bytes(size)}")
    if layout == h5d.CONTIGUOUS:
        offset = obj.id.get_offset() if stored else None
        if stored < declared:
            raise _bad(path, f"{_short(name)} declares {_bytes(declared)} of values (shape {_shape(obj)}) but the file "
                             f"stores {_bytes(stored)} of them")
        if offset is not None and offset + stored > size:
            raise _bad(path, f"{_short(name)} points past the end of the file")
    elif layout == h5d.CHUNKED:
        chunk = dcpl.get_chunk()
        grid = math.prod(-(-n // c) for n, c in zip(obj.shape, chunk))
        written = obj.id.get_num_chunks()
        if written < grid:
            raise _bad(path, f"{_short(name)} (shape {_shape(obj)}) has {written} of its {grid} chunks written; the "
                             "others would read as fill values")
        if dcpl.get_nfilters() and declared > max(stored * MAX_INFLATION, SMALL_BYTES):
            raise _bad(path, f"{_short(name)} declares {_bytes(declared)} of values from {_bytes(stored)} of "
                             "compressed storage, more than any compression gives")
        past = []
        obj.id.chunk_iter(lambda chunk_info: past.append(1) if chunk_info.byte_offset + chunk_info.size > size
                          else None)
        if past:
            raise _bad(path, f"{_short(name)} has {len(past)} chunk(s) past the end of the file")


def _expected(name: str) -> tuple[str | None, tuple[int, ...]]:
    """The kind and ranks the layout gives ``name``; (None, ()) for a name it does not use (never read)."""
    for pattern, kind, ranks in LAYOUT:
        if re.fullmatch(pattern, name):
            return kind, ranks
    return None, ()


_KIND_NAMES = {"int": "integers", "float": "floating-point numbers", "str": "strings"}


def _type_name(tid: h5t.TypeID) -> str:
    names = {h5t.INTEGER: "integer", h5t.FLOAT: "floating-point", h5t.STRING: "string", h5t.COMPOUND: "compound",
             h5t.ENUM: "enum", h5t.ARRAY: "array", h5t.VLEN: "variable-length", h5t.OPAQUE: "opaque",
             h5t.REFERENCE: "reference", h5t.BITFIELD: "bitfield"}
    return f"{tid.get_size()}-byte {names.get(tid.get_class(), 'unknown')}"


def _shape(obj: h5py.Dataset) -> str:
    return "x".join(map(str, obj.shape)) or "scalar"


def _short(name: str) -> str:
    return name if len(name) <= 80 else name[:77] + "..."


def _bytes(n: int) -> str:
    return f"{n / _GIB:.1f} GiB" if n >= _GIB else f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n} bytes"
