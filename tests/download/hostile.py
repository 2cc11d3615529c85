"""Hostile archives, built byte by byte: link chains out of the target, decompression bombs, odd zip headers.

The bombs are real (any unpacker that trusts them writes every byte) but cheap to build: a gzip stream may
hold many members, so a tar.gz of zeros repeats one compressed MiB; a zip member's deflate data repeats one
block flushed with ``Z_FULL_FLUSH`` (which makes the next block independent of the previous ones).
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from pathlib import Path

MIB = 1 << 20


def link_chain(top: str, destination: Path, depth: int = 12) -> list[tarfile.TarInfo]:
    """``deep -> .``, ``u1 -> deep/..``, ... ``u{depth} -> u{depth-1}/..``, then ``top -> u{depth}/<destination>``.

    Each link, read as text, stays inside the archive; followed on disk, ``u{depth}`` is ``depth`` folders above
    the target (the file system root for any usual target), so ``top`` is ``destination``.
    """
    links = [("deep", ".")] + [(f"u{n}", f"{'deep' if n == 1 else f'u{n - 1}'}/..") for n in range(1, depth + 1)]
    links.append((top, f"u{depth}/{str(destination).lstrip('/')}"))
    return [sym_link(name, target) for name, target in links]


def sym_link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def tar_of(members: list[tarfile.TarInfo], files: dict[str, bytes] | None = None, mode: str = "w:gz") -> bytes:
    """A tar archive of link (or other header-only) ``members``, then regular ``files`` (path -> content)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for info in members:
            tar.addfile(info)
        for name, data in (files or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def hard_link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def tar_gz_of_zeros(folder: str, total: int, members: int = 1) -> bytes:
    """A tar.gz whose ``members`` files (``folder/zeros<N>.bin``) hold ``total`` zero bytes together (whole MiBs)."""
    one_mib = gzip.compress(bytes(MIB), mtime=0)
    per_member = total // members
    assert per_member % MIB == 0, "whole MiBs per member"
    parts = []
    for n in range(members):
        info = tarfile.TarInfo(f"{folder}/zeros{n}.bin")
        info.size = per_member
        parts.append(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT), mtime=0))
        parts.extend([one_mib] * (per_member // MIB))
    parts.append(gzip.compress(bytes(1024), mtime=0))  # the end-of-archive blocks
    return b"".join(parts)


def zip_entry(name: str, raw: bytes, crc: int, size: int, method: int = 8, flags: int = 0,
              mode: int = 0o100644) -> tuple[bytes, bytes]:
    """One zip member as (local header + data, central directory record without its offset), to ``zip_of``."""
    encoded = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, len(raw), size, len(encoded),
                        0) + encoded + raw
    central = struct.pack("<4s6H3L5H", b"PK\x01\x02", 0x031E, 20, flags, method, 0, 0x21, crc, len(raw), size,
                          len(encoded), 0, 0, 0, 0) + struct.pack("<L", mode << 16)
    return local, central + b"%OFFSET%" + encoded


def zip_of(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A zip file of ``zip_entry`` members."""
    body, directory = b"", b""
    for local, central in entries:
        directory += central.replace(b"%OFFSET%", struct.pack("<L", len(body)))
        body += local
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return body + directory + end


def zip_of_zeros(name: str, total: int) -> bytes:
    """A zip holding one deflated member of ``total`` zero bytes (whole MiBs): about total / 1000 bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()
    crc, zeros = 0, bytes(MIB)
    for _ in range(total // MIB):
        crc = zlib.crc32(zeros, crc)
    return zip_of([zip_entry(name, block * (total // MIB) + end, crc, total)])


def stored_zip(name: str, data: bytes, method: int = 0, flags: int = 0) -> bytes:
    """A zip of one stored member, its compression method and flag bits as given (99: not a zip method)."""
    return zip_of([zip_entry(name, data, zlib.crc32(data), len(data), method=method, flags=flags)])
