"""FGVC-Aircraft (CoOp layout): ``variants.txt`` defines the classes, ``images_variant_<split>.txt`` the splits.

Split lines read ``<image id> <variant name, spaces allowed>``; the image is ``images/<image id>.jpg``.
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.shared.errors import DatasetError
from stages.extract.datasets.base import DatasetReader, Item, ListedReader, readable
from stages.extract.datasets.locate import dataset_dir, require_dir, require_file

DOWNLOAD = ("fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ "
            "(its data/ folder becomes fgvc_aircraft/)")


def open_aircraft(key: str, root: str | os.PathLike[str] | None) -> DatasetReader:
    """Reader for fgvc_aircraft (splits train, val, test; class order = variants.txt order)."""
    folder, _ = dataset_dir(key, root, "fgvc_aircraft", ("variants.txt",), DOWNLOAD)
    variants = _read_variants(key, require_file(key, folder / "variants.txt", "class list", DOWNLOAD))
    label_of = {name: label for label, name in enumerate(variants)}
    classnames = [readable(name) for name in variants]
    listings = {}
    for split in ("train", "val", "test"):
        path = require_file(key, folder / f"images_variant_{split}.txt", "split file", DOWNLOAD)
        listings[split] = _read_split(key, path, label_of, classnames)
    image_root = require_dir(key, folder / "images", "image folder", DOWNLOAD)
    return ListedReader(key, folder, image_root, classnames, listings)


def _lines(key: str, path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{key}: cannot read {path} ({exc}) — re-download it") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read_variants(key: str, path: Path) -> list[str]:
    """The variant names in file order; a repeated name is an error."""
    variants: list[str] = []
    for number, name in _lines(key, path):
        if name in variants:
            raise DatasetError(f"{key}: {path} line {number}: variant {name!r} listed twice; fix the file")
        variants.append(name)
    if not variants:
        raise DatasetError(f"{key}: {path} lists no variants — re-download it")
    return variants


def _read_split(key: str, path: Path, label_of: dict[str, int], classnames: list[str]) -> list[Item]:
    """Items of one images_variant_<split>.txt file, in file order."""
    items = []
    for number, line in _lines(key, path):
        image_id, _, variant = line.partition(" ")
        variant = variant.strip()
        if variant not in label_of:
            what = f"variant {variant!r} is not in variants.txt" if variant else "no variant name after the image id"
            raise DatasetError(f"{key}: {path} line {number}: {what}; fix the file or re-download the dataset")
        label = label_of[variant]
        items.append(Item(f"{image_id}.jpg", label, classnames[label]))
    return items
