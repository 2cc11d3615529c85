"""One writer per cache file: an advisory ``flock`` on a sibling ``.lock`` file.

The kernel releases a ``flock`` when its holder dies, so a killed writer never leaves a stale lock. A clean
release removes the lock file; a waiter that then holds the lock of a removed file retries on the new one. A
``flock`` belongs to the open file, which ``fork`` shares with the child (DataLoader workers): a child
closes its inherited copies at once, so an orphaned worker cannot keep the lock of a killed writer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from cache.errors import CacheLockedError

_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_inherited() -> None:
    """In a forked child: drop the inherited lock descriptors (the parent keeps its lock)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited)


class WriteLock:
    """Exclusive lock on ``<path>.lock``; waits up to ``wait`` seconds (0: fail at once, None: forever)."""

    def __init__(self, path: str | Path, wait: float | None = 0.0, poll: float = 0.2) -> None:
        self.path = Path(str(path) + ".lock")
        self.wait = wait
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    break
                # the holder we waited for removed the lock file on release: lock the path's new file instead
                os.close(fd)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                continue
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise CacheLockedError(
                        f"{self.path.with_suffix('')} is being written by another process{holder}"
                    ) from None
                time.sleep(self.poll)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # a full disk: the error names the lock file (os.write's does not)
            self._fd = fd
            _HELD.add(fd)
            self.release()
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        self._fd = fd
        _HELD.add(fd)

    def release(self) -> None:
        """Unlock and remove the lock file (removed while still held, so no waiter can lock a stale file)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if fd in _HELD:  # not a copy a fork already closed
                _HELD.discard(fd)
                try:
                    if _same_file(fd, self.path):
                        self.path.unlink()
                except OSError:
                    pass  # a lock file left behind is harmless: the next writer locks and removes it
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not removed or replaced since it was opened)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
