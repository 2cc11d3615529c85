"""Where archive members land: names checked, links resolved in the archive's own namespace, no link on disk.

No link is ever created on disk. A symbolic link member is recorded: a later member whose path goes through
it lands where it leads, and once the whole archive is read, a link that leads to a file becomes a copy of
that file (a link to a folder, or to nothing, is not recreated). A hard link becomes a copy of the earlier
file it names. Every path is resolved part by part, following the recorded links as the kernel would
(``..`` after a link applies to where the link leads; at most ``MAX_HOPS`` links), so a chain such as
``deep -> .``, ``u1 -> deep/..`` ... is followed to its end: any path, link or hard link that leads out of
the target refuses the whole archive. On disk, nothing is written through a link: every part of a path below
the target must be a real folder (a link planted by anything else is refused), and files are opened with
``O_NOFOLLOW``.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from stages.extract.download.errors import RefusedError
from stages.extract.download.limits import Budget

CHUNK = 1 << 20
MAX_HOPS = 40  # links followed in one path: Linux's own limit (ELOOP)
MAX_LINK_TEXT = MAX_NAME = 4096  # PATH_MAX
MAX_DEPTH = 100  # folders in one path (datasets nest a few; Python 3.11's rmtree recurses once per level)
MAX_STEPS = 8_000_000  # parts looked at while resolving one archive's paths through links: seconds of work


def refused(archive: str, name: str, why: str) -> RefusedError:
    """The one-line error for an unsafe member; the whole archive is refused."""
    return RefusedError(f"{archive}: refusing to unpack: member {name!r} {why} — the archive is unsafe or not "
                        "the published one; nothing fetched or unpacked for this dataset was kept")


def member_path(archive: str, name: str) -> str:
    """The member's normalised relative path ('' for the root); refused if absolute or climbing with '..'."""
    cleaned = name.replace("\\", "/")
    if len(cleaned) > MAX_NAME:
        raise refused(archive, name[:60] + "...", f"has a name longer than {MAX_NAME} characters")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":") or "\x00" in cleaned:
        raise refused(archive, name, "has an absolute path and would land outside the target folder")
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refused(archive, name, "contains '..' and would land outside the target folder")
    return "/".join(parts)


