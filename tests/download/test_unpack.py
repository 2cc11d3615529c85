"""Safe, resumable unpacking of tar and zip archives (no member may land outside the target)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from stages.extract.download import DownloadError
from stages.extract.download.unpack import archive_kind, unpack
from tests.download.conftest import tar_bytes, zip_bytes


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
    ([("link", "sym", "/"), ("link/escaped", "file", b"x")], "link to the absolute path"),
    ([("link", "sym", "../.."), ("link/escaped", "file", b"x")], "outside the archive"),
    ([("a/link", "sym", "../../out"), ("a/link/escaped", "file", b"x")], "outside the archive"),
    ([("hard", "hard", "../escaped")], "contains '..'"),
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
    with pytest.raises(DownloadError, match="goes through a link out of the target"):
        unpack(archive, target)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_links_inside_the_target_are_kept(tmp_path):
    archive = tar_with(tmp_path / "a.tar", ("d/real.jpg", "file", b"data"), ("d/soft.jpg", "sym", "real.jpg"),
                       ("d/hard.jpg", "hard", "d/real.jpg"))
    target = tmp_path / "target"
    unpack(archive, target)
    assert (target / "d" / "soft.jpg").read_bytes() == b"data" and (target / "d" / "soft.jpg").is_symlink()
    assert (target / "d" / "hard.jpg").read_bytes() == b"data"


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
    with pytest.raises(DownloadError, match="outside the archive"):
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


def test_archive_kind_from_the_name():
    assert [archive_kind(n) for n in ("a.zip", "b.tar.gz", "c.tgz", "d.tar")] == ["zip", "tar", "tar", "tar"]
    with pytest.raises(DownloadError, match="not a known archive type"):
        archive_kind("split.json")
