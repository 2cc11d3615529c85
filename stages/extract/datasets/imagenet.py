"""ImageNet in CoOp's layout: ``imagenet/images/{train,val}/n*/`` and ``imagenet/classnames.txt``.

Splits: ``test`` is the official validation set (``images/val``, sorted into class folders).
``val`` is NOT the test set (CoOp's choice, which would select hyper-parameters on test): it is a
fixed held-out 1% of ``images/train`` — in each class, files sorted by name, the positions
0, 100, 200, ... (about 1%, at least 8 images in every ImageNet class); ``train`` is the rest.
Class order and names come from ``classnames.txt`` ("wnid name" per line).
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.shared.errors import DatasetError
from stages.extract.datasets.base import DatasetReader, readable
from stages.extract.datasets.folders import ClassTree, TreePart, TreeReader, class_folders
from stages.extract.datasets.locate import COOP_DATASETS_MD, dataset_dir, require_dir, require_file

DOWNLOAD = ("ILSVRC2012 train and val from https://image-net.org (val sorted into n*/ class folders, "
            f"see {COOP_DATASETS_MD})")
CLASSNAMES_DOWNLOAD = f"classnames.txt (linked in {COOP_DATASETS_MD})"
VAL_PATTERN = "V" + "T" * 99  # per class: position 0 of every 100 is held out as val


def read_classnames_txt(key: str, path: Path) -> tuple[list[str], list[str]]:
    """(wnids, readable names) from a CoOp classnames.txt, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{key}: cannot read {path} ({exc}) — re-download {CLASSNAMES_DOWNLOAD}") from None
    wnids: list[str] = []
    names: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or parts[0] in seen:
            what = f"wnid {parts[0]!r} listed twice" if parts[0] in seen else "expected 'wnid class name'"
            raise DatasetError(f"{key}: {path} line {number}: {what}; fix the file")
        seen.add(parts[0])
        wnids.append(parts[0])
        names.append(readable(parts[1]))
    if not wnids:
        raise DatasetError(f"{key}: {path} lists no classes — re-download {CLASSNAMES_DOWNLOAD}")
    return wnids, names


def open_imagenet(key: str, root: str | os.PathLike[str] | None) -> DatasetReader:
    """Reader for imagenet (splits train, val = held-out 1% of train, test = official val)."""
    folder, _ = dataset_dir(key, root, "imagenet", ("classnames.txt", "images"), DOWNLOAD)
    wnids, names = read_classnames_txt(
        key, require_file(key, folder / "classnames.txt", "class list", CLASSNAMES_DOWNLOAD))
    image_root = require_dir(key, folder / "images", "image folder", DOWNLOAD)
    for split_dir in ("train", "val"):
        path = require_dir(key, image_root / split_dir, f"{split_dir} folder", DOWNLOAD)
        class_folders(key, path, wnids, complete=True, fix=f"re-extract {DOWNLOAD}")
    labelled = tuple((wnid, label) for label, wnid in enumerate(wnids))
    train, test = ClassTree("train", labelled), ClassTree("val", labelled)
    parts = {"train": TreePart(train, VAL_PATTERN, "T"), "val": TreePart(train, VAL_PATTERN, "V"),
             "test": TreePart(test)}
    return TreeReader(key, folder, image_root, names, parts)
