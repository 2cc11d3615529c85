"""ImageNet (folders + classnames.txt, val held out of train) and its four distribution shifts."""

from __future__ import annotations

import pytest

from stages.shared.errors import DatasetError
from stages.extract.datasets import open_dataset


def test_imagenet_reads_folders_in_classnames_order(mini):
    mini.imagenet(per_class=3)
    reader = open_dataset("imagenet", mini.data)
    assert reader.classnames == ["tench", "goldfish", "great white shark", "tiger shark"]
    assert reader.image_root == mini.data / "imagenet" / "images"
    assert reader.splits == ("train", "val", "test")
    assert reader.parent_class_ids is None
    test = reader.items("test")
    assert [i.relpath for i in test[:2]] == ["val/n01440764/img_0000.JPEG", "val/n01440764/img_0001.JPEG"]
    assert [i.label for i in test] == [0, 0, 1, 1, 2, 2, 3, 3]
    # position 0 of every 100 images per class is val; the rest is train
    assert [i.relpath for i in reader.items("val")] == [f"train/{w}/img_0000.JPEG" for w in mini.WNIDS]
    assert [i.relpath for i in reader.items("train")[:2]] == ["train/n01440764/img_0001.JPEG",
                                                             "train/n01440764/img_0002.JPEG"]
    reader.validate()


def test_imagenet_val_is_one_in_a_hundred_of_each_class(mini):
    folder = mini.imagenet(per_class=1)
    mini.class_tree(folder / "images" / "train", mini.WNIDS[1:2], per_class=205)
    reader = open_dataset("imagenet", mini.data)
    val = [i.relpath for i in reader.items("val") if i.label == 1]
    train = [i.relpath for i in reader.items("train") if i.label == 1]
    assert val == [f"train/{mini.WNIDS[1]}/img_{n:04d}.JPEG" for n in (0, 100, 200)]
    assert len(train) == 202 and not set(train) & set(val)
    reader.validate()


def test_imagenet_skips_hidden_and_non_image_files(mini):
    folder = mini.imagenet(per_class=2)
    (folder / "images" / "val" / mini.WNIDS[0] / ".DS_Store").write_text("x")
    (folder / "images" / "val" / mini.WNIDS[0] / "notes.txt").write_text("x")
    reader = open_dataset("imagenet", mini.data)
    assert len(reader.items("test")) == 8


def test_imagenet_missing_classnames_txt(mini):
    folder = mini.imagenet()
    (folder / "classnames.txt").unlink()
    expected = f"class list missing: {folder / 'classnames.txt'} — download classnames.txt"
    with pytest.raises(DatasetError, match=expected):
        open_dataset("imagenet", mini.data)


def test_imagenet_flat_val_folder_explained(mini):
    folder = mini.imagenet()
    val = folder / "images" / "val"
    for wnid in mini.WNIDS:
        for image in (val / wnid).iterdir():
            image.rename(val / f"{wnid}_{image.name}")
        (val / wnid).rmdir()
    with pytest.raises(DatasetError, match=f"{val} has no class folders but holds loose images"):
        open_dataset("imagenet", mini.data)


def test_imagenet_incomplete_and_unknown_class_folders(mini):
    folder = mini.imagenet()
    train = folder / "images" / "train"
    (train / mini.WNIDS[2]).rename(folder / "moved")
    with pytest.raises(DatasetError, match=f"1 of 4 class folders missing under {train}, first '{mini.WNIDS[2]}'"):
        open_dataset("imagenet", mini.data)
    (folder / "moved").rename(train / "n99999999")
    with pytest.raises(DatasetError, match="n99999999 is not a known class folder"):
        open_dataset("imagenet", mini.data)


def test_imagenet_bad_classnames_line(mini):
    folder = mini.imagenet()
    (folder / "classnames.txt").write_text("n01440764 tench\nn01443537\n")
    with pytest.raises(DatasetError, match="classnames.txt line 2: expected 'wnid class name'"):
        open_dataset("imagenet", mini.data)


