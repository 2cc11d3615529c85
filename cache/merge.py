"""Joining the part files that several writers (one per rank) made of the same cache layout.

Every part holds the full layout with only its own blocks written (its ``__done`` flags say which); the
merge takes every block from the part that wrote it and commits one ordinary cache file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from cache.errors import CacheError, CacheIncompleteError, CacheMismatchError
from cache.layout import DONE_SUFFIX, done_name
from cache.reader import read_key_fields
from cache.writer import BlockArray, CacheWriter


def part_path(path: str | Path, rank: int, world: int) -> Path:
    """The file that rank ``rank`` of ``world`` writes its share of ``path`` into."""
    return Path(f"{path}.part{rank:03d}-of-{world:03d}")


def merge_parts(path: str | Path, parts: Sequence[Path], key: Mapping[str, object], *, wait: float | None = 0.0) -> Path:
    """Merge the (unfinished) part files into ``path`` and delete them once the merge is committed."""
    if not parts:
        raise CacheError(f"no part files to merge into {path}")
    for part in parts:
        if not Path(part).exists():
            raise CacheIncompleteError(f"part file {part} is missing; every rank must write its part")
        if read_key_fields(part) != {k: str(v) for k, v in key.items()}:
            raise CacheMismatchError(f"part file {part} was made for other inputs")
    with h5py.File(parts[0], "r") as first:
        attrs = {k: v for k, v in first.attrs.items() if k not in ("format", "schema_version", "key", "created")
                 and not k.startswith("key.")}
    with CacheWriter(path, key, attrs=attrs, force=True, wait=wait) as writer:
        with h5py.File(parts[0], "r") as first:
            for name in first:
                first.copy(first[name], writer.file, name=name)
        writer.file.flush()
        for part in parts[1:]:
            with h5py.File(part, "r") as source:
                _take_blocks(writer, source)
        writer.commit()
    for part in parts:
        Path(part).unlink(missing_ok=True)
    return Path(path)


def _take_blocks(writer: CacheWriter, source: h5py.File) -> None:
    names: list[str] = []
    source.visititems(lambda n, o: names.append(n[: -len(DONE_SUFFIX)]) if n.endswith(DONE_SUFFIX) else None)
    for name in names:
        target = BlockArray(writer.file, name)
        flags = source[done_name(name)][()]
        have = writer.file[done_name(name)][()]
        for index in zip(*np.nonzero((flags == 1) & (have == 0))):
            *lead, block = (int(i) for i in index)
            rows = target.rows(block)
            target.write(tuple(lead) + (block,), source[name][tuple(lead) + (rows,)])
