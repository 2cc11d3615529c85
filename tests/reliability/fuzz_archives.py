"""Fuzz cases for the unpacker of ``pipeline download`` (target ``archive`` of ``fuzz_child.py``).

A case builds a small tar (plain, gzip, bzip2 or xz) or zip, either valid and then damaged (bytes flipped,
cut, inserted; a tar header field rewritten with a correct header checksum), or assembled from random members:
files, folders, symbolic and hard links whose targets are drawn from pieces of a link chain, ``..``, absolute
paths and a victim folder beside the target, devices, FIFOs, odd zip flags, methods and modes. It is unpacked
by the real unpacker into ``staging/unpacked``. A case passes when it ends in success or one ``UserError``
line, and nothing outside ``staging`` changed (the whole case folder, victim included, is compared before and
after), and no link exists under ``staging``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import stat
import tarfile
import zlib
from pathlib import Path

from tests.download.hostile import stored_zip, zip_entry, zip_of

NAMES = ["d/a.jpg", "d/b/c.txt", "d", "d/b", "a", "deep", "u1", "u2", "u3", "loop", "x/../y", "../up", "/abs/x",
         "./d/./a.jpg", "d//a.jpg", "a\\b", "C:/win", "é/ü.jpg", "n" * 120 + "/f", "d/" + "m" * 300, ".", "",
         "d/" * 120 + "f", "y/" * 2100]


def _link_targets(victim: Path) -> list[str]:
    outside = str(victim).lstrip("/")
    return [".", "..", "../..", "/", str(victim), outside, "deep/..", "u1/..", "u2/..", f"u3/{outside}", "a",
            "d", "d/a.jpg", "d/b/c.txt", "loop", "loop/x", "../victim/secret.txt", "a/../..", "", "x" * 5000,
            "/".join(["b"] * 150), "/".join(["u1/.."] * 500)]


def _member(rng: random.Random, victim: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rng.choice(NAMES))
    kind = rng.random()
    if kind < 0.35:
        info.size = rng.choice([0, 1, 100, 1000])
    elif kind < 0.5:
        info.type = tarfile.DIRTYPE
    elif kind < 0.75:
        info.type, info.linkname = tarfile.SYMTYPE, rng.choice(_link_targets(victim))
    elif kind < 0.9:
        info.type, info.linkname = tarfile.LNKTYPE, rng.choice(NAMES + _link_targets(victim))
    else:
        info.type = rng.choice([tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE])
    return info


def _tar(members: list[tarfile.TarInfo], rng: random.Random) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=rng.choice([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(os.urandom(info.size)) if info.isreg() else None)
    return out.getvalue()


def _valid_tar(rng: random.Random) -> bytes:
    members = [tarfile.TarInfo("d/a.jpg"), tarfile.TarInfo("d/b/c.txt")]
    for info in members:
        info.size = rng.choice([10, 700, 3000])
    link = tarfile.TarInfo("d/link.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "a.jpg"
    hard = tarfile.TarInfo("d/hard.txt")
    hard.type, hard.linkname = tarfile.LNKTYPE, "d/b/c.txt"
    return _tar(members + [link, hard], rng)


def _rewrite_header(data: bytes, rng: random.Random, victim: Path) -> bytes:
    """One header field of one member (size, type, name or link target) changed, its checksum made right."""
    try:
        offsets = [m.offset for m in tarfile.open(fileobj=io.BytesIO(data), mode="r:")]
    except tarfile.TarError:
        return data
    if not offsets:
        return data
    at = rng.choice(offsets)
    header = bytearray(data[at:at + 512])
    field = rng.choice(["size", "type", "name", "link"])
    if field == "size":
        huge = b"\x80" + bytes(7) + b"\xff" * 4  # base-256: 4 GiB
        header[124:136] = rng.choice([b"77777777777\0", b"00000001000\0", b"-1".ljust(12, b"\0"), huge])
    elif field == "type":
        header[156:157] = bytes([rng.choice(b"0123456790LKxgSAZ")])
    else:
        text = rng.choice(NAMES if field == "name" else _link_targets(victim)).encode()[:100]
        start = 0 if field == "name" else 157
        header[start:start + 100] = text.ljust(100, b"\0")
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return data[:at] + bytes(header) + data[at + 512:]


def _damage(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op, at = rng.random(), rng.randrange(len(data) + 1)
        if op < 0.4 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            del data[at:]
        elif op < 0.7:
            data[at:at] = os.urandom(rng.choice([1, 7, 512]))
        elif op < 0.85:
            data[at:at + rng.choice([4, 64, 600])] = bytes([rng.choice([0, 255])]) * rng.choice([4, 64, 600])
        else:
            data[at:at] = data[max(0, at - 1024):at]
    return bytes(data)


def _compress(data: bytes, suffix: str) -> bytes:
    return {".tar": lambda d: d, ".tar.gz": gzip.compress, ".tar.bz2": bz2.compress,
            ".tar.xz": lzma.compress}[suffix](data)


def _zip(rng: random.Random, victim: Path) -> bytes:
    entries = []
    for _ in range(rng.randint(1, 6)):
        name = rng.choice(NAMES + ["d/", "d/b/"])
        roll = rng.random()
        if roll < 0.3:
            text = rng.choice(_link_targets(victim)).encode()
            entries.append(zip_entry(name, text, zlib.crc32(text), len(text), method=0, mode=stat.S_IFLNK | 0o777))
            continue
        data = os.urandom(rng.choice([0, 5, 900]))
        method = rng.choice([0, 0, 8, 8, 12, 14, 99]) if roll < 0.9 else 0
        raw = data
        if method == 8:
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = packer.compress(data) + packer.flush()
        elif method == 12:
            raw = bz2.compress(data)
        flags = rng.choice([0, 0, 0, 1, 8, 0x40, 0x800])
        entries.append(zip_entry(name, raw, zlib.crc32(data), rng.choice([len(data)] * 4 + [0, 10**6]),
                                 method=method, flags=flags))
    return zip_of(entries)


def build(rng: random.Random, victim: Path) -> tuple[str, bytes]:
    """(archive file name, bytes) of one case."""
    if rng.random() < 0.3:
        if rng.random() < 0.5:
            return "a.zip", _zip(rng, victim)
        return "a.zip", _damage(stored_zip("d/a.jpg", os.urandom(300)), rng)
    suffix = rng.choice([".tar", ".tar.gz", ".tar.bz2", ".tar.xz"])
    roll = rng.random()
    if roll < 0.35:
        members = [_member(rng, victim) for _ in range(rng.randint(1, 8))]
        return "a" + suffix, _compress(_tar(members, rng), suffix)
    if roll < 0.65:
        return "a" + suffix, _compress(_rewrite_header(_valid_tar(rng), rng, victim), suffix)
    if roll < 0.8:
        return "a" + suffix, _compress(_damage(_valid_tar(rng), rng), suffix)
    return "a" + suffix, _damage(_compress(_valid_tar(rng), suffix), rng)


def _state(folder: Path, skip: Path) -> dict[str, object]:
    """Every path under ``folder`` but ``skip``: bytes, link target or 'folder' (links are not followed)."""
    state: dict[str, object] = {}
    for top, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if Path(top, name) != skip]
        for name in folders + files:
            path = Path(top, name)
            state[str(path)] = ("link", os.readlink(path)) if path.is_symlink() else \
                "folder" if path.is_dir() else path.read_bytes()
    return state


def archive_case(rng: random.Random, case: Path) -> None:
    """One fuzz case; raises UserError for a refused archive, AssertionError if anything escaped."""
    from stages.extract.download.unpack import unpack

    victim, staging = case / "victim", case / "staging"
    (victim / "data").mkdir(parents=True)
    (victim / "secret.txt").write_bytes(b"secret")
    (victim / "data" / "keep.jpg").write_bytes(b"keep")
    name, data = build(rng, victim)
    archive = case / name
    archive.write_bytes(data)
    before = _state(case, staging)
    try:
        unpack(archive, staging / "unpacked")
    finally:
        after = _state(case, staging)
        changed = sorted(set(before) ^ set(after) | {p for p in before if p in after and before[p] != after[p]})
        assert not changed, f"written outside staging: {changed[:3]}"
        links = [str(p) for p in staging.rglob("*") if p.is_symlink()]
        assert not links, f"a link was made in staging: {links[:3]}"
