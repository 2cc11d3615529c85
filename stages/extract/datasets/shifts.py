"""The four ImageNet distribution shifts (test split only; classifiers are trained on imagenet).

Labels: ImageNet-V2 and -Sketch use the 1000 ImageNet indices; ImageNet-A and -R have 200 classes,
labelled 0..199 in sorted wnid order (as CoOp does), and ``parent_class_ids`` gives each one's
ImageNet index. The wnid list and names come from a CoOp ``classnames.txt``, looked for first in the
shift's own folder (where CoOp's DATASETS.md copies it) and then in ``imagenet/`` beside it.
ImageNet-V2 needs no wnids (its folders are the indices 0..999): without a classnames.txt its names
are open_clip's ``IMAGENET_CLASSNAMES`` (the CLIP notebook names, in ImageNet index order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from stages.shared.errors import DatasetError
from stages.extract.datasets.base import DatasetReader, readable
from stages.extract.datasets.folders import ClassTree, TreePart, TreeReader, class_folders
from stages.extract.datasets.imagenet import CLASSNAMES_DOWNLOAD, read_classnames_txt
from stages.extract.datasets.locate import dataset_dir, require_dir


class ShiftLayout(NamedTuple):
    """Where a shift set lives under $DATA and where to get it."""

    dirname: str
    image_dir: str
    download: str


SHIFT_LAYOUTS: dict[str, ShiftLayout] = {
    "imagenet_v2": ShiftLayout(
        "imagenetv2", "imagenetv2-matched-frequency-format-val",
        "ImageNetV2-matched-frequency.tar.gz from https://huggingface.co/datasets/vaishaal/ImageNetV2"),
    "imagenet_sketch": ShiftLayout("imagenet-sketch", "images",
                                   "ImageNet-Sketch from https://github.com/HaohanWang/ImageNet-Sketch"),
    "imagenet_a": ShiftLayout("imagenet-adversarial", "imagenet-a",
                              "imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples"),
    "imagenet_r": ShiftLayout("imagenet-rendition", "imagenet-r",
                              "imagenet-r.tar from https://github.com/hendrycks/imagenet-r"),
}


def open_shift(key: str, root: str | os.PathLike[str] | None) -> DatasetReader:
    """Reader for one of ``SHIFT_LAYOUTS`` (split test only)."""
    layout = SHIFT_LAYOUTS[key]
    folder, data = dataset_dir(key, root, layout.dirname, (layout.image_dir,), layout.download)
    image_root = require_dir(key, folder / layout.image_dir, "image folder", layout.download)
    fix = f"re-extract {layout.download}"
    if key == "imagenet_v2":
        names = _imagenet_names(key, folder, data)
        indices = [str(label) for label in range(len(names))]
        class_folders(key, image_root, indices, complete=True, fix=fix)
        tree = ClassTree("", tuple((name, label) for label, name in enumerate(indices)))
        return TreeReader(key, folder, image_root, names, {"test": TreePart(tree)}, list(range(len(names))))
    wnids, names = _imagenet_classes(key, folder, data)
    if key == "imagenet_sketch":
        class_folders(key, image_root, wnids, complete=True, fix=fix)
        tree = ClassTree("", tuple((wnid, label) for label, wnid in enumerate(wnids)))
        return TreeReader(key, folder, image_root, names, {"test": TreePart(tree)}, list(range(len(names))))
    present = class_folders(key, image_root, wnids, complete=False, fix=fix)
    index = {wnid: i for i, wnid in enumerate(wnids)}
    parents = [index[wnid] for wnid in present]
    tree = ClassTree("", tuple((wnid, label) for label, wnid in enumerate(present)))
    return TreeReader(key, folder, image_root, [names[i] for i in parents], {"test": TreePart(tree)}, parents)


def _candidates(folder: Path, data: Path) -> list[Path]:
    """Where a shift set's classnames.txt may be: its own folder, then imagenet/ beside it."""
    return [folder / "classnames.txt", data / "imagenet" / "classnames.txt"]


def _imagenet_classes(key: str, folder: Path, data: Path) -> tuple[list[str], list[str]]:
    """(wnids, names) of ImageNet's 1000 classes from the first classnames.txt found."""
    for path in _candidates(folder, data):
        if path.is_file():
            return read_classnames_txt(key, path)
    looked = " and ".join(str(path) for path in _candidates(folder, data))
    raise DatasetError(f"{key}: ImageNet class list missing: looked for {looked} — put {CLASSNAMES_DOWNLOAD} "
                       "in one of them (it maps the wnid folders to ImageNet classes)")


def _imagenet_names(key: str, folder: Path, data: Path) -> list[str]:
    """ImageNet class names in index order: a classnames.txt when there is one, else open_clip's list."""
    if any(path.is_file() for path in _candidates(folder, data)):
        return _imagenet_classes(key, folder, data)[1]
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES  # imports torch: only when needed

    return [readable(name) for name in IMAGENET_CLASSNAMES]
