"""``pipeline download`` against hostile archives and hosts (issue 22): link chains out of the data root, bombs,
endless bodies, unreadable archives, Ctrl-C.

Each ends in one error line and exit code 1 (130 for Ctrl-C); nothing outside the data root changes (a victim
folder beside it is compared byte for byte), and nothing half-done is left inside it. The link chains and
Ctrl-C run the real ``python -m pipeline`` process; the rest run the real command in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from stages.extract.datasets import open_dataset
from stages.extract.download.staging import MARKER, STAGING
from tests.download.conftest import jpeg, sha256, small_split, staging_of, tar_bytes, write_manifest, zip_bytes
from tests.download.hostile import (MIB, hard_link, link_chain, stored_zip, sym_link, tar_gz_of_zeros, tar_of,
                                    zip_of_zeros)
from tests.reliability.helpers import ROOT, error_line

IMAGE = jpeg((200, 30, 60))


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def run_process(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``python -m pipeline`` in a child process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def tree_state(folder: Path) -> dict[str, object]:
    """Every path under ``folder``: a file's bytes, a link's target or 'folder', for a byte-for-byte comparison."""
    state: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        state[rel] = ("link", os.readlink(path)) if path.is_symlink() else "folder" if path.is_dir() else \
            path.read_bytes()
    return state


def fgvc_data() -> dict[str, bytes]:
    """The files of fgvc-aircraft-2013b's ``data/`` folder that extract reads (two variants, one image each split)."""
    files = {"variants.txt": b"707-320\nA300B4\n"}
    for number, split in enumerate(("train", "val", "test")):
        lines = []
        for offset, variant in enumerate(("707-320", "A300B4")):
            image = f"{1000000 + 2 * number + offset:07d}"
            files[f"images/{image}.jpg"] = IMAGE
            lines.append(f"{image} {variant}\n")
        files[f"images_variant_{split}.txt"] = "".join(lines).encode()
    return files


