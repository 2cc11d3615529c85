"""Unpack tar and zip archives safely, within a size budget, and resumably.

Where members may land is ``members.Tree``'s job (no path, link or hard link may lead out of the target; no
link is created on disk). This module reads the formats: a tar (plain, gzip, bzip2 or xz, told by its first
bytes) is read as one stream to its very end, so the compressor's checksum is checked; a zip is checked
member by member (encrypted members and unknown compression methods are refused before anything is
written). Everything decompressed, and every copy a link becomes, counts against a budget
(``limits.Limits.unpack_budget``: the dataset's, or the archive's own). Each file is written as ``NAME.part``
and renamed, so a file under its real name is complete; an interrupted unpack resumes by skipping the files
already there with the right size.
Devices, FIFOs and other special members are skipped. Every failure is one ``DownloadError`` line.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from stages.extract.download.errors import DownloadError, RefusedError
from stages.extract.download.fetch import disk_full
from stages.extract.download.limits import Budget, Limits, SizeLimitError
from stages.extract.download.members import CHUNK, MAX_LINK_TEXT, Tree, refused

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
ZIP_ENCRYPTED = 0x1 | 0x40  # traditional and strong encryption flags
# what a damaged compressed stream or archive raises from the standard library's readers
_DAMAGED = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile, struct.error,
            ValueError, OverflowError, NotImplementedError, RuntimeError)


class _Damaged(Exception):
    """The archive cannot be read to its end (a bad header, a failed checksum, a truncated stream)."""


def archive_kind(name: str) -> str:
    """'zip' or 'tar' from the file name; DownloadError for anything else."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    raise DownloadError(f"{name}: not a known archive type (zip, tar, tar.gz, tgz, tar.bz2, tar.xz)")


def unpack(archive: Path, target: Path, budget: Budget | None = None) -> int:
    """Unpack ``archive`` into ``target`` (created); returns the number of files written (0 when all were there).

    ``budget`` is what unpacking may still produce (shared by a dataset's archives); by default the archive's own.
    """
    kind = archive_kind(archive.name)
    target.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        raise refused(archive.name, ".", f"would be unpacked through the link {target}, which this tool did not make")
    budget = budget or Limits().unpack_budget(archive.stat().st_size)
    tree = Tree(archive.name, Path(os.path.realpath(target)), budget)
    try:
        written = _unpack_zip(archive, tree) if kind == "zip" else _unpack_tar(archive, tree)
        return written + tree.finish()
    except SizeLimitError as exc:
        raise SizeLimitError(f"{archive.name}: {exc}") from None
    except _Damaged as exc:
        raise RefusedError(f"{archive.name}: the archive is damaged ({exc}) — it was deleted; rerun to fetch it "
                           "again, or use --mirror with a good copy") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(target, exc) from None
        if exc.errno == errno.ENAMETOOLONG:
            name = os.path.relpath(exc.filename, target) if exc.filename else "?"
            raise refused(archive.name, name[:80], "has a name too long for this file system") from None
        raise DownloadError(f"{archive.name}: cannot write {exc.filename or target} while unpacking "
                            f"({exc.strerror or exc}) — check the folder, then rerun: files already out are kept") \
            from None


class _Counted:
    """A readable stream whose bytes count against ``budget``; a decompression failure becomes ``_Damaged``."""

    def __init__(self, raw: BinaryIO, budget: Budget) -> None:
        self.raw, self.budget = raw, budget

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        try:
            data = self.raw.read(min(size, CHUNK))
        except _DAMAGED as exc:
            raise _Damaged(str(exc) or type(exc).__name__) from None
        self.budget.spend(len(data))
        return data


def _decompressed(archive: Path) -> BinaryIO:
    """The archive's tar stream, decompressed by what its first bytes say (gzip, bzip2, xz or none)."""
    with open(archive, "rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(archive)
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(archive)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(archive)
    return open(archive, "rb")


def _unpack_tar(archive: Path, tree: Tree) -> int:
    written = 0
    with _decompressed(archive) as raw:
        stream = _Counted(raw, tree.budget)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    written += _tar_member(tar, member, tree)
        except (tarfile.TarError, EOFError, ValueError, OverflowError) as exc:
            raise _Damaged(str(exc) or type(exc).__name__) from None
        while stream.read(CHUNK):  # to the end: the compressor's checksum is only checked there
            pass
    return written


def _tar_member(tar: tarfile.TarFile, member: tarfile.TarInfo, tree: Tree) -> int:
    if member.isdir():
        tree.folder(member.name)
    elif member.issym():
        tree.symlink(member.name, member.linkname)
    elif member.islnk():
        return tree.hardlink(member.name, member.linkname)
    elif member.isfile():
        tree.budget.check(member.size)  # refuse a huge member before writing any of it
        source = tar.extractfile(member)
        assert source is not None
        return tree.file(member.name, source, member.size)
    return 0


def _unpack_zip(archive: Path, tree: Tree) -> int:
    try:
        zf = zipfile.ZipFile(archive)
    except _DAMAGED as exc:
        raise _Damaged(str(exc) or type(exc).__name__) from None
    with zf:
        infos = zf.infolist()
        tree.budget.check(sum(info.file_size for info in infos))  # the sizes the zip declares, before any write
        for info in infos:
            if info.flag_bits & ZIP_ENCRYPTED:
                raise refused(archive.name, info.filename, "is encrypted (zip encryption is not supported)")
            if info.compress_type not in ZIP_METHODS:
                raise refused(archive.name, info.filename, f"uses compression method {info.compress_type}, which "
                                                           "is not one of zip's standard ones (stored, deflate, "
                                                           "bzip2, lzma)")
        written = 0
        for info in infos:
            written += _zip_member(zf, info, tree)
    return written


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tree: Tree) -> int:
    if stat.S_ISLNK(info.external_attr >> 16):
        with _open_member(zf, info, tree.budget) as source:
            text = source.read(MAX_LINK_TEXT + 1)
        tree.symlink(info.filename, text.decode("utf-8", "surrogateescape"))
    elif info.filename.endswith("/") or not info.filename:  # ZipInfo.is_dir() fails on an empty name
        tree.folder(info.filename)
    else:
        with _open_member(zf, info, tree.budget) as source:
            return tree.file(info.filename, source, info.file_size)
    return 0


@contextmanager
def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget) -> Iterator[_Counted]:
    """A zip member's bytes, counted against the budget; a bad local header or stream becomes ``_Damaged``."""
    try:
        member = zf.open(info)
    except _DAMAGED as exc:
        raise _Damaged(str(exc) or type(exc).__name__) from None
    with member:
        yield _Counted(member, budget)
