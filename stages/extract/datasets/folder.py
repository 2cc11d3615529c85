"""A user's own image folder, or a user's split file in CoOp's JSON format.

Layouts, tried in this order (``root`` is the folder itself):
1. ``split_file=`` given: a CoOp-format JSON (absolute, or relative to ``root``, not to the working
   directory); its paths resolve against ``root``, its splits are the keys it has (any of train/val/test)
   and its class names are its own (see ``split_json``);
2. ``root/train``, ``root/val`` and/or ``root/test`` exist: each is ``<split>/<class>/<image>``; classes
   are the sorted union of class folder names over the splits, and the splits those present;
3. otherwise ``root/<class>/<image>``, split per class with the files sorted by name and position ``i``
   going to ``FLAT_PATTERN[i % 10]`` (T train, E test, V val): 50% train, 20% val, 30% test, and a
   class of three or more images has at least one image in each split.
In layouts 2 and 3, class names are the folder names with underscores as spaces, and files are listed
as ``folders`` lists them (sorted by name; hidden and non-image files skipped).
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.shared.errors import DatasetError
from stages.extract.datasets.base import DatasetReader, ListedReader, readable
from stages.extract.datasets.folders import ClassTree, TreePart, TreeReader, subfolders
from stages.extract.datasets.locate import data_path
from stages.extract.datasets.split_json import SPLIT_ORDER, read_split_json

FLAT_PATTERN = "TEVTETEVTT"
_LETTERS = {"train": "T", "val": "V", "test": "E"}


def open_folder(key: str, root: str | os.PathLike[str] | None,
                split_file: str | os.PathLike[str] | None = None) -> DatasetReader:
    """Reader for an image folder or a user split file (see the module docstring for the rules)."""
    folder = data_path(key, root)
    if split_file is not None:
        path = Path(split_file).expanduser()
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            raise DatasetError(f"{key}: split file not found: {path}; pass an existing CoOp-format JSON file")
        classnames, listings = read_split_json(key, path, required=())
        return ListedReader(key, folder, folder, classnames, listings)
    split_dirs = [split for split in SPLIT_ORDER if (folder / split).is_dir()]
    if split_dirs:
        per_split = {split: subfolders(folder / split) for split in split_dirs}
        classes = sorted(set().union(*per_split.values()))
        label_of = {name: label for label, name in enumerate(classes)}
        parts = {split: TreePart(ClassTree(split, tuple((name, label_of[name]) for name in names)))
                 for split, names in per_split.items()}
    else:
        classes = subfolders(folder)
        tree = ClassTree("", tuple((name, label) for label, name in enumerate(classes)))
        parts = {split: TreePart(tree, FLAT_PATTERN, letter) for split, letter in _LETTERS.items()}
    if not classes:
        raise DatasetError(f"{key}: no class folders in {folder}; expected {folder}/<class>/<image>, "
                           f"{folder}/<split>/<class>/<image>, or a split_file")
    return TreeReader(key, folder, folder, [readable(name) for name in classes], parts)
