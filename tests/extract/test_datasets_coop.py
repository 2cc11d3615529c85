"""The nine CoOp split-file benchmarks, on generated miniatures of their real layouts, and the listing checks."""

from __future__ import annotations

import json
import os

import pytest

from stages.shared.errors import DatasetError
from stages.extract.datasets import open_dataset
from stages.extract.datasets.coop import COOP_LAYOUTS

COOP_KEYS = sorted(COOP_LAYOUTS)


@pytest.mark.parametrize("key", COOP_KEYS)
def test_reads_miniature_of_real_layout(mini, key):
    written = mini.coop(key)
    reader = open_dataset(key, mini.data)
    layout = COOP_LAYOUTS[key]
    assert reader.key == key
    assert reader.root == mini.data / layout.dirname
    assert reader.image_root == mini.data / layout.dirname / layout.image_dir
    assert reader.splits == ("train", "val", "test")
    assert reader.classnames == ["first class", "second", "third one"]
    assert reader.parent_class_ids is None
    for split in reader.splits:
        items = reader.items(split)
        assert [(i.relpath, i.label) for i in items] == [(r[0], r[1]) for r in written[split]]
        assert all(i.classname == reader.classnames[i.label] for i in items)
    reader.validate()
    first = reader.items("test")[0].relpath
    image = reader.load_image(first)
    assert (image.mode, image.size) == ("RGB", (6, 4))


@pytest.mark.parametrize("key", ["caltech101", "stanford_cars"])
def test_root_may_be_the_dataset_folder_itself(mini, key):
    mini.coop(key)
    folder = mini.data / COOP_LAYOUTS[key].dirname
    renamed = folder.rename(mini.data / "elsewhere")
    reader = open_dataset(key, renamed)
    assert reader.root == renamed
    assert reader.fingerprint() == open_dataset(key, renamed).fingerprint()
    reader.validate()


def test_fingerprint_follows_split_file(mini):
    written = mini.coop("dtd")
    before = open_dataset("dtd", mini.data).fingerprint()
    assert len(before) == 64 and int(before, 16) >= 0
    assert open_dataset("dtd", mini.data).fingerprint() == before
    written["train"][0], written["train"][1] = written["train"][1], written["train"][0]
    mini.write_json(mini.data / "dtd" / COOP_LAYOUTS["dtd"].split_file, written)
    assert open_dataset("dtd", mini.data).fingerprint() != before


def test_missing_dataset_folder_names_expected_path(mini):
    with pytest.raises(DatasetError, match="dataset folder not found") as err:
        open_dataset("food101", mini.data)
    assert str(mini.data / "food-101") in str(err.value)
    assert "food-101.tar.gz" in str(err.value)


def test_missing_split_file_names_path_and_file_to_download(mini):
    mini.coop("eurosat")
    split_path = mini.data / "eurosat" / "split_zhou_EuroSAT.json"
    split_path.unlink()
    with pytest.raises(DatasetError) as err:
        open_dataset("eurosat", mini.data)
    message = str(err.value)
    assert f"split file missing: {split_path}" in message
    assert "download split_zhou_EuroSAT.json" in message and "\n" not in message


def test_missing_image_folder_named(mini):
    mini.coop("oxford_pets")
    (mini.data / "oxford_pets" / "images").rename(mini.data / "oxford_pets" / "imgs")
    with pytest.raises(DatasetError, match=f"image folder missing: {mini.data / 'oxford_pets' / 'images'}"):
        open_dataset("oxford_pets", mini.data)


def test_malformed_json_names_file_and_line(mini):
    mini.coop("dtd")
    path = mini.data / "dtd" / "split_zhou_DescribableTextures.json"
    path.write_text('{"train": [\n["a.jpg", 0, "a"],\n]}')
    with pytest.raises(DatasetError, match=rf"malformed split file {path}: it is not valid JSON .* at line 3"):
        open_dataset("dtd", mini.data)


@pytest.mark.parametrize("content, message", [
    ({"train": [], "val": []}, r"missing splits \['test'\]"),
    ({"train": [], "val": [], "test": [], "extra": []}, r"unknown splits \['extra'\]"),
    ({"train": [["a.jpg", "0", "a"]], "val": [], "test": []}, "train item 0 is"),
    ({"train": [["a.jpg", 0]], "val": [], "test": []}, "expected \\[path, integer label, classname\\]"),
    ({"train": [["a.jpg", 0, "a"], ["b.jpg", 2, "c"]], "val": [], "test": []}, "label 1 never occurs in 'train'"),
    ({"train": {"a.jpg": 0}, "val": [], "test": []}, "'train' must be a list"),
    ([], "must hold a JSON object"),
])
def test_structural_errors_raised_at_open(mini, content, message):
    mini.coop("caltech101")
    mini.write_json(mini.data / "caltech-101" / "split_zhou_Caltech101.json", content)
    with pytest.raises(DatasetError, match=message):
        open_dataset("caltech101", mini.data)


