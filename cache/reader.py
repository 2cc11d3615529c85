"""Reading a cache file: validation on open, lazy handles that survive ``fork``, key checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from cache import structure, validate
from cache.errors import CacheError, CacheIncompleteError, CacheMismatchError, CacheMissingError
from cache.key import key_diff
from cache.layout import DONE_SUFFIX, FORMAT, SCHEMA_VERSION, partial_path


class CacheReader:
    """Read-only view of one cache file.

    The file is validated when the reader is made (exists, is HDF5, is ours, schema not from the future,
    complete unless ``require_complete=False``), then opened lazily per process, so a reader can be handed
    to DataLoader workers.
    """

    def __init__(self, path: str | Path, *, require_complete: bool = True) -> None:
        self.path = Path(path)
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        self._validate(require_complete)

    # -- handle --------------------------------------------------------------------------------------
    @property
    def file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self) -> "CacheReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"] = None
        state["_pid"] = None
        return state

    # -- content -------------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, object]:
        return {k: _plain(v) for k, v in self.file.attrs.items()}

    @property
    def key(self) -> str:
        return validate.key_attr(self.path, self.file.attrs.get("key"))

    @property
    def key_fields(self) -> dict[str, str]:
        return {k[4:]: str(v) for k, v in self.file.attrs.items() if k.startswith("key.")}

    def check_key(self, expected: Mapping[str, object]) -> None:
        """Refuse a cache built for other inputs, naming every field that differs."""
        diff = key_diff(expected, self.key_fields)
        if diff:
            raise CacheMismatchError(f"{self.path} was built for different inputs ({'; '.join(diff)})")

    def __contains__(self, name: str) -> bool:
        return name in self.file

    def read(self, name: str, selection: object = ()) -> np.ndarray:
        """Read a dataset (or a selection of it); strings come back as ``str``."""
        dataset = self._dataset(name)
        if h5py.check_string_dtype(dataset.dtype) is not None:
            return dataset.asstr()[selection]
        return dataset[selection]

    def read_rows(self, name: str, rows: np.ndarray, axis: int = 0) -> np.ndarray:
        """Read arbitrary rows along ``axis`` in the order given (h5py wants sorted unique indices)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            shape = list(self._dataset(name).shape)
            shape[axis] = 0
            return np.empty(shape, dtype=self._dataset(name).dtype)
        unique, inverse = np.unique(rows, return_inverse=True)
        selection = (slice(None),) * axis + (unique,)
        return np.take(self._dataset(name)[selection], inverse, axis=axis)

    def incomplete(self) -> list[str]:
        return incomplete_arrays(self.file)

    def datasets(self) -> list[tuple[str, tuple[int, ...], str]]:
        """Every user-facing dataset as (name, shape, dtype), progress masks left out."""
        found: list[tuple[str, tuple[int, ...], str]] = []

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and not name.endswith(DONE_SUFFIX):
                kind = "str" if h5py.check_string_dtype(obj.dtype) is not None else str(obj.dtype)
                found.append((name, tuple(obj.shape), kind))

        self.file.visititems(visit)
        return found

    def _dataset(self, name: str) -> h5py.Dataset:
        if name not in self.file:
            raise CacheMissingError(f"{self.path} has no '{name}'", what="array", name=name)
        return self.file[name]  # a dataset, and of its kind, since structure.check_file passed

    # -- validation ----------------------------------------------------------------------------------
    def _validate(self, require_complete: bool) -> None:
        if not self.path.exists():
            if partial_path(self.path).exists():
                raise CacheIncompleteError(f"no cache file at {self.path}, only an unfinished write of it")
            raise CacheMissingError(f"no cache file at {self.path}")
        if not self.path.is_file():  # a FIFO would block the open below
            raise CacheMismatchError(f"{self.path} is not a regular file (a folder, pipe or device), so not a "
                                     "feature cache")
        if not h5py.is_hdf5(self.path):
            raise CacheMismatchError(f"{self.path} is not an HDF5 file, so not a feature cache (or a truncated one)")
        try:
            self._check_open_file(require_complete)
        except CacheError:
            self.close()
            raise
        except (OSError, KeyError, RuntimeError) as exc:
            self.close()
            raise CacheMismatchError(f"{self.path} cannot be read ({' '.join(str(exc).split())[:200]})") from None

    def _check_open_file(self, require_complete: bool) -> None:
        """Ours, not from the future, every object one this tool writes (metadata only), then complete."""
        f = self.file
        if _plain(f.attrs.get("format")) != FORMAT:
            raise CacheMismatchError(f"{self.path} is an HDF5 file but not a feature cache of this tool "
                                     f"(no '{FORMAT}' tag)")
        version = validate.schema_version(self.path, f.attrs.get("schema_version"))
        validate.key_attr(self.path, f.attrs.get("key"))
        if version > SCHEMA_VERSION:
            raise CacheMismatchError(
                f"{self.path} uses cache schema {version}, newer than this version understands "
                f"({SCHEMA_VERSION}); upgrade cmm-pipeline, or rebuild the file with this version"
            )
        structure.check_file(f, self.path)  # before any array is read: sizes are bounded by the file's own
        incomplete = incomplete_arrays(f) if require_complete else []
        if incomplete:
            raise CacheIncompleteError(f"{self.path} is incomplete ({', '.join(incomplete)})")


def read_key_fields(path: str | Path) -> dict[str, str]:
    """The key fields of any cache file, finished or not (raises if the file cannot be read or holds an object
    this tool never writes: an unfinished write is resumed, so its arrays are read too)."""
    if not Path(path).is_file():
        raise CacheMismatchError(f"{path} is not a regular file, so not a feature cache")
    with h5py.File(path, "r") as f:
        if _plain(f.attrs.get("format")) != FORMAT:
            raise CacheMismatchError(f"{path} is not a feature cache of this tool")
        structure.check_file(f, path)
        return {k[4:]: str(v) for k, v in f.attrs.items() if k.startswith("key.")}


def incomplete_arrays(f: h5py.File) -> list[str]:
    """Names of block-written arrays in ``f`` with at least one block not yet written."""
    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and name.endswith(DONE_SUFFIX) and not np.all(obj[()]):
            names.append(name[: -len(DONE_SUFFIX)])

    f.visititems(visit)
    return sorted(names)


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
