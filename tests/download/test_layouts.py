"""Every built-in manifest entry's layout steps, run on archives built in that dataset's published layout.

The archives are miniatures (a few images per class) served by the local HTTP server; the manifest override
keeps the built-in steps and replaces only the URLs and checksums (and, where the package ships CoOp's full
split file, serves a small split file instead so the miniature matches it).
"""

from __future__ import annotations

import json

import pytest

from stages.extract.datasets import open_dataset
from stages.extract.datasets.shifts import SHIFT_LAYOUTS
from stages.extract.download import DownloadRequest, download
from stages.extract.download.manifest import builtin_manifest
from tests.download.conftest import jpeg, sha256, small_split, tar_bytes, write_manifest, zip_bytes

IMAGE = jpeg((10, 200, 90))


def coop_published(key: str) -> tuple[dict[str, dict[str, bytes]], dict]:
    """({archive name: {member: bytes}}, split) for a CoOp benchmark, in its published archive layout."""
    if key == "oxford_flowers":
        paths = {"pink primrose": [f"image_{n:05d}.jpg" for n in (1, 2, 3)],
                 "hard-leaved pocket orchid": [f"image_{n:05d}.jpg" for n in (4, 5, 6)]}
        split = small_split(paths)
        return {"102flowers.tgz": {f"jpg/{p}": IMAGE for ps in paths.values() for p in ps}}, split
    if key == "stanford_cars":
        paths = {"2000 AM General Hummer SUV": ["cars_train/00001.jpg", "cars_test/00001.jpg", "cars_test/00002.jpg"],
                 "2012 Acura RL Sedan": ["cars_train/00002.jpg", "cars_train/00003.jpg", "cars_test/00003.jpg"]}
        split = small_split(paths)
        every = [p for ps in paths.values() for p in ps]
        return {"cars_train.tgz": {p: IMAGE for p in every if p.startswith("cars_train/")},
                "cars_test.tgz": {p: IMAGE for p in every if p.startswith("cars_test/")}}, split
    if key == "food101":
        paths = {cls: [f"{cls}/{1000 + n}.jpg" for n in range(3)] for cls in ("apple_pie", "baby_back_ribs")}
        members = {f"food-101/images/{p}": IMAGE for ps in paths.values() for p in ps}
        members["food-101/meta/classes.txt"] = b"apple_pie\nbaby_back_ribs\n"
        members["food-101/README.txt"] = b"Food-101"
        return {"food-101.tar.gz": members}, small_split(paths)
    if key == "sun397":
        paths = {cls: [f"{cls[0]}/{cls}/sun_{n:04d}.jpg" for n in range(3)] for cls in ("abbey", "airplane_cabin")}
        members = {f"SUN397/{p}": IMAGE for ps in paths.values() for p in ps}
        members["SUN397/ClassName.txt"] = b"/a/abbey\n/a/airplane_cabin\n"
        return {"SUN397.tar.gz": members}, small_split(paths)
    if key == "ucf101":
        paths = {cls: [f"{cls}/v_{cls.replace('_', '')}_g01_c0{n}.jpg" for n in range(1, 4)]
                 for cls in ("Apply_Eye_Makeup", "Archery")}
        return {"UCF-101-midframes.zip": {f"UCF-101-midframes/{p}": IMAGE for ps in paths.values() for p in ps}}, \
            small_split(paths)
    raise AssertionError(key)


def archive(name: str, members: dict[str, bytes]) -> bytes:
    return zip_bytes(members) if name.endswith(".zip") else tar_bytes(members)


def override(server, key: str, archives: dict[str, bytes], split: dict | None) -> dict:
    """Built-in steps kept; files served locally; a small split file served when the package ships the full one."""
    entry = builtin_manifest()[key]
    files, steps = [], list(entry["steps"])
    for item in entry["files"]:
        name = item["name"]
        data = archives[name] if name in archives else json.dumps(split).encode()
        files.append({"url": server.add(f"/official/{name}", data), "name": name, "sha256": sha256(data)})
    result = {"files": files, "steps": steps}
    if entry.get("split", {}).get("bundled"):
        split_name = entry["split"]["file"]
        data = json.dumps(split).encode()
        files.append({"url": server.add(f"/coop/{split_name}", data), "name": split_name, "sha256": sha256(data)})
        steps.append({"move": split_name, "to": split_name})
        result["split"] = {"file": split_name}
    return {key: result}


@pytest.mark.parametrize("key", ["oxford_flowers", "stanford_cars", "food101", "sun397", "ucf101"])
def test_coop_benchmark_steps_give_the_layout_extract_reads(server, tmp_path, key):
    members, split = coop_published(key)
    archives = {name: archive(name, content) for name, content in members.items()}
    manifest = write_manifest(tmp_path / "m.json", override(server, key, archives, split))
    data = tmp_path / "data"
    [outcome] = download(DownloadRequest((key,), data, manifest=manifest), echo=lambda _: None)
    assert outcome.status == "downloaded" and "6 images verified" in outcome.detail
    reader = open_dataset(key, data)
    reader.validate()
    assert {name: [list(item) for item in reader.items(name)] for name in reader.splits} == {
        name: [[p, label, cls.replace("_", " ")] for p, label, cls in rows] for name, rows in split.items()}


