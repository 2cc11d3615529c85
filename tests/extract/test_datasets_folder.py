"""The generic ``folder`` dataset: split folders, a flat class tree split by pattern, or a user split file."""

from __future__ import annotations

import pytest

from stages.shared.errors import DatasetError
from stages.extract.datasets import open_dataset


def test_split_folders(mini):
    root = mini.data / "mine"
    mini.class_tree(root / "train", ("cat", "dog_breed"), per_class=3)
    mini.class_tree(root / "test", ("dog_breed", "zebra"), per_class=1)
    reader = open_dataset("folder", root)
    assert reader.splits == ("train", "test")
    assert reader.classnames == ["cat", "dog breed", "zebra"]
    assert reader.image_root == root
    assert [(i.relpath, i.label) for i in reader.items("test")] == [
        ("test/dog_breed/img_0000.JPEG", 1), ("test/zebra/img_0000.JPEG", 2)]
    assert [i.relpath for i in reader.items("train")][:3] == [f"train/cat/img_{n:04d}.JPEG" for n in range(3)]
    reader.validate()


def test_flat_tree_split_by_documented_pattern(mini):
    root = mini.data / "flat"
    mini.class_tree(root, ("a", "b"), per_class=12)
    (root / "a" / "notes.txt").write_text("skipped")
    reader = open_dataset("folder", root)
    assert reader.splits == ("train", "val", "test")
    positions = {split: [int(i.relpath[-9:-5]) for i in reader.items(split) if i.label == 0]
                 for split in reader.splits}
    # FLAT_PATTERN "TEVTETEVTT" repeats every 10 files
    assert positions == {"train": [0, 3, 5, 8, 9, 10], "val": [2, 7], "test": [1, 4, 6, 11]}
    assert sum(len(reader.items(s)) for s in reader.splits) == 24
    reader.validate()
    assert reader.fingerprint() == open_dataset("folder", root).fingerprint()


def test_user_split_file_relative_and_absolute(mini):
    root = mini.data / "custom"
    mini.image(root / "x" / "1.png")
    mini.image(root / "y" / "2.png")
    split = {"train": [["y/2.png", 1, "y"], ["x/1.png", 0, "x_ray"]], "test": [["y/2.png", 1, "y"]]}
    path = mini.write_json(root / "my_split.json", split)
    reader = open_dataset("folder", root, split_file="my_split.json")
    assert reader.splits == ("train", "test")
    assert reader.classnames == ["x ray", "y"]
    assert reader.items("train")[0] == ("y/2.png", 1, "y")
    with pytest.raises(DatasetError, match="also listed in train"):
        reader.validate()
    reader.validate(["test"])
    assert open_dataset("folder", mini.data, split_file=path).image_root == mini.data


def test_user_split_file_classes_come_from_train(mini):
    mini.image(mini.data / "x" / "1.png")
    mini.image(mini.data / "y" / "2.png")
    mini.write_json(mini.data / "s.json", {"train": [["x/1.png", 0, "x"]], "test": [["y/2.png", 1, "y"]]})
    reader = open_dataset("folder", mini.data, split_file="s.json")
    assert reader.classnames == ["x"]
    with pytest.raises(DatasetError, match=r"folder test item 0 .*label 1 out of range 0\.\.0"):
        reader.validate()


def test_missing_user_split_file_named(mini):
    with pytest.raises(DatasetError, match=f"split file not found: {mini.data / 'nope.json'}"):
        open_dataset("folder", mini.data, split_file="nope.json")


def test_no_class_folders(mini):
    mini.image(mini.data / "loose.jpg")
    with pytest.raises(DatasetError, match="no class folders in"):
        open_dataset("folder", mini.data)


def test_missing_root(mini):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("folder", mini.data / "absent")


def test_image_replaced_after_listing_is_caught_by_validate(mini):
    mini.class_tree(mini.data, ("a",), per_class=3)
    reader = open_dataset("folder", mini.data)
    (mini.data / reader.items("train")[0].relpath).unlink()
    with pytest.raises(DatasetError, match="missing file"):
        reader.validate()
