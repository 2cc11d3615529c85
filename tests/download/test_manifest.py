"""The built-in manifest is well formed and honest about checksums; user manifests merge over it."""

from __future__ import annotations

import hashlib
import json
import lzma
from importlib import resources

import pytest

from stages.extract.datasets import DATASETS
from stages.extract.datasets.coop import COOP_LAYOUTS
from stages.extract.datasets.shifts import SHIFT_LAYOUTS
from stages.extract.download import DownloadError, load_manifest
from stages.extract.download.manifest import merge_entry
from stages.extract.download.run import DOWNLOADABLE

MANIFEST = load_manifest()


def test_every_benchmark_and_shift_has_an_entry_in_the_layout_extract_reads():
    assert sorted(MANIFEST) == sorted(DOWNLOADABLE) == sorted(k for k in DATASETS if k not in ("folder", "digits"))
    for key, layout in COOP_LAYOUTS.items():
        assert MANIFEST[key].dirname == layout.dirname and MANIFEST[key].split.file == layout.split_file
    for key, layout in SHIFT_LAYOUTS.items():
        assert MANIFEST[key].dirname == layout.dirname
    assert MANIFEST["fgvc_aircraft"].dirname == "fgvc_aircraft"


def test_every_file_has_a_published_checksum_with_its_source_or_says_why_not():
    for entry in MANIFEST.values():
        for item in entry.files:
            assert item.url.startswith(("https://", "http://"))
            if item.checksums:
                assert item.checksum_source, f"{entry.key}/{item.name}: checksum without its source"
            else:
                assert item.no_checksum and "verified" in item.no_checksum, f"{entry.key}/{item.name}"


def test_every_extract_step_names_a_fetched_file_or_an_earlier_unpacked_one():
    for entry in MANIFEST.values():
        names = {item.name for item in entry.files}
        for step in entry.steps:
            if step.kind == "extract" and "/" not in step.source:
                assert step.source in names, (entry.key, step)


def test_bundled_splits_match_their_recorded_sha256_and_carry_coop_licence():
    folder = resources.files("stages.extract.download").joinpath("splits")
    bundled = [entry.split for entry in MANIFEST.values() if entry.split and entry.split.bundled]
    assert len(bundled) == 7
    for split in bundled:
        text = lzma.decompress(folder.joinpath(split.bundled).read_bytes())
        assert hashlib.sha256(text).hexdigest() == split.sha256
        assert set(json.loads(text)) == {"train", "val", "test"}
    licence = folder.joinpath("LICENSE-CoOp.txt").read_text()
    assert "MIT License" in licence and "Kaiyang Zhou" in licence


def test_imagenet_is_bring_your_own():
    assert MANIFEST["imagenet"].files == () and "{folder}" in MANIFEST["imagenet"].bring_your_own


def test_user_file_replaces_url_and_checksum_and_keeps_the_built_in_name(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"dtd": {"files": [{"url": "https://lab.example/x/dtd.tgz", "sha256": "a" * 64}]}}))
    entry = load_manifest(path, DOWNLOADABLE)["dtd"]
    [item] = entry.files
    assert (item.url, item.name, item.sha256, item.md5) == ("https://lab.example/x/dtd.tgz", "dtd-r1.0.1.tar.gz",
                                                            "a" * 64, None)
    assert entry.steps == MANIFEST["dtd"].steps and entry.split == MANIFEST["dtd"].split


def test_merge_keeps_other_fields():
    merged = merge_entry({"dirname": "d", "files": [{"url": "u", "name": "n"}]}, {"files": [{"url": "v"}]})
    assert merged == {"dirname": "d", "files": [{"url": "v", "name": "n"}]}


@pytest.mark.parametrize("entry, message", [
    ({"files": [{"url": "https://x/a.tar", "md5": "xyz"}]}, "is not a md5 hex digest"),
    ({"files": [{"url": "https://x/a.tar", "size": 3}]}, "file field 'size' is unknown"),
    ({"steps": [{"extract": "../a.tar"}]}, "with relative paths"),
    ({"steps": [{"move": "a", "to": "/etc"}]}, "with relative paths"),
    ({"dirname": "../up"}, "'dirname' must be a plain folder name"),
    ({"files": [{"url": "https://x/a.tar.gz"}, {"url": "https://x/"}]}, "give .name."),
])
def test_bad_user_entries_are_named(tmp_path, entry, message):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"dtd": entry}))
    with pytest.raises(DownloadError, match=message) as err:
        load_manifest(path, DOWNLOADABLE)
    assert str(path) in str(err.value) and "dtd" in str(err.value)


def test_unknown_dataset_in_user_manifest(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"mnist": {"dirname": "mnist"}}))
    with pytest.raises(DownloadError, match="unknown dataset 'mnist'"):
        load_manifest(path, DOWNLOADABLE)
