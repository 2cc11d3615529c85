"""Unpack tar and zip archives safely and resumably.

No member may land outside the target folder: absolute names, ``..`` parts, and symbolic or hard links that
point outside are refused (the whole archive is refused, with the member named), and every file is written
through a parent folder whose real path is inside the target. Each file is written as ``NAME.part`` and
renamed, so a file under its real name is complete; an interrupted unpack resumes by skipping the files
already there with the right size. Devices, FIFOs and other special members are skipped.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from stages.extract.download.errors import DownloadError
from stages.extract.download.fetch import disk_full

CHUNK = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_kind(name: str) -> str:
    """'zip' or 'tar' from the file name; DownloadError for anything else."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    raise DownloadError(f"{name}: not a known archive type (zip, tar, tar.gz, tgz, tar.bz2, tar.xz)")


def member_path(archive: Path, name: str) -> str:
    """The member's normalised relative path; DownloadError if it is absolute or would climb out."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":") or "\x00" in cleaned:
        raise _unsafe(archive, name, "has an absolute path")
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _unsafe(archive, name, "contains '..'")
    return "/".join(parts)


def _unsafe(archive: Path, name: str, why: str) -> DownloadError:
    return DownloadError(f"{archive.name}: refusing to unpack: member {name!r} {why} and would land outside the "
                         "target folder — the archive is unsafe or not the published one; nothing was placed")


def _link_target(archive: Path, member: str, target: str) -> str:
    """The in-archive path a symbolic link ``member -> target`` points to; refused if it leaves the archive root."""
    if target.startswith("/") or "\x00" in target:
        raise _unsafe(archive, member, f"is a link to the absolute path {target!r}")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    if joined == ".." or joined.startswith("../"):
        raise _unsafe(archive, member, f"is a link to {target!r}, outside the archive")
    return joined


def unpack(archive: Path, target: Path) -> int:
    """Unpack ``archive`` into ``target`` (created); returns the number of files written (0 when all were there)."""
    target.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(target))
    try:
        if archive_kind(archive.name) == "zip":
            return _unpack_zip(archive, root)
        return _unpack_tar(archive, root)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"{archive.name}: the archive is damaged ({exc}) — delete it and rerun to fetch it again") \
            from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(target, exc) from None
        raise


def _unpack_tar(archive: Path, root: Path) -> int:
    written = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            rel = member_path(archive, member.name)
            if not rel:
                continue
            if member.isdir():
                _inside(archive, root, rel, member.name).mkdir(parents=True, exist_ok=True)
            elif member.issym():
                _symlink(archive, root, rel, member.linkname)
            elif member.islnk():
                source = _inside(archive, root, member_path(archive, member.linkname), member.name)
                dest = _inside(archive, root, rel, member.name)
                if not dest.exists():
                    if not source.is_file():
                        raise _unsafe(archive, member.name, f"is a hard link to {member.linkname!r}, not an earlier file")
                    _write(dest, open(source, "rb"))
                    written += 1
            elif member.isfile():
                dest = _inside(archive, root, rel, member.name)
                if dest.is_file() and dest.stat().st_size == member.size:
                    continue
                _write(dest, tar.extractfile(member))
                written += 1
    return written


def _unpack_zip(archive: Path, root: Path) -> int:
    written = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = member_path(archive, info.filename)
            if not rel:
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                _symlink(archive, root, rel, zf.read(info).decode("utf-8", "replace"))
            elif info.is_dir():
                _inside(archive, root, rel, info.filename).mkdir(parents=True, exist_ok=True)
            else:
                dest = _inside(archive, root, rel, info.filename)
                if dest.is_file() and dest.stat().st_size == info.file_size:
                    continue
                _write(dest, zf.open(info))
                written += 1
    return written


def _inside(archive: Path, root: Path, rel: str, name: str) -> Path:
    """``root/rel`` after checking that its parent's real path (links resolved) is inside ``root``."""
    dest = root / rel
    parent = Path(os.path.realpath(dest.parent))
    if parent != root and root not in parent.parents:
        raise _unsafe(archive, name, "goes through a link out of the target")
    return dest


def _symlink(archive: Path, root: Path, rel: str, link: str) -> None:
    """Create an in-archive symbolic link, after checking that it points inside the target."""
    _link_target(archive, rel, link)
    dest = _inside(archive, root, rel, rel)
    if dest.is_symlink() or dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(link, dest)


def _write(dest: Path, source: BinaryIO | None) -> None:
    """Write one member as ``dest.part``, then rename it to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    with source if source is not None else open(os.devnull, "rb") as src, open(partial, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
    os.replace(partial, dest)