def plant_victim(folder: Path, files: dict[str, bytes]) -> dict[str, object]:
    """A folder outside the data root holding ``files``; returns its state to compare with later."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return tree_state(folder)


def leftovers(data: Path, key: str, dirname: str) -> list[Path]:
    """What a refused download left in the data root (nothing: no dataset folder, no staging)."""
    return [path for path in (data / dirname, data / STAGING / key) if os.path.lexists(path)]


@pytest.mark.parametrize("key, top, moved", [("fgvc_aircraft", "fgvc-aircraft-2013b", "data"),
                                             ("dtd", "dtd", "images")])
def test_a_link_chain_out_of_the_data_root_is_refused_and_the_victim_is_untouched(server, tmp_path, key, top, moved):
    """Issue 22, item 2: ``deep -> .``, ``u1 -> deep/..`` ... ``u12 -> u11/..``, then ``TOP -> u12/<victim>``: the
    layout step ``{"move": "TOP/<moved>", ...}`` moved the victim's files into the dataset and removed the folder
    (fgvc_aircraft with the built-in manifest, dtd with a user manifest without checksum). A rerun with the right
    archive then deleted what had been moved."""
    victim = tmp_path / "victim"  # beside the data root, not under it
    dtd_images = [f"banded/banded_000{n}.jpg" for n in (1, 2, 3)]
    files = fgvc_data() if key == "fgvc_aircraft" else {path: IMAGE for path in dtd_images}
    before = plant_victim(victim, {f"{moved}/{name}": data for name, data in files.items()})
    name = "fgvc-aircraft-2013b.tar.gz" if key == "fgvc_aircraft" else "dtd-r1.0.1.tar.gz"
    manifest = write_manifest(tmp_path / "m.json", {key: {"files": [
        {"url": server.add(f"/{name}", tar_of(link_chain(top, victim)))}]}})  # no checksum, as fgvc_aircraft has
    data = tmp_path / "data"

    refused = run_process("download", key, "--data-root", str(data), "--manifest", str(manifest))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = error_line(refused.stderr)
    assert f"{name}: refusing to unpack: member 'u1' leads outside the target folder" in line
    assert tree_state(victim) == before
    assert leftovers(data, key, "fgvc_aircraft" if key == "fgvc_aircraft" else "dtd") == []

    good = {f"{top}/{moved}/{name}": data for name, data in files.items()}
    server.add(f"/{name}", tar_bytes(good))
    if key == "dtd":  # a user manifest with a split file fitting the three images
        split_bytes = json.dumps(small_split({"banded": dtd_images})).encode()
        write_manifest(manifest, {key: {"files": [
            {"url": server.base + f"/{name}"},
            {"url": server.add("/split.json", split_bytes), "name": "split_zhou_DescribableTextures.json",
             "sha256": sha256(split_bytes)}],
            "steps": [{"extract": name}, {"move": "dtd/images", "to": "images"},
                      {"move": "split_zhou_DescribableTextures.json", "to": "split_zhou_DescribableTextures.json"}],
            "split": {"file": "split_zhou_DescribableTextures.json"}}})
    rerun = run_process("download", key, "--data-root", str(data), "--manifest", str(manifest))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert tree_state(victim) == before  # the rerun deleted nothing it did not create
    open_dataset(key, data).validate()


def test_a_hard_link_through_a_link_chain_copies_nothing_from_outside(server, tmp_path):
    """A hard link to a symbolic link leading out, or a hard link naming a path through the chain: refused."""
    victim = tmp_path / "victim"
    before = plant_victim(victim, {"secret.txt": b"the secret"})
    data = tmp_path / "data"
    outside = str(victim / "secret.txt").lstrip("/")
    image = "fgvc-aircraft-2013b/data/images/1000000.jpg"
    for extra in ([sym_link("leak", f"u12/{outside}"), hard_link(image, "leak")], [hard_link(image, f"u12/{outside}")]):
        members = link_chain("top", victim)[:-1] + extra
        archive = tar_of(members, {f"fgvc-aircraft-2013b/data/{name}": content for name, content in fgvc_data().items()
                                   if name != "images/1000000.jpg"})
        manifest = write_manifest(tmp_path / "m.json", {"fgvc_aircraft": {"files": [
            {"url": server.add("/fgvc-aircraft-2013b.tar.gz", archive)}]}})
        result = run("download", "fgvc_aircraft", "--data-root", str(data), "--manifest", str(manifest))
        assert result.exit_code == 1
        assert "refusing to unpack: member 'u1' leads outside the target folder" in error_line(result.output)
        assert tree_state(victim) == before and leftovers(data, "fgvc_aircraft", "fgvc_aircraft") == []
        assert not [path for path in tmp_path.rglob("*") if path.is_file() and path.read_bytes() == b"the secret"
                    and path != victim / "secret.txt"]


def test_staging_not_made_by_the_tool_is_neither_used_nor_emptied(server, tmp_path):
    data = tmp_path / "data"
    mine = data / STAGING / "dtd"
    before = plant_victim(mine, {"downloads/notes.txt": b"mine", "unpacked/dtd/images/a.jpg": IMAGE})
    manifest = write_manifest(tmp_path / "m.json", {"dtd": {"files": [{"url": server.add("/d.tar.gz", b"x")}]}})
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert f"{mine} was not made by `pipeline download` (it has no {MARKER} file)" in error_line(result.output)
    assert tree_state(mine) == before and server.requests == []


@pytest.mark.parametrize("planted, refetch", [("unpacked", True), ("unpacked/dtd", True), ("unpacked/dtd", False),
                                              ("staging root", False)])
def test_layout_steps_never_move_or_delete_through_a_link(server, tmp_path, planted, refetch):
    """A link put into the staging folder by anything else (this tool makes none) is refused, never followed nor
    removed: not by the move steps, not by the clean-up that a new download of the archive starts."""
    victim = tmp_path / "victim"
    before = plant_victim(victim, {"images/banded/banded_0001.jpg": IMAGE, "dtd/images/banded/banded_0001.jpg": IMAGE})
    data = tmp_path / "data"
    archive = tar_bytes({"dtd/images/banded/banded_0001.jpg": IMAGE})
    manifest = write_manifest(tmp_path / "m.json", {"dtd": {"files": [
        {"url": server.add("/dtd-r1.0.1.tar.gz", archive), "sha256": sha256(archive)}]}})
    if planted == "staging root":
        (data / STAGING).mkdir(parents=True)
        (data / STAGING / "dtd").symlink_to(victim)
    else:
        staging = staging_of(data, "dtd")
        (staging / "downloads").mkdir()
        (staging / "downloads" / "dtd-r1.0.1.tar.gz").write_bytes(b"an older release" if refetch else archive)
        (staging / ".unpacked-dtd-r1.0.1.tar.gz").touch()
        link = staging / planted
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(victim if planted == "unpacked" else victim / "dtd")
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "is a symbolic link, which `pipeline download` never makes" in error_line(result.output)
    assert tree_state(victim) == before and not (data / "dtd").exists()
    assert os.path.islink(data / STAGING / "dtd" if planted == "staging root" else staging / planted)


def test_an_endless_body_stops_at_the_manifest_bound(server, tmp_path):
    """Issue 22, item 3: no Content-Length, ``approx_bytes: 1000``: the transfer stops past 2 x 1000 + 1 MiB."""
    server.endless.add("/endless.zip")
    manifest = write_manifest(tmp_path / "m.json", {"ucf101": {"files": [
        {"url": server.base + "/endless.zip", "approx_bytes": 1000}]}})
    data = tmp_path / "data"
    result = run("download", "ucf101", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    line = error_line(result.output)
    assert line.startswith("error: UCF-101-midframes.zip: the host sent more than the 1.0 MiB allowed (2 x the "
                           "manifest's approx_bytes 1000 + 1.0 MiB; set PIPELINE_DOWNLOAD_MAX_BYTES if you trust")
    assert server.sent["/endless.zip"] < 16 * MIB  # the client stopped reading (socket buffers hold a few MiB)
    assert leftovers(data, "ucf101", "ucf101") == [] and not (data / STAGING).exists()


def small_eurosat(server, tmp_path: Path, padding: bytes = b"") -> Path:
    """A three-image EuroSAT whose split file is served too; ``padding`` is an extra member that makes it large."""
    paths = {cls: [f"{cls}/{cls}_{n}.jpg" for n in range(1, 4)] for cls in ("Forest", "River")}
    members = {f"2750/{p}": IMAGE for group in paths.values() for p in group}
    archive = zip_bytes({**members, **({"2750.bin": padding} if padding else {})})
    split = json.dumps(small_split(paths)).encode()
    return write_manifest(tmp_path / "m.json", {"eurosat": {
        "files": [{"url": server.add("/EuroSAT.zip", archive), "sha256": sha256(archive), "approx_bytes": 1000},
                  {"url": server.add("/split.json", split), "name": "split_zhou_EuroSAT.json",
                   "sha256": sha256(split)}],
        "steps": [{"extract": "EuroSAT.zip"}, {"move": "2750", "to": "2750"},
                  {"move": "split_zhou_EuroSAT.json", "to": "split_zhou_EuroSAT.json"}],
        "split": {"file": "split_zhou_EuroSAT.json"}}})


def test_an_announced_size_past_the_bound_is_refused_unless_the_user_raises_it(server, tmp_path, monkeypatch):
    manifest = small_eurosat(server, tmp_path, padding=os.urandom(3 * MIB))
    data = tmp_path / "data"
    refused = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert refused.exit_code == 1
    assert "EuroSAT.zip: 127.0.0.1" in error_line(refused.output) and "announces 3.0 MiB, more than the 1.0 MiB" \
        in refused.output and "PIPELINE_DOWNLOAD_MAX_BYTES" in refused.output
    assert leftovers(data, "eurosat", "eurosat") == []
    monkeypatch.setenv("PIPELINE_UNPACK_MAX_BYTES", "1K")  # and an unpack bound below the archive's 6 files
    monkeypatch.setenv("PIPELINE_DOWNLOAD_MAX_BYTES", "4M")
    small = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert small.exit_code == 1 and "would pass 1.0 KiB (raise PIPELINE_UNPACK_MAX_BYTES" in small.output
    assert leftovers(data, "eurosat", "eurosat") == []
    monkeypatch.delenv("PIPELINE_UNPACK_MAX_BYTES")
    trusted = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert trusted.exit_code == 0, trusted.output
    open_dataset("eurosat", data).validate()


@pytest.mark.parametrize("key, name, build, limit", [
    ("fgvc_aircraft", "fgvc-aircraft-2013b.tar.gz", lambda: tar_gz_of_zeros("fgvc-aircraft-2013b/data", 2048 * MIB),
     "105.1 MiB"),
    ("fgvc_aircraft", "fgvc-aircraft-2013b.tar.gz",
     lambda: tar_gz_of_zeros("fgvc-aircraft-2013b/data", 1024 * MIB, members=256), "85.0 MiB"),
    ("imagenet_sketch", "ImageNet-Sketch.zip", lambda: zip_of_zeros("sketch/zeros.bin", 1024 * MIB), "84.3 MiB"),
])
def test_a_decompression_bomb_is_refused_and_leaves_nothing(server, tmp_path, key, name, build, limit):
    """Issue 22, item 3: a 2 MB tar.gz of zeros (2 GiB, in one file or in 256), a 1 MB zip (1 GiB)."""
    manifest = write_manifest(tmp_path / "m.json", {key: {"files": [{"url": server.add(f"/{name}", build())}]}})
    data = tmp_path / "data"
    result = run("download", key, "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    line = error_line(result.output)
    assert f"error: {name}: refusing to unpack: the unpacked files would pass {limit} (20 x the" in line
    assert "raise PIPELINE_UNPACK_MAX_RATIO if you trust the source" in line and "nothing fetched" in line
    assert list(data.iterdir()) == []  # no dataset folder, no staging, no partial file


def test_a_bomb_nested_in_an_archive_counts_against_what_was_downloaded(server, tmp_path):
    """caltech-101.zip holds a tar.gz that the layout unpacks next: the budget is the dataset's, 20 x the bytes
    downloaded, not 20 x the inner archive (a 200 KB zip holding a 21 MB tar.gz of 20 GiB of zeros)."""
    inner = tar_gz_of_zeros("101_ObjectCategories/faces", 20 * 1024 * MIB, members=2560)
    outer = zip_bytes({"caltech-101/101_ObjectCategories.tar.gz": inner}, zipfile.ZIP_DEFLATED)
    assert len(outer) < 400_000 < 20 * MIB < len(inner)
    manifest = write_manifest(tmp_path / "m.json", {"caltech101": {"files": [
        {"url": server.add("/caltech-101.zip", outer)}]}})
    data = tmp_path / "data"
    result = run("download", "caltech101", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    line = error_line(result.output)
    bound = 20 * len(outer) + 64 * MIB
    assert f"101_ObjectCategories.tar.gz: refusing to unpack: the unpacked files would pass {bound / MIB:.1f} MiB " \
           f"(20 x the {len(outer) / 1024:.1f} KiB downloaded + 64.0 MiB" in line
    assert list(data.iterdir()) == []


@pytest.mark.parametrize("key, name, archive, why", [
    ("ucf101", "UCF-101-midframes.zip", stored_zip("UCF-101-midframes/a.jpg", IMAGE, flags=0x1), "is encrypted"),
    ("ucf101", "UCF-101-midframes.zip", stored_zip("UCF-101-midframes/a.jpg", IMAGE, method=99),
     "uses compression method 99"),
    ("fgvc_aircraft", "fgvc-aircraft-2013b.tar.xz",
     tar_bytes({"fgvc-aircraft-2013b/data/variants.txt": os.urandom(5000)}, mode="w:xz")[:-100],
     "the archive is damaged"),
    ("fgvc_aircraft", "fgvc-aircraft-2013b.tar.gz",
     (lambda good: good[:-8] + bytes(4) + good[-4:])(tar_bytes({"fgvc-aircraft-2013b/data/variants.txt": b"707\n"})),
     "the archive is damaged (CRC check failed"),
])
def test_an_archive_that_cannot_be_read_is_one_line(server, tmp_path, key, name, archive, why):
    """Issue 22, item 6: encrypted zip, unknown zip method, truncated tar.xz, a tar.gz whose gzip CRC fails."""
    manifest = write_manifest(tmp_path / "m.json", {key: {"files": [{"url": server.add(f"/{name}", archive),
                                                                     "name": name}], "steps": [{"extract": name}]}})
    data = tmp_path / "data"
    result = run("download", key, "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert why in error_line(result.output)
    assert list(data.iterdir()) == []


def test_ctrl_c_during_a_download_says_what_was_kept_and_the_rerun_resumes(server, tmp_path):
    """Issue 22, item 8: Ctrl-C said "nothing was changed" while the .part file was kept."""
    archive = tar_bytes({"dtd/images/banded/banded_0001.jpg": IMAGE, "dtd/padding.bin": os.urandom(2 * MIB)})
    split = json.dumps({"train": [["banded/banded_0001.jpg", 0, "banded"]], "val": [], "test": []})
    manifest = write_manifest(tmp_path / "m.json", {"dtd": {
        "files": [{"url": server.add("/dtd-r1.0.1.tar.gz", archive), "sha256": sha256(archive)},
                  {"url": server.add("/split.json", split.encode()), "name": "split_zhou_DescribableTextures.json"}],
        "steps": [{"extract": "dtd-r1.0.1.tar.gz"}, {"move": "dtd/images", "to": "images"},
                  {"move": "split_zhou_DescribableTextures.json", "to": "split_zhou_DescribableTextures.json"}],
        "split": {"file": "split_zhou_DescribableTextures.json"}}})
    server.stall_next["/dtd-r1.0.1.tar.gz"] = MIB + 5000  # the client writes whole 1 MiB reads: one is on disk
    data = tmp_path / "data"
    partial = data / STAGING / "dtd" / "downloads" / "dtd-r1.0.1.tar.gz.part"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-m", "pipeline", "download", "dtd", "--data-root", str(data),
                              "--manifest", str(manifest)], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (partial.is_file() and partial.stat().st_size == MIB) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert partial.stat().st_size == MIB, child.kill()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    line = error_line(stderr)
    assert line == (f"error: interrupted; dtd: kept {partial} (1.0 MiB received; the rerun fetches only the rest) — "
                    f"rerun the same command to resume ({data / 'dtd'} is only created once complete)")
    assert partial.stat().st_size == MIB
    server.released.set()
    rerun = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert rerun.exit_code == 0, rerun.output
    assert ("/dtd-r1.0.1.tar.gz", f"bytes={MIB}-") in server.requests
    open_dataset("dtd", data).validate()
