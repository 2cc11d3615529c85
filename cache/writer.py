"""Crash-safe writes to one cache file.

A write happens in ``<file>.partial`` under an exclusive lock and becomes visible only through an atomic
rename when every array is complete. Arrays are allocated in full when they are created, so writing rows
later touches raw data only, never HDF5 metadata; each block of rows is flushed before its flag in the
sibling ``<name>__done`` mask is set. A killed writer therefore leaves a partial file whose flags under-state
its progress, and the next writer resumes from the first missing block.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np

from cache import validate
from cache.errors import CacheError, CacheIncompleteError, CacheMismatchError, CacheValueError, CacheWriteError
from cache.key import key_diff, key_digest
from cache.layout import FORMAT, SCHEMA_VERSION, done_name, partial_path
from cache.lock import WriteLock
from cache.reader import CacheReader, incomplete_arrays, read_key_fields

log = logging.getLogger(__name__)

STRING = h5py.string_dtype("utf-8")
_ABANDONED: list = []  # handles of files whose writes failed; never closed (see CacheWriter.__exit__)


class BlockArray:
    """A fixed-shape dataset written in blocks of ``block_rows`` rows along axis ``lead``.

    The axes before ``lead`` index independent grids (e.g. augmented views), each with its own flags.
    """

    def __init__(self, file: h5py.File, name: str, durable: bool = True) -> None:
        self._file = file
        self.name = name
        self.dataset = file[name]
        if done_name(name) not in file:
            raise validate._bad(file.filename, f"{name} has no progress mask")
        self.done = file[done_name(name)]
        self.block_rows, self.lead = validate.block_layout(
            file.filename, name, self.dataset.attrs.get("block_rows"), self.dataset.attrs.get("lead_axes"),
            tuple(self.dataset.shape), tuple(self.done.shape))
        self.durable = durable

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def missing(self) -> list[tuple[int, ...]]:
        """Indices ``(*lead_index, block)`` of every block not yet written, in order."""
        flags = self.done[()]
        return [tuple(int(i) for i in idx) for idx in zip(*np.nonzero(flags == 0))]

    def rows(self, block: int) -> slice:
        """The rows of ``block`` along the block axis."""
        n = self.shape[self.lead]
        return slice(block * self.block_rows, min(n, (block + 1) * self.block_rows))

    def write(self, index: tuple[int, ...], data: np.ndarray) -> None:
        """Write one block (``index = (*lead_index, block)``), flush it, then mark it done."""
        *lead_index, block = index
        rows = self.rows(block)
        expected = (rows.stop - rows.start,) + self.shape[self.lead + 1 :]
        data = np.asarray(data)
        if data.shape != expected:
            raise ValueError(f"{self.name} block {index}: got shape {data.shape}, expected {expected}")
        with np.errstate(over="ignore"):  # an overflow is refused just below, with the fix
            stored = data.astype(self.dataset.dtype, copy=False)
        if stored.dtype.kind == "f" and not np.isfinite(stored).all():  # checked AFTER the cast: fp16 overflows
            bad = int((~np.isfinite(stored)).any(axis=tuple(range(1, stored.ndim))).sum()) if stored.ndim > 1 else 1
            overflow = data.dtype != stored.dtype and np.isfinite(data).all()
            cause = (f"values above {float(np.finfo(stored.dtype).max):g} overflow {stored.dtype}"
                     if overflow else "the model overflowed or is broken")
            raise CacheValueError(
                f"refusing to write {bad} row(s) with NaN/Inf into {self.name} (rows {rows.start}-{rows.stop - 1}); "
                + cause, remedy="store_dtype" if overflow else "precision"
            )
        self.dataset[tuple(lead_index) + (rows,)] = stored
        self._file.flush()
        if self.durable:  # the flag below is trusted on resume: the rows must reach the disk before it
            os.fsync(self._file.id.get_vfd_handle())
        self.done[tuple(lead_index) + (block,)] = 1
        self._file.flush()

    def blocks(self) -> Iterator[tuple[tuple[int, ...], slice]]:
        """Each missing block with its row slice."""
        for index in self.missing():
            yield index, self.rows(index[-1])


class CacheWriter:
    """The single writer of one cache file: resumes, extends or rebuilds it, and commits atomically.

    ``key`` holds every field that changes a feature; an existing file with other values is refused (the
    message lists the fields) unless ``force``, which rebuilds from scratch and replaces the old file only at
    commit. ``attrs`` are stored on the file's root next to the key.
    """

    def __init__(
        self,
        path: str | Path,
        key: Mapping[str, object],
        *,
        attrs: Mapping[str, object] | None = None,
        force: bool = False,
        wait: float | None = 0.0,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.key = {k: str(v) for k, v in key.items()}
        self.attrs = dict(attrs or {})
        self.force = force
        self.lock = WriteLock(self.path, wait=wait)
        self.file: h5py.File | None = None
        self.state = "new"  # new | resumed | extending | rebuilding

    # -- opening -------------------------------------------------------------------------------------
    def __enter__(self) -> "CacheWriter":
        self.lock.acquire()
        try:
            self._open()
        except BaseException as exc:
            self.close(quiet=True)
            failure = self._write_failure(exc)
            if failure is not None:
                raise failure from None
            raise
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        failure = self._write_failure(exc) if exc is not None else None
        if failure is not None:
            # HDF5 (1.14) can crash closing a file whose write just failed: leave the handle open and
            # referenced; the CLI exits at once on CacheWriteError, without HDF5's at-exit cleanup.
            _ABANDONED.append(self.file)
            self.file = None
        self.close(quiet=exc is not None)
        if failure is not None:
            raise failure from None

    def close(self, quiet: bool = False) -> None:
        """Close the partial file and release the lock; ``quiet``: a failing close (disk full) is only logged."""
        try:
            if self.file is not None:
                handle, self.file = self.file, None
                handle.close()
        except (OSError, RuntimeError) as exc:
            if not quiet:
                raise
            log.debug("closing %s after an error failed too: %s", self.partial, exc)
        finally:
            self.lock.release()

    def _write_failure(self, exc: BaseException) -> CacheWriteError | None:
        """A one-line CacheError for a failed write (disk full, file too large, I/O error), else None."""
        if isinstance(exc, CacheError) or not isinstance(exc, (OSError, RuntimeError)):
            return None
        text = str(exc)
        if isinstance(exc, OSError) and exc.errno is not None:
            reason = f"[Errno {exc.errno}] {' '.join(str(exc.strerror).split())[:200]}"
        elif "write failed" in text or "errno =" in text:
            found = re.search(r"errno = (\d+), error message = '([^']*)'", text)
            reason = f"[Errno {found.group(1)}] {found.group(2)}" if found else " ".join(text.split())[:200]
        else:
            return None
        return CacheWriteError(
            f"writing {self.partial} failed ({reason}); {self.path} is unchanged. Free disk space or fix the "
            "folder: a rerun resumes from the last complete block"
        )

    def _open(self) -> None:
        if self.force and self.partial.exists():
            self.partial.unlink()
        if self.partial.exists() and not self._usable_partial():
            self.partial.unlink()
        if self.partial.exists():
            self.state = "resumed"
        elif self.path.exists() and not self.force:
            found = CacheReader(self.path, require_complete=False).key_fields
            diff = key_diff(self.key, found)
            if diff:
                raise CacheMismatchError(f"{self.path} was built for different inputs ({'; '.join(diff)})")
            try:
                shutil.copy2(self.path, self.partial)
                _fsync_file(self.partial)  # its done flags are trusted by a resume
            except BaseException:
                self.partial.unlink(missing_ok=True)  # never leave a truncated copy to be resumed
                raise
            self.state = "extending"
        else:
            self.state = "rebuilding" if self.path.exists() else "new"
            self._create()
        self.file = h5py.File(self.partial, "r+")

    def _usable_partial(self) -> bool:
        """A partial file is reused only if it opens and carries the same key."""
        try:
            found = read_key_fields(self.partial)
        except Exception as exc:  # a writer killed while creating the layout leaves an unreadable file
            log.warning("discarding unreadable unfinished write %s (%s); starting over", self.partial, exc)
            return False
        diff = key_diff(self.key, found)
        if diff:
            log.warning("discarding unfinished write %s made for other inputs (%s)", self.partial, "; ".join(diff))
            return False
        return True

    def _create(self) -> None:
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.partial, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["key"] = key_digest(self.key)
            for name, value in self.key.items():
                f.attrs[f"key.{name}"] = value
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for name, value in self.attrs.items():
                f.attrs[name] = value
        _fsync_file(self.partial)
        _fsync_dir(self.partial.parent)

    # -- layout --------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._f

    @property
    def _f(self) -> h5py.File:
        if self.file is None:
            raise RuntimeError("CacheWriter used outside its 'with' block")
        return self.file

    def put(self, name: str, data: Sequence | np.ndarray, attrs: Mapping[str, object] | None = None) -> None:
        """Store a small array written in one go (labels, paths, class names); checks it if it exists."""
        values = np.asarray(data)
        is_text = values.dtype.kind in "UOS"
        if name in self._f:
            stored = self._f[name].asstr()[()] if is_text else self._f[name][()]
            if stored.shape != values.shape or not np.array_equal(stored, values.astype(stored.dtype)):
                raise CacheMismatchError(f"{self.path}: {name} differs from the stored one")
            return
        if is_text:
            dataset = self._f.create_dataset(name, data=values.astype(str).astype(object), dtype=STRING)
        else:
            dataset = self._f.create_dataset(name, data=values)
        for attr, value in (attrs or {}).items():
            dataset.attrs[attr] = value
        self._f.flush()

    def array(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str | np.dtype,
        *,
        block_rows: int,
        lead_axes: int = 0,
        attrs: Mapping[str, object] | None = None,
    ) -> BlockArray:
        """Create (or reopen, checking shape and dtype) a fully allocated array written block by block."""
        dtype = np.dtype(dtype)
        if name in self._f:
            found = self._f[name]
            if tuple(found.shape) != tuple(shape) or found.dtype != dtype:
                raise CacheMismatchError(
                    f"{self.path}: {name} is stored as {found.dtype}{tuple(found.shape)}, requested "
                    f"{dtype}{tuple(shape)}"
                )
            return BlockArray(self._f, name)
        if any(n <= 0 for n in shape):
            raise ValueError(f"{name}: every dimension must be positive, got {shape}")
        n_blocks = -(-shape[lead_axes] // block_rows)
        dataset = _create_allocated(self._f, name, shape, dtype, fill=False)
        dataset.attrs["block_rows"] = block_rows
        dataset.attrs["lead_axes"] = lead_axes
        for attr, value in (attrs or {}).items():
            dataset.attrs[attr] = value
        _create_allocated(self._f, done_name(name), tuple(shape[:lead_axes]) + (n_blocks,), np.uint8, fill=True)
        self._f.flush()
        os.fsync(self._f.id.get_vfd_handle())  # the zeroed done mask is on disk before any block is flagged
        return BlockArray(self._f, name)

    # -- commit --------------------------------------------------------------------------------------
    def incomplete(self) -> list[str]:
        """Names of the arrays that still have missing blocks."""
        return incomplete_arrays(self._f)

    def commit(self) -> Path:
        """Make the write visible: close the partial file and rename it over the final path atomically."""
        missing = self.incomplete()
        if missing:
            raise CacheIncompleteError(f"{self.partial}: cannot commit, arrays still incomplete: {', '.join(missing)}")
        self._f.flush()
        self.file.close()
        self.file = None
        _fsync_file(self.partial)
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)
        return self.path


def _create_allocated(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: np.dtype, fill: bool):
    """A contiguous dataset whose storage is allocated at creation, so later writes change no metadata."""
    parent_name, _, leaf = name.rpartition("/")
    parent = group.require_group(parent_name) if parent_name else group
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC if fill else h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(tuple(shape))
    tid = h5py.h5t.py_create(np.dtype(dtype), logical=True)
    created = h5py.h5d.create(parent.id, leaf.encode(), tid, space, dcpl=dcpl)
    created.close()  # closed here, so a failing write (disk full) raises now rather than in a destructor
    return parent[leaf]


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
