"""Safe, resumable unpacking of tar and zip archives (no member may land outside the target)."""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from stages.extract.download import DownloadError
from stages.extract.download import members as tree_module
from stages.extract.download.limits import Limits
from stages.extract.download.unpack import archive_kind, unpack
from tests.download.conftest import tar_bytes, zip_bytes
from tests.download.hostile import (MIB, hard_link, link_chain, stored_zip, tar_gz_of_zeros, tar_of,
                                    zip_of_zeros)


def tar_with(path: Path, *members: tuple[str, str, str | bytes]) -> Path:
    """A tar file with members (name, kind, payload): kind 'file' (bytes), 'sym' or 'hard' (link target)."""
    with tarfile.open(path, "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return path


def outside_untouched(tmp_path: Path) -> None:
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out" / "escaped").exists()


@pytest.mark.parametrize("members, why", [
    ([("../escaped", "file", b"x")], "contains '..'"),
    ([("a/../../escaped", "file", b"x")], "contains '..'"),
    ([("/abs/escaped", "file", b"x")], "absolute path"),
    ([("link", "sym", "/"), ("link/escaped", "file", b"x")], "to the absolute path '/'"),
    ([("link", "sym", "../.."), ("link/escaped", "file", b"x")], "leads outside the target"),
    ([("a/link", "sym", "../../out"), ("a/link/escaped", "file", b"x")], "leads outside the target"),
    ([("hard", "hard", "../escaped")], "contains '..'"),
    ([("a", "sym", "."), ("b", "sym", "a/.."), ("b/escaped", "file", b"x")], "leads outside the target"),
    ([("loop", "sym", "loop/x"), ("loop/escaped", "file", b"x")], "more than 40 links"),
])
def test_tar_members_escaping_the_target_are_refused(tmp_path, members, why):
    archive = tar_with(tmp_path / "evil.tar", ("ok/first.jpg", "file", b"fine"), *members)
    target = tmp_path / "out" / "target"
    with pytest.raises(DownloadError, match="refusing to unpack") as err:
        unpack(archive, target)
    assert why in str(err.value)
    outside_untouched(tmp_path)


def test_symlink_planted_by_an_earlier_run_cannot_be_followed(tmp_path):
    """A link inside the target that points out (however it got there) is never written through."""
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", target / "dir")
    archive = tar_with(tmp_path / "a.tar", ("dir/escaped", "file", b"x"))
    with pytest.raises(DownloadError, match="would be written through the link .*dir, which this tool did not make"):
        unpack(archive, target)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_links_inside_the_target_become_copies(tmp_path):
    """No link is made on disk: a link to a file (through other links too) and a hard link become copies."""
    archive = tar_with(tmp_path / "a.tar", ("d/soft.jpg", "sym", "real.jpg"), ("d/real.jpg", "file", b"data"),
                       ("d/hard.jpg", "hard", "d/real.jpg"), ("alias", "sym", "d"),
                       ("e/via.jpg", "sym", "../alias/soft.jpg"),
                       ("alias/through.jpg", "file", b"written through a folder link"), ("d/nothing", "sym", "gone"))
    target = tmp_path / "target"
    assert unpack(archive, target) == 5
    for name in ("d/soft.jpg", "d/hard.jpg", "e/via.jpg"):
        assert (target / name).read_bytes() == b"data" and not (target / name).is_symlink()
    assert (target / "d" / "through.jpg").read_bytes() == b"written through a folder link"
    assert not os.path.lexists(target / "alias") and not os.path.lexists(target / "d" / "nothing")
    assert not [path for path in target.rglob("*") if path.is_symlink()]
    assert unpack(archive, target) == 0  # a rerun finds every file, copies included, in place


def test_a_chain_of_links_out_of_the_target_is_refused(tmp_path):
    """Issue 22: ``deep -> .``, ``u1 -> deep/..`` ... each harmless as text; followed, they climb out."""
    victim = tmp_path / "victim"
    (victim / "data").mkdir(parents=True)
    (victim / "data" / "secret.txt").write_bytes(b"secret")
    chain = link_chain("top", victim)
    for extra in ([], [hard_link("stolen.txt", "top/data/secret.txt")],
                  [hard_link("stolen.txt", f"u12/{str(victim).lstrip('/')}/data/secret.txt")]):
        archive = tmp_path / "chain.tar.gz"
        archive.write_bytes(tar_of(chain + extra, {"top/data/planted.txt": b"x"}))
        target = tmp_path / "out" / "target"
        with pytest.raises(DownloadError, match="member 'u1' leads outside the target folder"):
            unpack(archive, target)
        assert sorted(p.name for p in victim.rglob("*")) == ["data", "secret.txt"]
        assert not [path for path in target.rglob("*") if path.is_symlink() or path.name == "stolen.txt"]


def test_a_link_redefined_later_cannot_lead_a_kept_path_out(tmp_path):
    """``a -> b/c`` is inside; ``b -> ..`` recorded later makes it lead out: refused when it is used."""
    archive = tar_with(tmp_path / "a.tar", ("a", "sym", "b/c"), ("b", "sym", ".."), ("a/escaped", "file", b"x"))
    with pytest.raises(DownloadError, match="member 'b' leads outside|member 'a/escaped' leads outside"):
        unpack(archive, tmp_path / "out" / "target")
    outside_untouched(tmp_path)


@pytest.mark.parametrize("name", ["../escaped", "/abs/escaped", "a/../../escaped"])
def test_zip_members_escaping_the_target_are_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"ok.jpg": b"fine", name: b"x"}))
    with pytest.raises(DownloadError, match="refusing to unpack"):
        unpack(archive, tmp_path / "out" / "target")
    outside_untouched(tmp_path)


