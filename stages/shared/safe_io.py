"""Crash-safe small files: every writer goes through a unique temporary name in the target's folder, then
an atomic rename; JSON is read with its failures (deep nesting, huge numbers, bad bytes) turned into one line.

A unique temporary name (``.NAME.<pid>.<random>.tmp``) lets two processes (``pipeline fit --jobs N``, two sweeps
at once) write the same file at once: each renames its own complete file, the last rename wins, and a reader
never sees a partial file. The data is fsynced before the rename and the folder after it, so a rename that
survived a crash names complete bytes. A process killed mid-write leaves only its temporary file, which
``remove_stale_temps`` clears once that process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from stages.shared.errors import UserError

MAX_JSON_BYTES = 256 * 1024 * 1024  # a record, split or subset file larger than this is not one of ours
TEMP_SUFFIX = ".tmp"


class FileWriteError(UserError):
    """Writing a file failed (disk full, read-only folder); the file at the target path is unchanged."""


class JSONFileError(ValueError):
    """A JSON file cannot be read or decoded; the message is one line and names the reason, not the file."""


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new file in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    On any failure the temporary file is removed and ``path`` keeps its old content; an ``OSError`` (disk
    full, permission) becomes a one-line :class:`FileWriteError`.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(target, exc) from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _write_error(target, exc) from None
        raise
    fsync_dir(target.parent)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files under ``folder`` whose writing process no longer runs; return them."""
    removed = []
    for tmp in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        parts = tmp.name.rsplit(".", 3)  # [".<name>", "<pid>", "<random>", "tmp"]
        if len(parts) == 4 and parts[1].isdigit() and not _alive(int(parts[1])):
            with contextlib.suppress(OSError):
                tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    """True when a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` through a unique temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Decode a JSON file; any failure (missing, too big, not UTF-8, invalid, too deep, huge number) is a
    :class:`JSONFileError` with a one-line reason. Non-finite numbers (``1e999``, ``NaN``) are refused too."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise JSONFileError(f"it is {size:,} bytes, more than the {max_bytes:,} a JSON file of this tool may be")
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JSONFileError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"it is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise JSONFileError("it is not UTF-8 text") from None
    except RecursionError:
        raise JSONFileError("it nests too deeply to be one of this tool's files") from None
    except OSError as exc:
        raise JSONFileError(f"it cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise JSONFileError(f"it holds a value that cannot be decoded ({' '.join(str(exc).split())[:160]})") from None


def _refuse_constant(name: str) -> float:
    raise JSONFileError(f"it holds {name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONFileError(f"it holds the number {text[:40]}, too large for a float")
    return value


def _write_error(target: Path, exc: OSError) -> FileWriteError:
    reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None else " ".join(str(exc).split())[:200]
    return FileWriteError(f"writing {target} failed ({reason}); {target} is unchanged. "
                          "Free disk space or fix the folder's permissions, then rerun")
