"""Listing datasets stored as one folder per class (ImageNet and its shifts, user image folders).

Listing order is deterministic on every file system: classes in label order, and inside a class the
image files sorted by name (code-point order). Hidden entries and files without an image extension
(README.txt, Thumbs.db, ...) are skipped. A split may be a fixed part of each class, chosen by
position in that order with a repeating pattern of letters (see ``TreePart``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from stages.shared.errors import DatasetError
from stages.extract.datasets.base import DatasetReader, Item

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm"})


class ClassTree(NamedTuple):
    """A folder holding one sub-folder per class."""

    prefix: str                            # path of that folder relative to the image root ("" = the root)
    folders: tuple[tuple[str, int], ...]   # (class folder name, label), in listing order


class TreePart(NamedTuple):
    """A split made of a class tree, or of the positions of each class whose pattern letter is ``keep``.

    Position ``i`` of a class (in sorted file order) gets letter ``pattern[i % len(pattern)]``; an
    empty pattern keeps every file.
    """

    tree: ClassTree
    pattern: str = ""
    keep: str = ""


def subfolders(path: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``path``."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def image_files(path: Path) -> list[str]:
    """Sorted names of the non-hidden image files in ``path``."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".")
                      and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file())


def class_folders(key: str, split_dir: Path, expected: Sequence[str], *, complete: bool, fix: str) -> list[str]:
    """The class folders present in ``split_dir``; unknown folders, and missing ones if ``complete``, are errors."""
    present = subfolders(split_dir)
    known = set(expected)
    unknown = [name for name in present if name not in known]
    if unknown:
        raise DatasetError(f"{key}: {split_dir / unknown[0]} is not a known class folder "
                           f"({len(unknown)} unknown folders); remove it or {fix}")
    if not present:
        loose = " but holds loose images" if image_files(split_dir) else ""
        raise DatasetError(f"{key}: {split_dir} has no class folders{loose} — the images must sit in one "
                           f"folder per class; {fix}")
    if complete:
        have = set(present)
        missing = [name for name in expected if name not in have]
        if missing:
            raise DatasetError(f"{key}: {len(missing)} of {len(expected)} class folders missing under {split_dir}, "
                               f"first {missing[0]!r} — the extraction is incomplete; {fix}")
    return present


class TreeReader(DatasetReader):
    """A reader listing class folders on first use; ``parts`` says which tree (and positions) each split is."""

    def __init__(self, key: str, root: Path, image_root: Path, classnames: list[str],
                 parts: Mapping[str, TreePart], parent_class_ids: list[int] | None = None) -> None:
        super().__init__(key, root, image_root, classnames, tuple(parts), parent_class_ids)
        self.parts = dict(parts)
        self._scans: dict[ClassTree, list[tuple[Item, int]]] = {}

    def _read(self, split: str) -> list[Item]:
        part = self.parts[split]
        scan = self._scan(part.tree)
        if not part.pattern:
            return [item for item, _ in scan]
        period = len(part.pattern)
        return [item for item, pos in scan if part.pattern[pos % period] == part.keep]

    def _scan(self, tree: ClassTree) -> list[tuple[Item, int]]:
        """(item, position inside its class) for every image of the tree, listed once per reader."""
        if tree not in self._scans:
            listing = []
            for folder, label in tree.folders:
                rel = f"{tree.prefix}/{folder}" if tree.prefix else folder
                try:
                    names = image_files(self.image_root / rel)
                except OSError as exc:
                    raise DatasetError(f"{self.key}: cannot list class folder {self.image_root / rel} "
                                       f"({exc.strerror}); check the dataset folder") from None
                classname = self.classnames[label]
                listing += [(Item(f"{rel}/{name}", label, classname), pos) for pos, name in enumerate(names)]
            self._scans[tree] = listing
        return self._scans[tree]