@pytest.mark.parametrize("key, dirname, image_dir", [
    ("imagenet_a", "imagenet-adversarial", "imagenet-a"),
    ("imagenet_r", "imagenet-rendition", "imagenet-r"),
])
def test_200_class_shifts_map_to_imagenet_indices(mini, key, dirname, image_dir):
    mini.imagenet()
    images = mini.data / dirname / image_dir
    mini.class_tree(images, (mini.WNIDS[3], mini.WNIDS[1]), per_class=2)
    (images / "README.txt").write_text("not a class")
    reader = open_dataset(key, mini.data)
    assert reader.splits == ("test",)
    assert reader.classnames == ["goldfish", "tiger shark"]
    assert reader.parent_class_ids == [1, 3]
    assert [(i.relpath, i.label) for i in reader.items("test")] == [
        (f"{mini.WNIDS[1]}/img_0000.JPEG", 0), (f"{mini.WNIDS[1]}/img_0001.JPEG", 0),
        (f"{mini.WNIDS[3]}/img_0000.JPEG", 1), (f"{mini.WNIDS[3]}/img_0001.JPEG", 1)]
    reader.validate()
    with pytest.raises(DatasetError, match=f"{key} has no 'train' split"):
        reader.items("train")


def test_shift_prefers_its_own_classnames_txt(mini):
    images = mini.data / "imagenet-rendition" / "imagenet-r"
    mini.class_tree(images, mini.WNIDS[:2])
    mini.classnames_txt(mini.data / "imagenet-rendition" / "classnames.txt", mini.WNIDS, ("a", "b", "c", "d"))
    assert open_dataset("imagenet_r", mini.data).classnames == ["a", "b"]


def test_shift_without_classnames_txt_names_both_places(mini):
    mini.class_tree(mini.data / "imagenet-adversarial" / "imagenet-a", mini.WNIDS[:1])
    with pytest.raises(DatasetError) as err:
        open_dataset("imagenet_a", mini.data)
    assert str(mini.data / "imagenet-adversarial" / "classnames.txt") in str(err.value)
    assert str(mini.data / "imagenet" / "classnames.txt") in str(err.value)


def test_shift_with_unknown_wnid(mini):
    mini.imagenet()
    mini.class_tree(mini.data / "imagenet-adversarial" / "imagenet-a", ("n00000001",))
    with pytest.raises(DatasetError, match="n00000001 is not a known class folder"):
        open_dataset("imagenet_a", mini.data)


def test_sketch_uses_all_imagenet_classes(mini):
    mini.imagenet()
    mini.class_tree(mini.data / "imagenet-sketch" / "images", mini.WNIDS, per_class=1)
    reader = open_dataset("imagenet_sketch", mini.data / "imagenet-sketch")  # pointed at its own folder
    assert reader.classnames == [n.replace("_", " ") for n in mini.NAMES]
    assert reader.parent_class_ids == [0, 1, 2, 3]
    assert [i.label for i in reader.items("test")] == [0, 1, 2, 3]
    (mini.data / "imagenet-sketch" / "images" / mini.WNIDS[0] / "img_0000.JPEG").unlink()
    (mini.data / "imagenet-sketch" / "images" / mini.WNIDS[0]).rmdir()
    with pytest.raises(DatasetError, match="1 of 4 class folders missing"):
        open_dataset("imagenet_sketch", mini.data)


def test_v2_folders_are_indices_in_numeric_order(mini):
    wnids = tuple(f"n{i:08d}" for i in range(12))
    mini.classnames_txt(mini.data / "imagenet" / "classnames.txt", wnids, tuple(f"c{i}" for i in range(12)))
    images = mini.data / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    mini.class_tree(images, tuple(str(i) for i in range(12)), per_class=1)
    reader = open_dataset("imagenet_v2", mini.data)
    assert [i.label for i in reader.items("test")] == list(range(12))
    assert reader.items("test")[10].relpath == "10/img_0000.JPEG"
    assert reader.classnames[10] == "c10"
    assert reader.parent_class_ids == list(range(12))
    reader.validate()


def test_v2_without_classnames_txt_uses_open_clip_names(mini):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    images = mini.data / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    for i in range(1000):
        mini.image(images / str(i) / "a.jpeg")
    reader = open_dataset("imagenet_v2", mini.data)
    assert reader.classnames == [n.replace("_", " ") for n in IMAGENET_CLASSNAMES]
    assert len(reader.items("test")) == 1000 and reader.items("test")[999].label == 999
    assert reader.parent_class_ids == list(range(1000))
