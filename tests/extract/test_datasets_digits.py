"""scikit-learn's digits: fixed stratified 50/20/30 split, digit words as class names, images from memory."""

from __future__ import annotations

import numpy as np
import pytest

from stages.shared.errors import DatasetError
from stages.extract.datasets import open_dataset
from stages.extract.images import BadImageError


@pytest.fixture(scope="module")
def digits():
    return open_dataset("digits", None)


def test_split_sizes_stratified_and_disjoint(digits):
    sizes = {split: len(digits.items(split)) for split in digits.splits}
    assert sizes == {"train": 897, "val": 360, "test": 540}
    paths = [i.relpath for s in digits.splits for i in digits.items(s)]
    assert len(set(paths)) == 1797
    for split in digits.splits:
        counts = np.bincount([i.label for i in digits.items(split)], minlength=10)
        assert counts.min() >= 0.9 * counts.mean()
    digits.validate()


def test_classnames_are_words(digits):
    assert digits.classnames[:3] == ["zero", "one", "two"] and len(digits.classnames) == 10
    assert all(i.classname == digits.classnames[i.label] for i in digits.items("val"))


def test_deterministic(digits):
    again = open_dataset("digits", "/ignored/root")
    assert again.items("train") == digits.items("train")
    assert again.fingerprint() == digits.fingerprint()


def test_image_is_dark_ink_on_white_64px(digits):
    item = digits.items("test")[0]
    image = digits.load_image(item.relpath)
    assert (image.mode, image.size) == ("RGB", (64, 64))
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels[0, 0].tolist() == [255, 255, 255]  # the digits' borders are blank
    assert pixels.min() < 80


def test_bad_paths(digits):
    with pytest.raises(BadImageError, match="no image 'digits/99999'"):
        digits.load_image("digits/99999")
    with pytest.raises(BadImageError):
        digits.load_image("00001")


def test_validate_catches_wrong_label(digits):
    fresh = open_dataset("digits", None)
    item = fresh.items("train")[0]
    wrong = (item.label + 1) % 10
    fresh._cache["train"][0] = item._replace(label=wrong, classname=fresh.classnames[wrong])
    with pytest.raises(DatasetError, match=r"digits train item 0 .*label \d but the sample is a \d"):
        fresh.validate()
