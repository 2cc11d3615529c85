"""Crafted ``.npz`` files, written byte by byte: headers that lie, deflate bombs, members NumPy never writes.

``zipfile`` cannot write a member whose header declares more than its data, nor a gigabyte deflate bomb
quickly, so archives are assembled here from raw members (sizes below 4 GiB: no zip64 records).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MIB = bytes(1 << 20)


@dataclass
class Member:
    """One archive member: its name, stored bytes, and what its headers declare."""

    name: str
    stored: bytes
    size: int  # the uncompressed size the archive declares
    crc: int
    method: int = zipfile.ZIP_STORED
    flags: int = 0


def npy(dtype: str | np.dtype, shape: tuple[int, ...], data: bytes = b"", fortran: bool = False) -> bytes:
    """A ``.npy`` header declaring ``dtype`` and ``shape``, followed by ``data`` (which need not match)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                   "fortran_order": fortran, "shape": shape})
    return header.getvalue() + data


def npy_of(array: np.ndarray) -> bytes:
    """A valid ``.npy`` of ``array``, as ``np.save`` writes it."""
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
    return out.getvalue()


def stored(name: str, content: bytes, **declared: int) -> Member:
    """A stored member; ``size``/``crc`` override what its headers declare."""
    return Member(name, content, declared.get("size", len(content)), declared.get("crc", zlib.crc32(content)))


def deflated(name: str, content: bytes) -> Member:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Member(name, packer.compress(content) + packer.flush(), len(content), zlib.crc32(content),
                  zipfile.ZIP_DEFLATED)


def zero_bomb(name: str, dtype: str, shape: tuple[int, ...]) -> Member:
    """A deflated member of zeros whose header declares ``shape``: about 1 KB per MiB it expands to."""
    head = npy(dtype, shape)
    left = int(np.prod(shape)) * np.dtype(dtype).itemsize
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)]
    block = packer.compress(_MIB) + packer.flush(zlib.Z_FULL_FLUSH)  # after a full flush, every MiB is the same
    crc = zlib.crc32(head)
    whole, rest = divmod(left, len(_MIB))
    for _ in range(whole):
        crc = zlib.crc32(_MIB, crc)
    parts.append(block * whole)
    parts.append(packer.compress(_MIB[:rest]) + packer.flush())
    return Member(name, b"".join(parts), len(head) + left, zlib.crc32(_MIB[:rest], crc), zipfile.ZIP_DEFLATED)


def members_of(path: Path) -> list[Member]:
    """The members of a valid (small) ``.npz``, as stored members."""
    with zipfile.ZipFile(path) as archive:
        return [stored(info.filename[:-4], archive.read(info)) for info in archive.infolist()]


def write_npz(path: Path, members: list[Member]) -> Path:
    """An archive of ``members`` exactly as given (names get ``.npy``): local headers, then the directory."""
    body, directory = bytearray(), bytearray()
    for m in members:
        name = (m.name + ".npy").encode()
        common = struct.pack("<4H3I2H", m.flags, m.method, 0, 0, m.crc, len(m.stored), m.size, len(name), 0)
        directory += (b"PK\x01\x02" + struct.pack("<2H", 20, 20) + common
                      + struct.pack("<3H2I", 0, 0, 0, 0, len(body)) + name)
        body += b"PK\x03\x04" + struct.pack("<H", 20) + common + name + m.stored
    end = b"PK\x05\x06" + struct.pack("<4H2IH", 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory) + end)
    return path


def replace(path: Path, target: Path, name: str, member: Member | None) -> Path:
    """A copy of the ``.npz`` at ``path`` with member ``name`` replaced (or added; dropped when None)."""
    members = [m for m in members_of(path) if m.name != name]
    return write_npz(target, members + ([member] if member is not None else []))