def test_fgvc_aircraft_data_folder_becomes_the_dataset_folder(server, tmp_path):
    variants = ["707-320", "A300B4", "F/A-18"]
    members = {"fgvc-aircraft-2013b/README.html": b"<html>", "fgvc-aircraft-2013b/evaluation.m": b"%",
               "fgvc-aircraft-2013b/data/variants.txt": ("\n".join(variants) + "\n").encode()}
    count = 1000000
    for split in ("train", "val", "test"):
        lines = []
        for variant in variants:
            count += 1
            lines.append(f"{count:07d} {variant}\n")
            members[f"fgvc-aircraft-2013b/data/images/{count:07d}.jpg"] = IMAGE
        members[f"fgvc-aircraft-2013b/data/images_variant_{split}.txt"] = "".join(lines).encode()
    archives = {"fgvc-aircraft-2013b.tar.gz": tar_bytes(members)}
    manifest = write_manifest(tmp_path / "m.json", override(server, "fgvc_aircraft", archives, None))
    data = tmp_path / "data"
    download(DownloadRequest(("fgvc_aircraft",), data, manifest=manifest), echo=lambda _: None)
    reader = open_dataset("fgvc_aircraft", data)
    reader.validate()
    assert reader.classnames == variants and len(reader.items("test")) == 3
    assert not (data / "fgvc_aircraft" / "README.html").exists()  # only data/ is kept, as CoOp says


def test_imagenet_v2_folders_are_the_class_indices(server, tmp_path):
    members = {f"imagenetv2-matched-frequency-format-val/{i}/{i:04x}.jpeg": IMAGE for i in range(1000)}
    archives = {"imagenetv2-matched-frequency.tar.gz": tar_bytes(members)}
    manifest = write_manifest(tmp_path / "m.json", override(server, "imagenet_v2", archives, None))
    data = tmp_path / "data"
    download(DownloadRequest(("imagenet_v2",), data, manifest=manifest), echo=lambda _: None)
    reader = open_dataset("imagenet_v2", data)
    reader.validate()
    assert len(reader.items("test")) == 1000 and reader.classnames[0] == "tench"


@pytest.mark.parametrize("key, name, top, kind", [("imagenet_a", "imagenet-a.tar", "imagenet-a", "tar"),
                                                  ("imagenet_r", "imagenet-r.tar", "imagenet-r", "tar"),
                                                  ("imagenet_sketch", "ImageNet-Sketch.zip", "sketch", "zip")])
def test_shift_sets_are_laid_out_and_say_they_need_classnames(server, tmp_path, key, name, top, kind):
    members = {f"{top}/{wnid}/{n}.jpg": IMAGE for wnid in ("n01440764", "n01443537") for n in range(2)}
    archives = {name: zip_bytes(members) if kind == "zip" else tar_bytes(members, mode="w")}
    manifest = write_manifest(tmp_path / "m.json", override(server, key, archives, None))
    data = tmp_path / "data"
    lines: list[str] = []
    [outcome] = download(DownloadRequest((key,), data, manifest=manifest), echo=lines.append)
    assert "4 images in 2 class folders" in outcome.detail
    assert f"classnames.txt in {data / SHIFT_LAYOUTS[key].dirname / 'classnames.txt'} or " in outcome.detail
    if key != "imagenet_sketch":  # A and R take the classes present; with CoOp's classnames.txt extract reads them
        (data / "imagenet").mkdir()
        (data / "imagenet" / "classnames.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
        reader = open_dataset(key, data)
        reader.validate()
        assert reader.classnames == ["tench", "goldfish"] and len(reader.items("test")) == 4
    else:
        assert (data / "imagenet-sketch" / "images" / "n01440764" / "0.jpg").is_file()


def test_shift_set_is_checked_by_the_reader_when_the_class_list_is_there(server, tmp_path):
    data = tmp_path / "data"
    (data / "imagenet").mkdir(parents=True)
    (data / "imagenet" / "classnames.txt").write_text("n01440764 tench\nn01443537 goldfish\nn01484850 shark\n")
    members = {f"imagenet-r/{wnid}/{n}.jpg": IMAGE for wnid in ("n01440764", "n01484850") for n in range(3)}
    manifest = write_manifest(tmp_path / "m.json", override(server, "imagenet_r", {"imagenet-r.tar": tar_bytes(members)},
                                                            None))
    [outcome] = download(DownloadRequest(("imagenet_r",), data, manifest=manifest), echo=lambda _: None)
    assert outcome.detail == "6 images verified against the listing extract reads"
    assert open_dataset("imagenet_r", data).parent_class_ids == [0, 2]