def _edit(mini, key, edit):
    """Write the miniature, apply ``edit`` to its JSON, and return the reopened reader."""
    written = mini.coop(key)
    edit(written)
    layout = COOP_LAYOUTS[key]
    mini.write_json(mini.data / layout.dirname / layout.split_file, written)
    return open_dataset(key, mini.data)


def test_label_out_of_range(mini):
    reader = _edit(mini, "dtd", lambda d: d["test"][1].__setitem__(1, 3))
    with pytest.raises(DatasetError, match=r"dtd test item 1 .*label 3 out of range 0\.\.2"):
        reader.validate()
    reader.validate(["train", "val"])  # other splits are fine


def test_classname_inconsistent_with_label(mini):
    reader = _edit(mini, "dtd", lambda d: d["val"][0].__setitem__(2, "second"))
    with pytest.raises(DatasetError, match="class name 'second' does not match label 2 \\('third one'\\)"):
        reader.validate()


def test_duplicate_path_in_split(mini):
    reader = _edit(mini, "food101", lambda d: d["train"].append(list(d["train"][0])))
    with pytest.raises(DatasetError, match=r"train item 6 .*listed twice in train \(first at item 0\)"):
        reader.validate()


def test_path_in_two_splits_is_a_leak(mini):
    reader = _edit(mini, "food101", lambda d: d["test"].append(list(d["train"][0])))
    with pytest.raises(DatasetError, match="also listed in train"):
        reader.validate()


@pytest.mark.parametrize("relpath, message", [
    ("../outside.jpg", "contains '..'"),
    ("first_class/../../outside.jpg", "contains '..'"),
    ("/etc/passwd", "is absolute"),
    ("", "not a non-empty string"),
])
def test_path_escaping_root(mini, relpath, message):
    reader = _edit(mini, "caltech101", lambda d: d["train"][0].__setitem__(0, relpath))
    with pytest.raises(DatasetError, match=message):
        reader.validate()


def test_symlink_outside_root_rejected(mini, tmp_path):
    outside = mini.image(tmp_path / "secret.jpg")
    mini.coop("caltech101")
    reader = open_dataset("caltech101", mini.data)
    target = reader.image_root / reader.items("train")[0].relpath
    target.unlink()
    os.symlink(outside, target)
    with pytest.raises(DatasetError, match="is a symlink to .*outside the image folder"):
        reader.validate()


def test_symlinked_class_folder_outside_root_rejected(mini, tmp_path):
    mini.coop("caltech101")
    reader = open_dataset("caltech101", mini.data)
    folder = reader.image_root / "second"
    folder.rename(tmp_path / "moved")
    os.symlink(tmp_path / "moved", folder)
    with pytest.raises(DatasetError, match="resolves outside the image folder"):
        reader.validate()


def test_symlink_inside_root_accepted(mini):
    mini.coop("caltech101")
    reader = open_dataset("caltech101", mini.data)
    target = reader.image_root / reader.items("train")[0].relpath
    mini.image(reader.image_root / "spare" / "x.jpg")
    target.unlink()
    os.symlink(reader.image_root / "spare" / "x.jpg", target)
    reader.validate()


def test_missing_files_counted_first_named(mini):
    mini.coop("ucf101")
    reader = open_dataset("ucf101", mini.data)
    for item in reader.items("test")[:3]:
        (reader.image_root / item.relpath).unlink()
    (reader.image_root / reader.items("val")[0].relpath).unlink()
    reader.validate(["train"])
    with pytest.raises(DatasetError) as err:
        reader.validate(["test", "val"])
    first = reader.image_root / reader.items("test")[0].relpath
    assert f"missing file {first} (and 3 more problems)" in str(err.value)


def test_directory_in_place_of_file_rejected(mini):
    mini.coop("sun397")
    reader = open_dataset("sun397", mini.data)
    path = reader.image_root / reader.items("val")[0].relpath
    path.unlink()
    path.mkdir()
    with pytest.raises(DatasetError, match="is not a regular file"):
        reader.validate()


def test_unknown_split_and_unknown_key(mini):
    mini.coop("dtd")
    reader = open_dataset("dtd", mini.data)
    with pytest.raises(DatasetError, match="dtd has no 'train_aug' split"):
        reader.items("train_aug")
    with pytest.raises(DatasetError, match="unknown dataset 'dtdd'"):
        open_dataset("dtdd", mini.data)
    with pytest.raises(DatasetError, match="takes no option 'split_file'"):
        open_dataset("dtd", mini.data, split_file="x.json")
    with pytest.raises(DatasetError, match="no data folder given"):
        open_dataset("dtd", None)


def test_items_returns_a_copy(mini):
    mini.coop("dtd")
    reader = open_dataset("dtd", mini.data)
    reader.items("train").clear()
    assert len(reader.items("train")) == 6


def test_split_json_is_read_as_utf8(mini):
    written = mini.coop("oxford_flowers", classes=("pétunia", "globe_thistle"))
    reader = open_dataset("oxford_flowers", mini.data)
    assert reader.classnames == ["pétunia", "globe thistle"]
    assert json.loads((mini.data / "oxford_flowers" / "split_zhou_OxfordFlowers.json").read_text()) == written
