"""Environment failures as one line for the user: OS errors (unwritable, missing, full), Ctrl-C, missing GPUs.

The CLI's group catches these centrally (pipeline/cli.py), so no command needs its own try/except.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from stages.shared.errors import UserError

EXIT_INTERRUPTED = 130  # the shell's convention for a process stopped by SIGINT

_ADVICE = {
    errno.EACCES: "permission denied; choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write to, or fix its permissions",
    errno.EROFS: "read-only file system; choose a writable folder",
    errno.ENOENT: "no such file or directory; check the path (or choose another folder)",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "is a folder, not a file; check the path",
    errno.ENOSPC: "no space left on the device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
    errno.EEXIST: "already exists and is not what was expected; check the path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter path",
}


def os_error_line(exc: OSError) -> str:
    """One line naming the path and what to do, for an OSError that reached the CLI."""
    path = exc.filename if exc.filename is not None else ""
    advice = _ADVICE.get(exc.errno or 0) or (exc.strerror or str(exc) or type(exc).__name__)
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    return f"{path}: {advice}" if path else advice


def interrupted_line(command: str | None) -> str:
    """What Ctrl-C means for the command that was running: nothing finished is lost, a rerun resumes."""
    resumes = {
        "extract": "the blocks already written are kept; rerun the same command to resume where it stopped",
        "fit": "the records already written are kept; rerun the same command to fit only what is missing",
    }
    return "interrupted; " + resumes.get(command or "", "nothing was changed by the unfinished step; rerun the command")


def check_writable_dir(path: Path, option: str) -> None:
    """Fail fast, before any work, when ``path`` (or the folder that would hold it) cannot be written.

    Creates nothing: checks the nearest existing ancestor, so a refused run leaves no empty folders behind.
    """
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"{option} {path}: {probe} is a file, not a folder; choose a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path else f" ({probe} is where it would be created)"
        raise UserError(f"{option} {path}: not writable{where}; choose a folder you can write to, "
                        "or fix its permissions")


def check_device(device: str) -> None:
    """A CUDA device when torch sees none is an environment failure (exit 1), said before any work."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but torch sees no CUDA device (no GPU or no driver); "
                        "use --device cpu")
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: torch sees only {torch.cuda.device_count()} CUDA device(s); "
                        "pick one of cuda:0..")
