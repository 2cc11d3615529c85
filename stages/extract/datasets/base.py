"""The reader interface every dataset layout implements: class names, split listings, checks, images."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from stages.shared.errors import DatasetError
from stages.extract.datasets.checks import Problem, check_files, check_listing, raise_problems
from stages.extract.images import load_rgb


class Item(NamedTuple):
    """One listed image: its path relative to ``image_root``, its label and its (readable) class name."""

    relpath: str
    label: int
    classname: str


def readable(name: str) -> str:
    """A class name as prompts use it: underscores become spaces (CoOp's convention)."""
    return name.replace("_", " ").strip()


class DatasetReader:
    """A dataset's class names and split listings, with file checks and RGB image loading.

    Subclasses implement ``_read(split)``; listings are read once, on first use, so opening a large
    folder-based dataset (ImageNet train) costs nothing until a split is asked for.
    """

    def __init__(
        self,
        key: str,
        root: Path,
        image_root: Path,
        classnames: list[str],
        splits: tuple[str, ...],
        parent_class_ids: list[int] | None = None,
    ) -> None:
        self.key = key
        self.root = root
        self.image_root = image_root
        self.classnames = classnames
        self.splits = splits
        self.parent_class_ids = parent_class_ids
        self._cache: dict[str, list[Item]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, root={str(self.root)!r}, splits={self.splits})"

    def items(self, split: str) -> list[Item]:
        """The split's items in file order (few-shot subsets are positions into this list)."""
        if split not in self.splits:
            raise DatasetError(
                f"{self.key} has no {split!r} split (it has: {', '.join(self.splits)}); choose one of those"
            )
        if split not in self._cache:
            self._cache[split] = self._read(split)
        return list(self._cache[split])

    def _read(self, split: str) -> list[Item]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """sha256 hex of the key, class names and every split's (relpath, label) list, in order."""
        digest = hashlib.sha256()
        head = {"key": self.key, "classnames": self.classnames, "parent_class_ids": self.parent_class_ids}
        digest.update(json.dumps(head, ensure_ascii=False).encode())
        for split in self.splits:
            digest.update(f"\n#{split}\n".encode())
            for item in self.items(split):
                digest.update(json.dumps([item.relpath, item.label], ensure_ascii=False).encode() + b"\n")
        digest.update(self._content_digest().encode())
        return digest.hexdigest()

    def _content_digest(self) -> str:
        """Extra content to key on when images are not files (empty for file-based datasets)."""
        return ""

    def load_image(self, relpath: str, draft: int | None = None) -> Image.Image:
        """The listed image ``relpath`` decoded to 8-bit RGB (raises BadImageError if unreadable).

        ``draft``: a JPEG may be decoded at a reduced scale keeping both sides >= ``draft`` (see ``load_rgb``).
        """
        return load_rgb(self.image_root / relpath, draft=draft)

    def image_file(self, relpath: str) -> Path | None:
        """The file behind ``relpath``, for decoders that read bytes themselves (None: images are not files)."""
        return self.image_root / relpath

    def validate(self, splits: Iterable[str] | None = None) -> None:
        """Check listings and files of ``splits`` (default: all) before encoding; raise on the first problem."""
        chosen = tuple(self.splits if splits is None else splits)
        listings = {split: self.items(split) for split in chosen}
        problems = check_listing(self.classnames, listings)
        problems += self._check_sources(listings)
        raise_problems(self.key, problems)

    def _check_sources(self, listings: Mapping[str, list[Item]]) -> list[Problem]:
        """Problems with the image sources of the listed items (files by default)."""
        return check_files(self.image_root, listings)


class ListedReader(DatasetReader):
    """A reader whose listings were all read when it was opened (split files, text lists, in-memory sets)."""

    def __init__(self, key: str, root: Path, image_root: Path, classnames: list[str],
                 listings: Mapping[str, list[Item]], parent_class_ids: list[int] | None = None) -> None:
        super().__init__(key, root, image_root, classnames, tuple(listings), parent_class_ids)
        self._cache.update({split: list(items) for split, items in listings.items()})

    def _read(self, split: str) -> list[Item]:
        return self._cache[split]
