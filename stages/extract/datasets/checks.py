"""Checks run on split listings before any image is encoded: paths, labels, duplicates, files on disk.

Every check returns a list of problems rather than raising, so that one error can name the first
problem and count the others. The file check is a plain ``os.lstat`` loop (ImageNet's 50k test
files take well under a second on a local disk).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from stages.shared.errors import DatasetError

ListedItem = tuple[str, int, str]  # (relpath, label, classname): an Item or any equal tuple


class Problem(NamedTuple):
    """One thing wrong with a listing: where it is, what is wrong, and what the user should do."""

    where: str
    what: str
    fix: str


_FIX_LISTING = "fix the split listing"
_FIX_FILES = "restore the files (re-download or re-extract the dataset) or remove them from the split"


def raise_problems(key: str, problems: Sequence[Problem]) -> None:
    """Raise one DatasetError naming the first problem and how many more there are; no-op if none."""
    if not problems:
        return
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    raise DatasetError(f"{key} {first.where}: {first.what}{more} — {first.fix}")


def path_problem(relpath: object) -> str | None:
    """Why ``relpath`` is not a safe relative path inside the image folder, or None if it is."""
    if not isinstance(relpath, str) or not relpath:
        return f"path {relpath!r} is not a non-empty string"
    if "\x00" in relpath:
        return f"path {relpath!r} contains a NUL character"
    if relpath.startswith(("/", "\\")) or relpath[1:3] in (":/", ":\\"):
        return f"path {relpath!r} is absolute; paths must be relative to the image folder"
    if ".." in relpath.replace("\\", "/").split("/"):
        return f"path {relpath!r} contains '..' and would leave the image folder"
    return None


def check_listing(classnames: Sequence[str], listings: Mapping[str, Sequence[ListedItem]]) -> list[Problem]:
    """Paths well-formed, labels in range and matching class names, no path twice in a split or across splits."""
    problems: list[Problem] = []
    n_classes = len(classnames)
    seen_in: dict[str, str] = {}
    for split, items in listings.items():
        first_at: dict[str, int] = {}
        for pos, (relpath, label, classname) in enumerate(items):
            where = f"{split} item {pos} ({relpath!r})"
            bad_path = path_problem(relpath)
            if bad_path:
                problems.append(Problem(where, bad_path, _FIX_LISTING))
                continue
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
                problems.append(Problem(where, f"label {label!r} out of range 0..{n_classes - 1}", _FIX_LISTING))
            elif classname != classnames[label]:
                problems.append(Problem(
                    where, f"class name {classname!r} does not match label {label} ({classnames[label]!r})",
                    _FIX_LISTING))
            key = posixpath.normpath(relpath)
            if key in first_at:
                problems.append(Problem(where, f"path listed twice in {split} (first at item {first_at[key]})",
                                        _FIX_LISTING))
                continue
            first_at[key] = pos
            if seen_in.setdefault(key, split) != split:
                problems.append(Problem(where, f"path also listed in {seen_in[key]} (a split leak)", _FIX_LISTING))
    return problems


def check_files(image_root: Path, listings: Mapping[str, Sequence[ListedItem]]) -> list[Problem]:
    """Every listed path is a regular file inside ``image_root``, symlinks included."""
    if not image_root.is_dir():
        return [Problem("image folder", f"{image_root} does not exist or is not a folder", _FIX_FILES)]
    real_root = os.path.realpath(image_root)
    problems: list[Problem] = []
    parent_ok: dict[str, bool] = {}
    for split, items in listings.items():
        for pos, (relpath, _label, _name) in enumerate(items):
            if path_problem(relpath):
                continue  # already reported by check_listing
            full = os.path.join(image_root, relpath)
            where = f"{split} item {pos} ({relpath!r})"
            parent = os.path.dirname(full)
            if parent not in parent_ok:
                parent_ok[parent] = _inside(os.path.realpath(parent), real_root)
            what = _file_problem(full, real_root) if parent_ok[parent] else (
                f"folder {parent} resolves outside the image folder {real_root} (a symlink)")
            if what:
                problems.append(Problem(where, what, _FIX_FILES))
    return problems


def _file_problem(full: str, real_root: str) -> str | None:
    """Why ``full`` is not a regular file inside ``real_root``, or None."""
    try:
        mode = os.lstat(full).st_mode
        if stat.S_ISLNK(mode):
            target = os.path.realpath(full)
            if not _inside(target, real_root):
                return f"{full} is a symlink to {target}, outside the image folder {real_root}"
            mode = os.stat(full).st_mode
    except FileNotFoundError:
        return f"missing file {full}"
    except OSError as exc:
        return f"cannot stat {full} ({exc.strerror})"
    if not stat.S_ISREG(mode):
        return f"{full} is not a regular file"
    return None


def _inside(path: str, real_root: str) -> bool:
    """Whether the resolved ``path`` is ``real_root`` or below it."""
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)