class Tree:
    """The target folder as one archive fills it: ``folder``, ``file``, ``symlink``, ``hardlink``, then ``finish``."""

    def __init__(self, archive: str, root: Path, budget: Budget) -> None:
        self.archive, self.root, self.budget = archive, root, budget
        self.links: dict[str, str] = {}  # where a link is (resolved) -> its text
        self._link_names: set[str] = set()  # the links' last parts: only a part among them can be a link
        self._steps = 0
        self._checked: set[str] = {""}  # folders known to be real folders below the root

    # -- the archive's namespace -------------------------------------------------------------------
    def resolve(self, path: str, name: str) -> str:
        """``path`` with every recorded link followed; refused when it leads out of the target or loops."""
        if not self.links and ".." not in path.split("/"):
            return path.strip("/")
        done: list[str] = []
        pending = list(reversed(path.split("/")))
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    raise refused(self.archive, name, "leads outside the target folder (through links and '..')")
                done.pop()
                continue
            self._steps += 1 + (len(done) if part in self._link_names else 0)
            if self._steps > MAX_STEPS:
                raise refused(self.archive, name, "makes resolving the archive's links take too long (a link maze)")
            text = self.links.get("/".join(done + [part])) if part in self._link_names else None
            if text is None:
                done.append(part)
                continue
            here = "/".join(done + [part])
            hops += 1
            if hops > MAX_HOPS:
                raise refused(self.archive, name, f"goes through more than {MAX_HOPS} links (a loop?)")
            if text.startswith("/"):
                raise refused(self.archive, name, f"goes through the link {here!r} to the absolute path {text!r}")
            pending.extend(reversed(text.split("/")))
        return "/".join(done)

    def _location(self, name: str) -> str:
        """Where member ``name`` itself is: its folder resolved, its last part as it is (a link is not followed)."""
        rel = member_path(self.archive, name)
        folder, _, last = rel.rpartition("/")
        if not last:
            return ""
        parent = self.resolve(folder, name)
        return f"{parent}/{last}" if parent else last

    # -- members -----------------------------------------------------------------------------------
    def folder(self, name: str) -> None:
        rel = self.resolve(member_path(self.archive, name), name)
        self._real_folder(rel, name)

    def file(self, name: str, source: BinaryIO, size: int) -> int:
        """Write a file member (``source`` holds its ``size`` bytes); 0 when it is already there, complete."""
        dest = self._file_dest(self.resolve(member_path(self.archive, name), name), name)
        if dest is None or (dest.is_file() and dest.stat().st_size == size):
            return 0
        _write(dest, source)
        return 1

    def symlink(self, name: str, text: str) -> None:
        """Record a symbolic link (made a copy in ``finish``); refused at once if it already leads out."""
        if not text or "\x00" in text or len(text) > MAX_LINK_TEXT:
            raise refused(self.archive, name, "is a link with an empty, overlong or NUL-holding target")
        where = self._location(name)
        if not where:
            raise refused(self.archive, name, "is a link in place of the target folder itself")
        self.links[where] = text
        self._link_names.add(where.rpartition("/")[2])
        self.resolve(where, name)

    def hardlink(self, name: str, target: str) -> int:
        """A hard link: a copy of the earlier regular file ``target`` names (inside the target, links followed)."""
        source = self._place(self.resolve(member_path(self.archive, target), name), name)
        if source is None or not stat.S_ISREG(_lstat_mode(source)):
            raise refused(self.archive, name, f"is a hard link to {target!r}, which is not an earlier file")
        dest = self._file_dest(self.resolve(member_path(self.archive, name), name), name)
        return self._copy(source, dest) if dest is not None else 0

    def finish(self) -> int:
        """Turn every recorded link that leads to a file into a copy of it; returns the number of copies written."""
        written = 0
        for where in list(self.links):
            target = self._place(self.resolve(where, where), where)
            if target is None or not stat.S_ISREG(_lstat_mode(target)):
                continue  # a link to a folder or to nothing: not recreated
            folder, _, last = where.rpartition("/")
            parent = self.resolve(folder, where)
            dest = self._file_dest(f"{parent}/{last}" if parent else last, where)
            if dest is not None and dest != target:
                written += self._copy(target, dest)
        return written

    # -- the disk ----------------------------------------------------------------------------------
    def _copy(self, source: Path, dest: Path) -> int:
        size = source.stat().st_size
        if dest.is_file() and dest.stat().st_size == size:
            return 0
        self.budget.spend(size)  # a million links to one big file must not fill the disk
        with _open_nofollow(source) as handle:
            _write(dest, handle)
        return 1

    def _place(self, rel: str, name: str) -> Path | None:
        """``root/rel`` once every folder above it is a real folder inside the root; None for the root itself."""
        if not rel:
            return None
        folder, _, last = rel.rpartition("/")
        self._real_folder(folder, name)
        dest = self.root / rel
        mode = _lstat_mode(dest)
        if stat.S_ISLNK(mode):
            raise refused(self.archive, name, f"would be written through the link {dest}, which this tool did not make")
        return dest

    def _file_dest(self, rel: str, name: str) -> Path | None:
        """``_place`` for a file to be written: refused where the archive already has a folder."""
        dest = self._place(rel, name)
        if dest is not None and stat.S_ISDIR(_lstat_mode(dest)):
            raise refused(self.archive, name, "is a file where the archive has a folder")
        return dest

    def _real_folder(self, rel: str, name: str) -> None:
        """Create ``root/rel`` part by part; refused if a part is a link or a file."""
        parts = rel.split("/") if rel else []
        if len(parts) >= MAX_DEPTH:
            raise refused(self.archive, name[:80], f"nests folders more than {MAX_DEPTH} deep")
        for depth in range(1, len(parts) + 1):
            here = "/".join(parts[:depth])
            if here in self._checked:
                continue
            path = self.root / here
            mode = _lstat_mode(path)
            if mode == 0:
                path.mkdir()
            elif stat.S_ISLNK(mode):
                raise refused(self.archive, name, f"would be written through the link {path}, which this tool did "
                                                  "not make")
            elif not stat.S_ISDIR(mode):
                raise refused(self.archive, name, f"needs the folder {here!r}, which the archive has as a file")
            self._checked.add(here)


def _lstat_mode(path: Path) -> int:
    """The file's mode without following a link; 0 when there is nothing there."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def _open_nofollow(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> BinaryIO:
    fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    return os.fdopen(fd, "rb" if flags == os.O_RDONLY else "wb")


def _write(dest: Path, source: BinaryIO) -> None:
    """Write ``source`` to ``dest.part`` (never through a link), then rename it to ``dest``."""
    partial = dest.with_name(dest.name + ".part")
    with _open_nofollow(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as out:
        shutil.copyfileobj(source, out, CHUNK)
    os.replace(partial, dest)

