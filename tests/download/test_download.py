"""``pipeline download`` against a real HTTP server on 127.0.0.1, with archives in each dataset's published layout.

Every URL the tests use points at the local server (``--manifest`` / ``--mirror``): no test reaches the internet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cache import FeatureCache
from pipeline.cli import cli
from stages.extract.datasets import open_dataset
from stages.extract.download import DownloadError, DownloadRequest, download
from stages.extract.download.fetch import Fetcher
from stages.extract.download.run import STAGING
from tests.conftest import TINY_MODEL_CONFIG
from tests.download.conftest import (bundled_split, jpeg, listed, sha256, small_split, staging_of, tar_bytes,
                                     write_manifest, zip_bytes)

IMAGE = jpeg()


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def dtd_archive(paths: list[str]) -> bytes:
    """dtd-r1.0.1.tar.gz as published: dtd/images/<class>/<file>, plus dtd/labels/ and dtd/imdb/."""
    members = {f"dtd/images/{path}": IMAGE for path in paths}
    members["dtd/labels/labels_joint_anno.txt"] = b"banded/banded_0002.jpg banded\n"
    members["dtd/imdb/imdb.mat"] = b"MATLAB 5.0"
    return tar_bytes(members)


def caltech_archive(paths: list[str]) -> bytes:
    """caltech-101.zip as published on CaltechDATA: a zip holding 101_ObjectCategories.tar.gz and Annotations.tar."""
    images = {f"101_ObjectCategories/{path}": IMAGE for path in paths}
    images["101_ObjectCategories/BACKGROUND_Google/image_0001.jpg"] = IMAGE
    return zip_bytes({"caltech-101/101_ObjectCategories.tar.gz": tar_bytes(images),
                      "caltech-101/Annotations.tar": tar_bytes({"Annotations/README": b"x"}, mode="w"),
                      "caltech-101/show_annotation.m": b"% matlab"})


def pets_archive(paths: list[str]) -> bytes:
    """images.tar.gz as published by Oxford-IIIT Pet: a flat images/ folder."""
    return tar_bytes({f"images/{path}": IMAGE for path in paths})


def eurosat_archive(paths: list[str]) -> bytes:
    """EuroSAT.zip (RGB) as published: 2750/<Class>/<Class>_<n>.jpg."""
    return zip_bytes({f"2750/{path}": IMAGE for path in paths})


def files_override(server, key: str, name: str, data: bytes, where: str = "/official/") -> dict:
    """The smallest manifest override: the built-in file's URL and checksum replaced by a local copy's."""
    return {key: {"files": [{"url": server.add(where + name, data), "sha256": sha256(data)}]}}


def test_dtd_builtin_layout_and_bundled_split_then_second_run_fetches_nothing(server, tmp_path):
    split = bundled_split("split_zhou_DescribableTextures.json")
    archive = dtd_archive(listed(split))
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", archive))
    data = tmp_path / "data"

    first = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert first.exit_code == 0, first.output
    assert "dtd: ready at" in first.output and "5640 images verified" in first.output
    reader = open_dataset("dtd", data)
    reader.validate()  # the layout extract reads, every listed image present
    assert [len(reader.items(s)) for s in ("train", "val", "test")] == [2820, 1128, 1692]
    assert json.loads((data / "dtd" / "split_zhou_DescribableTextures.json").read_text()) == split
    assert not (data / STAGING).exists()  # archives and unpacked files removed
    assert [path for path, _ in server.requests] == ["/official/dtd-r1.0.1.tar.gz"]

    second = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert second.exit_code == 0, second.output
    assert "in place" in second.output and "nothing to fetch" in second.output
    assert len(server.requests) == 1  # nothing fetched the second time


def test_caltech_zip_from_a_mirror_with_a_nested_archive(server, tmp_path):
    """Zip holding a tar.gz (CaltechDATA's layout); the file is found on the mirror, by name, before the URL."""
    split = bundled_split("split_zhou_Caltech101.json")
    archive = caltech_archive(listed(split))
    manifest = write_manifest(tmp_path / "m.json", {"caltech101": {"files": [
        {"url": server.base + "/official/caltech-101.zip", "sha256": sha256(archive)}]}})
    server.add("/mirror/caltech-101.zip", archive)  # only the mirror has it; /official/ answers 404
    data = tmp_path / "data"
    result = run("download", "caltech101", "--data-root", str(data), "--manifest", str(manifest),
                 "--mirror", server.base + "/mirror", "--keep-archives")
    assert result.exit_code == 0, result.output
    assert [path for path, _ in server.requests] == ["/mirror/caltech-101.zip"]
    open_dataset("caltech101", data).validate()
    folder = data / "caltech-101"
    assert sorted(p.name for p in folder.iterdir()) == ["101_ObjectCategories", "split_zhou_Caltech101.json"]
    assert (folder / "101_ObjectCategories" / "BACKGROUND_Google").is_dir()  # extra folders are harmless
    kept = data / STAGING / "caltech101" / "downloads" / "caltech-101.zip"
    assert kept.read_bytes() == archive and "archives kept" in result.output
    assert not (data / STAGING / "caltech101" / "unpacked").exists()


def test_oxford_pets_flat_folder(server, tmp_path):
    split = bundled_split("split_zhou_OxfordPets.json")
    archive = pets_archive(listed(split))
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "oxford_pets", "images.tar.gz", archive))
    data = tmp_path / "data"
    result = run("download", "oxford_pets", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 0, result.output
    reader = open_dataset("oxford_pets", data)
    reader.validate()
    assert len(reader.classnames) == 37 and (data / "oxford_pets" / "images" / listed(split)[0]).is_file()


def eurosat_with_served_split(server, tmp_path, cut_at: int | None = None) -> tuple[Path, dict, bytes]:
    """A small EuroSAT (zip, 2750/) whose split file is fetched from the server with a checksum (Food101's form)."""
    paths = {cls: [f"{cls}/{cls}_{n}.jpg" for n in range(1, 7)] for cls in ("AnnualCrop", "Forest", "River")}
    split = small_split(paths)
    archive = eurosat_archive([p for group in paths.values() for p in group])
    split_bytes = json.dumps(split).encode()
    if cut_at is not None:
        server.cut_next["/official/EuroSAT.zip"] = cut_at
    manifest = write_manifest(tmp_path / "m.json", {"eurosat": {
        "files": [{"url": server.add("/official/EuroSAT.zip", archive), "sha256": sha256(archive)},
                  {"url": server.add("/coop/split_zhou_EuroSAT.json", split_bytes), "sha256": sha256(split_bytes)}],
        "steps": [{"extract": "EuroSAT.zip"}, {"move": "2750", "to": "2750"},
                  {"move": "split_zhou_EuroSAT.json", "to": "split_zhou_EuroSAT.json"}],
        "split": {"file": "split_zhou_EuroSAT.json"}}})
    return manifest, split, archive


def test_extract_download_runs_the_whole_path_to_a_finished_cache(server, tmp_path):
    manifest, split, _ = eurosat_with_served_split(server, tmp_path)
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    fetched = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert fetched.exit_code == 0, fetched.output
    result = run("extract", "--download", "--dataset", "eurosat", "--data-root", str(data), "--model",
                 str(TINY_MODEL_CONFIG), "--pretrained", "none", "--cache-dir", str(cache_dir), "--batch-size", "8",
                 "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "eurosat: in place" in result.output  # --download verified it and fetched nothing more
    assert len(server.requests) == 2
    cache = FeatureCache(cache_dir / "eurosat" / "tiny-test-clip__none.h5")
    assert cache.classes == ["AnnualCrop", "Forest", "River"]
    for name, rows in split.items():
        assert cache.split_paths(name) == [row[0] for row in rows]
        assert cache.split_labels(name).tolist() == [row[1] for row in rows]
        assert cache.features(name).shape == (len(rows), 32)


def test_extract_download_fetches_when_missing(server, tmp_path, monkeypatch):
    """``pipeline extract --download`` with the dataset absent: fetched, laid out, then encoded in one command."""
    manifest, split, _ = eurosat_with_served_split(server, tmp_path)
    monkeypatch.setenv("PIPELINE_MANIFEST", str(manifest))
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    result = run("extract", "--download", "--dataset", "eurosat", "--data-root", str(data), "--model",
                 str(TINY_MODEL_CONFIG), "--pretrained", "none", "--cache-dir", str(cache_dir), "--batch-size", "8",
                 "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "eurosat: ready at" in result.output
    cache = FeatureCache(cache_dir / "eurosat" / "tiny-test-clip__none.h5")
    assert cache.split_paths("test") == [row[0] for row in split["test"]]


def test_extract_download_refuses_datasets_without_a_download(tmp_path):
    result = run("extract", "--download", "--dataset", "digits", "--data-root", str(tmp_path))
    assert result.exit_code == 2 and "nothing to download" in result.output


def test_connection_cut_mid_file_is_resumed_with_a_range_request(server, tmp_path):
    manifest, split, archive = eurosat_with_served_split(server, tmp_path, cut_at=1000)
    data = tmp_path / "data"
    lines: list[str] = []
    fetcher = Fetcher(echo=lines.append, backoff=0.01)
    [outcome] = download(DownloadRequest(("eurosat",), data, manifest=manifest, keep_archives=True),
                         echo=lines.append, fetcher=fetcher)
    assert outcome.status == "downloaded"
    assert ("/official/EuroSAT.zip", "bytes=1000-") in server.ranged()
    assert [p for p, _ in server.requests].count("/official/EuroSAT.zip") == 2
    assert (data / STAGING / "eurosat" / "downloads" / "EuroSAT.zip").read_bytes() == archive
    open_dataset("eurosat", data).validate()
    assert any("resumed after" in line for line in lines)


def test_a_killed_download_resumes_from_its_part_file(server, tmp_path):
    """A .part left by a killed run: the next run asks only for the rest."""
    split = bundled_split("split_zhou_DescribableTextures.json")
    archive = dtd_archive(listed(split))
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", archive))
    data = tmp_path / "data"
    downloads = staging_of(data, "dtd") / "downloads"
    downloads.mkdir()
    (downloads / "dtd-r1.0.1.tar.gz.part").write_bytes(archive[:5000])
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 0, result.output
    assert server.requests == [("/official/dtd-r1.0.1.tar.gz", "bytes=5000-")]
    open_dataset("dtd", data).validate()


def test_wrong_checksum_is_refused_and_nothing_is_unpacked(server, tmp_path):
    archive = dtd_archive(["banded/banded_0001.jpg"])
    manifest = write_manifest(tmp_path / "m.json", {"dtd": {"files": [
        {"url": server.add("/official/dtd-r1.0.1.tar.gz", archive), "md5": "0" * 32}]}})
    data = tmp_path / "data"
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: dtd-r1.0.1.tar.gz: md5 mismatch (expected 000")
    assert "nothing was unpacked" in message and "--mirror" in message and "Traceback" not in result.output
    staging = data / STAGING / "dtd"
    assert not (data / "dtd").exists() and not (staging / "unpacked").exists()
    assert list((staging / "downloads").iterdir()) == []  # the bad file was deleted, no .part left to resume


@pytest.mark.parametrize("member", ["../escaped.txt", "dtd/../../escaped.txt", "/tmp/escaped-abs.txt"])
def test_archive_member_leaving_the_target_is_refused(server, tmp_path, member):
    archive = tar_bytes({"dtd/images/banded/banded_0001.jpg": IMAGE, member: b"owned"})
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", archive))
    data = tmp_path / "data"
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "refusing to unpack" in result.output and repr(member) in result.output
    assert not (data / "dtd").exists()
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped-abs.txt").exists()


def test_free_space_is_checked_before_fetching(server, tmp_path):
    split = bundled_split("split_zhou_DescribableTextures.json")
    archive = dtd_archive(listed(split)[:3])
    manifest = write_manifest(tmp_path / "m.json", {"dtd": {"files": [
        {"url": server.add("/official/dtd-r1.0.1.tar.gz", archive), "sha256": sha256(archive),
         "approx_bytes": len(archive)}]}})
    fetcher = Fetcher(echo=lambda _: None, free_bytes=lambda path: 100)
    with pytest.raises(DownloadError, match=r"not enough free space .* 100 B free"):
        download(DownloadRequest(("dtd",), tmp_path / "data", manifest=manifest), echo=lambda _: None, fetcher=fetcher)
    assert server.requests == []


def test_archive_that_does_not_match_the_split_says_how_many_images_are_missing(server, tmp_path):
    split = bundled_split("split_zhou_DescribableTextures.json")
    archive = dtd_archive(listed(split)[7:])
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", archive))
    data = tmp_path / "data"
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "7 of 5640 listed images are missing" in result.output and "split_zhou_DescribableTextures.json" in result.output
    assert not (data / "dtd").exists()  # nothing appears under the real name


def test_unreachable_host_names_the_mirror_option(tmp_path):
    manifest = write_manifest(tmp_path / "m.json", {"dtd": {"files": [
        {"url": "http://127.0.0.1:9/dtd-r1.0.1.tar.gz", "md5": "0" * 32}]}})
    fetcher = Fetcher(echo=lambda _: None, backoff=0.01, attempts=2)
    with pytest.raises(DownloadError) as err:
        download(DownloadRequest(("dtd",), tmp_path / "data", manifest=manifest), echo=lambda _: None, fetcher=fetcher)
    message = str(err.value)
    assert "127.0.0.1:9" in message and "unreachable" in message and "--mirror" in message and "\n" not in message


def test_incomplete_folder_in_place_is_reported_not_fetched(server, tmp_path):
    data = tmp_path / "data"
    (data / "dtd" / "images").mkdir(parents=True)
    split = {"train": [["banded/banded_0001.jpg", 0, "banded"]], "val": [], "test": []}
    (data / "dtd" / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", b"x"))
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "exists but is not complete" in result.output and "1 of 1 listed images are missing" in result.output
    assert server.requests == []


def test_imagenet_says_to_bring_your_own_copy_in_one_line(tmp_path):
    result = run("download", "imagenet", "--data-root", str(tmp_path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "bring your own copy" in lines[0] and str(tmp_path / "imagenet") in lines[0]


def test_dry_run_lists_sizes_and_sources_and_fetches_nothing(server, tmp_path):
    manifest, _, archive = eurosat_with_served_split(server, tmp_path)
    data = tmp_path / "data"
    result = run("download", "eurosat", "sun397", "--data-root", str(data), "--manifest", str(manifest), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would fetch 2 file(s)" in result.output and str(data / "eurosat") in result.output
    assert "SUN397.tar.gz: about 34.5 GiB, md5, from http://vision.princeton.edu" in result.output
    assert "split_zhou_SUN397.json: about" in result.output and "no published checksum" in result.output
    assert server.requests == [] and not data.exists()


def test_bad_arguments_and_manifests_are_one_line_errors(tmp_path):
    unknown = run("download", "mnist", "--data-root", str(tmp_path))
    assert unknown.exit_code == 2 and "unknown dataset 'mnist'" in unknown.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    broken = run("download", "dtd", "--data-root", str(tmp_path), "--manifest", str(bad))
    assert broken.exit_code == 1 and "is not valid JSON" in broken.output and "Traceback" not in broken.output
    wrong = write_manifest(tmp_path / "w.json", {"dtd": {"files": [{"url": "ftp://x/y.tar", "md5": "abc"}]}})
    refused = run("download", "dtd", "--data-root", str(tmp_path), "--manifest", str(wrong))
    assert refused.exit_code == 1 and "must be an http(s):// or file:// URL" in refused.output


def test_interrupted_unpack_resumes_without_fetching_again(server, tmp_path):
    """Killed while unpacking: the verified archive is kept, the files already out are kept, the rest follow."""
    split = bundled_split("split_zhou_DescribableTextures.json")
    paths = listed(split)
    archive = dtd_archive(paths)
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", archive))
    data = tmp_path / "data"
    staging = staging_of(data, "dtd")
    (staging / "downloads").mkdir()
    (staging / "downloads" / "dtd-r1.0.1.tar.gz").write_bytes(archive)  # fetched and verified before the kill
    for path in paths[:100]:  # the first 100 files were out when the run was killed
        (staging / "unpacked" / "dtd" / "images" / path).parent.mkdir(parents=True, exist_ok=True)
        (staging / "unpacked" / "dtd" / "images" / path).write_bytes(IMAGE)
    (staging / "unpacked" / "dtd" / "images" / (paths[100] + ".part")).write_bytes(b"half")
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 0, result.output
    assert server.requests == []
    open_dataset("dtd", data).validate()
    assert not list((data / "dtd").rglob("*.part"))


def test_a_web_page_instead_of_the_file_is_refused(server, tmp_path):
    """Hosts such as Google Drive answer quota or login pages with HTTP 200: never taken for the archive."""
    page = b"<html><body>Quota exceeded</body></html>"
    url = server.add("/drive/UCF-101-midframes.zip", page)
    server.types["/drive/UCF-101-midframes.zip"] = "text/html"
    manifest = write_manifest(tmp_path / "m.json", {"ucf101": {"files": [{"url": url}]}})
    result = run("download", "ucf101", "--data-root", str(tmp_path / "data"), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "answered with a web page, not the file" in result.output and "--mirror" in result.output
    assert not (tmp_path / "data" / "ucf101").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_a_one_line_error_and_keeps_what_was_fetched(server, tmp_path):
    """The kernel's own ENOSPC (writes to /dev/full) while fetching: one line naming the file, no traceback."""
    manifest = write_manifest(tmp_path / "m.json", files_override(server, "dtd", "dtd-r1.0.1.tar.gz", b"x" * 5000))
    data = tmp_path / "data"
    downloads = staging_of(data, "dtd") / "downloads"
    downloads.mkdir()
    (downloads / "dtd-r1.0.1.tar.gz.part").symlink_to("/dev/full")
    result = run("download", "dtd", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: disk full while writing") and "dtd-r1.0.1.tar.gz.part" in last
    assert "free some space" in last and not (data / "dtd").exists()


def test_a_local_folder_works_as_a_mirror(server, tmp_path):
    """A lab copy in a folder (--mirror DIR) is used by file name; what it lacks comes from the manifest URL."""
    manifest, _, archive = eurosat_with_served_split(server, tmp_path)
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "EuroSAT.zip").write_bytes(archive)
    data = tmp_path / "data"
    result = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest), "--mirror", str(lab))
    assert result.exit_code == 0, result.output
    assert server.requests == [("/coop/split_zhou_EuroSAT.json", None)]
    open_dataset("eurosat", data).validate()


def test_a_kept_archive_that_no_longer_matches_the_manifest_is_fetched_again(server, tmp_path):
    manifest, _, archive = eurosat_with_served_split(server, tmp_path)
    data = tmp_path / "data"
    downloads = staging_of(data, "eurosat") / "downloads"
    downloads.mkdir()
    (downloads / "EuroSAT.zip").write_bytes(b"an older release")
    stale = data / STAGING / "eurosat" / "unpacked" / "2750" / "Stale" / "Stale_1.jpg"  # unpacked from it
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (data / STAGING / "eurosat" / ".unpacked-EuroSAT.zip").touch()
    result = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 0, result.output
    assert "does not match the manifest's checksum; fetching it again" in result.output
    assert ("/official/EuroSAT.zip", None) in server.requests
    open_dataset("eurosat", data).validate()
    assert not (data / "eurosat" / "2750" / "Stale").exists()  # nothing from the old archive's unpacking


def test_a_second_process_on_the_same_dataset_is_refused(server, tmp_path):
    from cache.lock import WriteLock

    manifest, _, _ = eurosat_with_served_split(server, tmp_path)
    data = tmp_path / "data"
    with WriteLock(data / STAGING / "eurosat"):  # what a running `pipeline download eurosat` holds
        result = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert result.exit_code == 1 and "another `pipeline download` is laying it out" in result.output
    assert server.requests == []
    again = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest))
    assert again.exit_code == 0, again.output
    assert not (data / STAGING).exists()


def test_a_bad_copy_on_a_mirror_falls_back_to_the_published_url(server, tmp_path):
    manifest, _, archive = eurosat_with_served_split(server, tmp_path)
    server.add("/mirror/EuroSAT.zip", archive[:-10] + b"0123456789")  # same size, wrong bytes
    data = tmp_path / "data"
    result = run("download", "eurosat", "--data-root", str(data), "--manifest", str(manifest),
                 "--mirror", server.base + "/mirror")
    assert result.exit_code == 0, result.output
    assert "sha256 mismatch" in result.output and "trying the next location" in result.output
    assert ("/official/EuroSAT.zip", None) in server.requests
    open_dataset("eurosat", data).validate()


def test_the_offline_guard_stops_a_test_that_would_reach_the_internet(tmp_path):
    """The guard above every test here: the built-in manifest's real URL is never contacted from CI."""
    fetcher = Fetcher(echo=lambda _: None, attempts=1)
    with pytest.raises(AssertionError, match="tests must stay offline"):
        download(DownloadRequest(("eurosat",), tmp_path / "data"), echo=lambda _: None, fetcher=fetcher)
