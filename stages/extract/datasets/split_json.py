"""Read a split file in CoOp's JSON format: ``{"train": [[relpath, label, classname], ...], "val": ..., "test": ...}``.

Structural problems (not JSON, wrong shapes or types) are raised here with the file named; problems
with values (paths, label ranges, names that disagree, duplicates) are left to ``validate``, which
counts them all. Class names follow CoOp: they are defined by the first split present in train/val/test
order (train, in CoOp's files), label ``k`` named by its first item there; every label ``0..C-1`` must occur there.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.shared.errors import DatasetError
from stages.shared.safe_io import JSONFileError, read_json
from stages.extract.datasets.base import Item, readable

SPLIT_ORDER = ("train", "val", "test")


def read_split_json(key: str, path: Path,
                    required: tuple[str, ...] = SPLIT_ORDER) -> tuple[list[str], dict[str, list[Item]]]:
    """(class names, {split: items}) from the split file at ``path``, splits in train/val/test order."""
    try:
        data = read_json(path)
    except JSONFileError as exc:
        raise DatasetError(f"{key}: malformed split file {path}: {exc} — re-download it or fix the JSON") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{key}: split file {path} must hold a JSON object with train/val/test lists")
    unknown = sorted(set(data) - set(SPLIT_ORDER))
    missing = [split for split in required if split not in data]
    if unknown or missing or not data:
        problem = f"unknown splits {unknown}" if unknown else f"missing splits {missing}" if missing else "no splits"
        wanted = ", ".join(required) if required else f"some of {', '.join(SPLIT_ORDER)}"
        raise DatasetError(f"{key}: split file {path} has {problem}; it must have the keys {wanted}")
    listings = {split: _parse_items(key, path, split, data[split]) for split in SPLIT_ORDER if split in data}
    return _classnames(key, path, listings), listings


def _parse_items(key: str, path: Path, split: str, rows: object) -> list[Item]:
    """The split's rows as Items; each row must be ``[str, int, str]``."""
    if not isinstance(rows, list):
        raise DatasetError(f"{key}: split file {path}: {split!r} must be a list of [path, label, classname]")
    items = []
    for pos, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
                and isinstance(row[1], int) and not isinstance(row[1], bool) and isinstance(row[2], str)):
            raise DatasetError(f"{key}: split file {path}: {split} item {pos} is {json.dumps(row)[:80]}, "
                               "expected [path, integer label, classname]; fix the file")
        items.append(Item(row[0], row[1], readable(row[2])))
    return items


def _classnames(key: str, path: Path, listings: dict[str, list[Item]]) -> list[str]:
    """Class names by label, from the first split (CoOp: train defines the classes)."""
    first, items = next(iter(listings.items()))
    names: dict[int, str] = {}
    for item in items:
        if item.label >= 0:
            names.setdefault(item.label, item.classname)
    if not names:
        raise DatasetError(f"{key}: split file {path}: {first!r} lists no items; it defines the classes")
    if max(names) >= len(names):  # some label in 0..max is absent; never build range(max): labels can be huge
        absent = next(label for label in range(len(names) + 1) if label not in names)
        raise DatasetError(f"{key}: split file {path}: label {absent} never occurs in {first!r} "
                           f"({max(names) + 1 - len(names)} labels missing below the largest, {max(names)}); "
                           f"labels must be 0..C-1 with every class in {first!r}")
    return [names[label] for label in range(len(names))]