def test_zip_symlink_out_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("images")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../")
    with pytest.raises(DownloadError, match="member 'images' leads outside the target folder"):
        unpack(archive, tmp_path / "out" / "target")


def test_interrupted_unpack_resumes_and_skips_finished_files(tmp_path):
    members = {f"images/{n:03d}.jpg": bytes([n]) * (n + 1) for n in range(20)}
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_bytes(members))
    target = tmp_path / "target"
    assert unpack(archive, target) == 20
    # an interrupted run: three files never written, one left half-written as .part
    for n in (3, 7, 11):
        (target / f"images/{n:03d}.jpg").unlink()
    (target / "images/011.jpg.part").write_bytes(b"half")
    assert unpack(archive, target) == 3
    for name, data in members.items():
        assert (target / name).read_bytes() == data
    assert not list(target.rglob("*.part"))


def test_damaged_archive_is_a_one_line_error(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_bytes({"x.jpg": os.urandom(10000)})[:5000])
    with pytest.raises(DownloadError, match="the archive is damaged"):
        unpack(archive, tmp_path / "target")


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("name, damage, why", [
    # the CRC-32 in the gzip trailer: every member reads fine, only reading to the end checks it
    ("a.tar.gz", lambda data: data[:-8] + struct.pack("<L", ~zlib.crc32(gzip.decompress(data)) & 0xFFFFFFFF)
     + data[-4:], "CRC check failed"),
    ("a.tar.xz", lambda data: flip(data, len(data) // 2), "Corrupt input data"),
    ("a.tar.bz2", lambda data: flip(data, len(data) // 2), "Invalid data stream"),
    ("a.tar.xz", lambda data: data[:-30], "ended before the end-of-stream marker"),
])
def test_compressed_tar_with_a_bad_checksum_or_stream_is_refused(tmp_path, name, damage, why):
    mode = {"gz": "w:gz", "xz": "w:xz", "bz2": "w:bz2"}[name.rsplit(".", 1)[1]]
    archive = tmp_path / name
    archive.write_bytes(damage(tar_bytes({"d/x.bin": os.urandom(4000), "d/y.txt": b"y" * 3000}, mode=mode)))
    with pytest.raises(DownloadError, match=f"the archive is damaged .*{why}") as err:
        unpack(archive, tmp_path / "target")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("archive_bytes, why", [
    (stored_zip("d/x.txt", b"secret", flags=0x1), "member 'd/x.txt' is encrypted"),
    (stored_zip("d/x.txt", b"secret", flags=0x41), "member 'd/x.txt' is encrypted"),
    (stored_zip("d/x.txt", b"secret", method=99), "member 'd/x.txt' uses compression method 99"),
    (flip(stored_zip("d/x.txt", b"payload"), 40), "damaged .*Bad CRC-32"),
    (zip_bytes({"d/x.txt": b"x"})[:-10], "damaged"),
])
def test_zip_that_cannot_be_read_is_one_line(tmp_path, archive_bytes, why):
    archive = tmp_path / "a.zip"
    archive.write_bytes(archive_bytes)
    with pytest.raises(DownloadError, match=why):
        unpack(archive, tmp_path / "target")
    assert not list((tmp_path / "target").rglob("x.txt"))


def test_tar_gz_bomb_is_refused_before_a_byte_of_it_is_written(tmp_path):
    """A 2 MB tar.gz of one 2 GiB file: its declared size is past the budget, so nothing is written."""
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(tar_gz_of_zeros("d", 2048 * MIB))
    assert archive.stat().st_size < 3 * MIB
    with pytest.raises(DownloadError, match=r"bomb.tar.gz: refusing to unpack: the unpacked files would pass 105.1 MiB "
                                            r"\(20 x its 2.1 MiB \+ 64.0 MiB; raise PIPELINE_UNPACK_MAX_RATIO"):
        unpack(archive, tmp_path / "target")
    assert not list((tmp_path / "target").rglob("*.bin*"))


def test_tar_gz_bomb_of_many_files_stops_at_the_budget(tmp_path):
    """Each 4 MiB member is small; together 1 GiB from 1 MB: unpacking stops near the budget (22 + 64 MiB)."""
    archive = tmp_path / "bomb.tgz"
    archive.write_bytes(tar_gz_of_zeros("d", 1024 * MIB, members=256))
    with pytest.raises(DownloadError, match="refusing to unpack: the unpacked files would pass"):
        unpack(archive, tmp_path / "target")
    written = sum(path.stat().st_size for path in (tmp_path / "target").rglob("*") if path.is_file())
    assert 60 * MIB < written <= 64 * MIB + 20 * archive.stat().st_size


def test_zip_bomb_is_refused_from_its_directory(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_of_zeros("d/zeros.bin", 1024 * MIB))
    assert archive.stat().st_size < 1.1 * MIB
    with pytest.raises(DownloadError, match="bomb.zip: refusing to unpack: the unpacked files would pass 84.3 MiB"):
        unpack(archive, tmp_path / "target")
    assert not list((tmp_path / "target").rglob("*.bin*"))


def test_hard_links_to_one_big_file_count_against_the_budget(tmp_path):
    """Copies made for links are written bytes too: 100 hard links to a 1 MiB file in a 20 KB archive."""
    links = [hard_link(f"d/copy{n}.bin", "d/big.bin") for n in range(100)]
    archive = tmp_path / "links.tar.gz"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("d/big.bin")
        info.size = MIB
        tar.addfile(info, io.BytesIO(bytes(MIB)))
        for link in links:
            tar.addfile(link)
    archive.write_bytes(data.getvalue())
    with pytest.raises(DownloadError, match="refusing to unpack: the unpacked files would pass 64.0 MiB"):
        unpack(archive, tmp_path / "target")
    assert len(list((tmp_path / "target" / "d").glob("copy*.bin"))) < 64


@pytest.mark.parametrize("members, why", [
    ([("x/" * 150 + "f.jpg", "file", b"x")], "nests folders more than 100 deep"),
    ([("x/" * 2100 + "f.jpg", "file", b"x")], "has a name longer than 4096 characters"),
    ([("a", "sym", "/".join(["b"] * 150)), ("a/f.jpg", "file", b"x")], "nests folders more than 100 deep"),
])
def test_names_too_deep_or_too_long_are_refused_before_any_folder_is_made(tmp_path, members, why):
    """Deep folders would also break the clean-up (Python 3.11's rmtree recurses once per level)."""
    archive = tar_with(tmp_path / "deep.tar", *members)
    with pytest.raises(DownloadError, match=why):
        unpack(archive, tmp_path / "target")
    assert list((tmp_path / "target").iterdir()) == []


def test_a_link_maze_is_refused_after_bounded_work(tmp_path, monkeypatch):
    """Links that expand every path into thousands of parts (``l0 -> l1/x/../x/..``...): resolving stops at a
    bound on the parts looked at (8 million: seconds; lowered here to keep the test fast)."""
    monkeypatch.setattr(tree_module, "MAX_STEPS", 200_000)
    pad = "/".join(["x/.."] * 800)
    links = [(f"l{n}", "sym", f"l{n + 1}/{pad}") for n in range(38)] + [("l38", "sym", "d")]
    archive = tar_with(tmp_path / "maze.tar", *links, *[(f"l0/f{n}.jpg", "file", b"x") for n in range(100)])
    with pytest.raises(DownloadError, match="makes resolving the archive's links take too long"):
        unpack(archive, tmp_path / "target")


def test_the_limits_are_raised_by_environment_variables():
    limits = Limits.from_env({"PIPELINE_UNPACK_MAX_RATIO": "2000", "PIPELINE_UNPACK_MAX_BYTES": "3G",
                              "PIPELINE_DOWNLOAD_MAX_BYTES": "10M"})
    assert (limits.unpack_ratio, limits.unpack_max, limits.download_max) == (2000, 3 << 30, 10 << 20)
    assert limits.unpack_budget(1 << 20).bound == 2000 * (1 << 20) + (64 << 20)
    assert limits.unpack_budget(10 << 20).bound == 3 << 30  # the total bound, when it is smaller
    assert limits.download_bound(1000)[0] == 10 << 20
    assert Limits().download_bound(1000)[0] == 2000 + MIB and Limits().download_bound(None)[0] is None
    for env in ({"PIPELINE_UNPACK_MAX_RATIO": "lots"}, {"PIPELINE_UNPACK_MAX_RATIO": "0.5"},
                {"PIPELINE_UNPACK_MAX_BYTES": "-3"}, {"PIPELINE_DOWNLOAD_MAX_BYTES": "1X"}):
        with pytest.raises(DownloadError, match=f"{next(iter(env))}=.* (must be|is not)"):
            Limits.from_env(env)


def test_archive_kind_from_the_name():
    assert [archive_kind(n) for n in ("a.zip", "b.tar.gz", "c.tgz", "d.tar")] == ["zip", "tar", "tar", "tar"]
    with pytest.raises(DownloadError, match="not a known archive type"):
        archive_kind("split.json")
