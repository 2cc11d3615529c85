"""Write a file so that readers see the old content or the whole new one, never a half-written file.

Each write goes to a hidden temporary file with a name unique to the writing process (``.<name>.<pid>.<random>.tmp``)
in the same folder, is flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows). Several processes (``pipeline fit --jobs N``, or two sweeps at once) never share a temporary name,
and a process killed mid-write leaves only its temporary file, which ``remove_stale_temps`` clears later.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def temp_name(path: Path) -> Path:
    """A hidden temporary path beside ``path``, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file for binary writing; on a clean exit it is synced and renamed to ``path``."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files under ``folder`` whose writing process no longer runs; return them."""
    removed = []
    for tmp in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        parts = tmp.name.rsplit(".", 3)  # [".<name>", "<pid>", "<random>", "tmp"]
        if len(parts) == 4 and parts[1].isdigit() and not _alive(int(parts[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    """True when a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
