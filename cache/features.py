"""The feature layout inside a cache file, and a reader that serves it by split and by position.

```
attrs                                  format, schema_version, key, key.<field>..., dataset, model, weights,
                                       random_weights, logit_scale, created, argv
/classes                     (C,)      str
/parent_class_ids            (C,)      int64, optional: index of each class in a parent label space
/image/<split>/labels        (N,)      int64, every item of the split list, in file order
/image/<split>/paths         (N,)      str, relative to the dataset's image folder
/image/<split>/positions     (M,)      int64, sorted: the items that are encoded (all N unless asked otherwise)
/image/<split>/features      (M, D)    raw encoder output, one row per encoded position
/image/<split>/bad           (M,)      uint8, 1 where the image could not be decoded (skipped)
/image/<split>/aug_features  (V, M, D) augmented views (train only, optional)
/text/<set>/templates        (L,)      str
/text/<set>/features         (C, L, D) one row per (class, template)
```
Every block-written array has a ``<name>__done`` progress mask beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache import validate
from cache.errors import CacheError, CacheMissingError
from cache.reader import CacheReader


def image(split: str, name: str) -> str:
    return f"image/{split}/{name}"


def text(template_set: str, name: str) -> str:
    return f"text/{template_set}/{name}"


class FeatureCache(CacheReader):
    """A complete cache file seen as features by split, position and template set."""

    def __init__(self, path: str | Path, *, require_complete: bool = True) -> None:
        super().__init__(path, require_complete=require_complete)
        self._rows: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}

    # -- identity ------------------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return str(self.attrs.get("dataset", "unknown"))

    @property
    def classes(self) -> list[str]:
        names = self.read("classes")
        if np.ndim(names) != 1 or len(names) < 1:
            raise validate._bad(self.path, f"classes has shape {np.shape(names)}, expected a non-empty list")
        return [str(c) for c in names]

    @property
    def logit_scale(self) -> float:
        """The scale the encoder that wrote the file multiplies its cosine logits by (stored by the writer)."""
        if "logit_scale" not in self.file.attrs:
            raise CacheMissingError(f"{self.path} has no logit_scale attribute", what="array", name="logit_scale")
        return validate.logit_scale(self.path, self.file.attrs["logit_scale"])

    @property
    def parent_class_ids(self) -> np.ndarray | None:
        if "parent_class_ids" not in self:
            return None
        ids = validate.integers(self.path, "parent_class_ids", self.read("parent_class_ids"), 0, 2**31)
        if len(ids) != len(self.classes):
            raise validate._bad(self.path, f"parent_class_ids has {len(ids)} entries for {len(self.classes)} classes")
        return ids

    @property
    def splits(self) -> list[str]:
        return sorted(self.file["image"].keys()) if "image" in self else []

    @property
    def template_sets(self) -> list[str]:
        return sorted(self.file["text"].keys()) if "text" in self else []

    def describe(self) -> dict:
        attrs = self.attrs
        return {
            "dataset": self.dataset,
            "model": attrs.get("model"),
            "weights": attrs.get("weights"),
            "random_weights": bool(attrs.get("random_weights", False)),
            "cache": {"path": str(self.path.resolve()), "key": self.key},
        }

    # -- images --------------------------------------------------------------------------------------
    def split_labels(self, split: str) -> np.ndarray:
        """Labels of every item of the split list (encoded or not), in file order."""
        if split not in self._labels:
            self._require_split(split)
            name = image(split, "labels")
            self._labels[split] = validate.integers(self.path, name, self.read(name), 0, len(self.classes))
        return self._labels[split]

    def split_paths(self, split: str) -> list[str]:
        self._require_split(split)
        return [str(p) for p in self.read(image(split, "paths"))]

    def positions(self, split: str) -> np.ndarray:
        """Positions (into the split list) that have a usable feature."""
        stored = self._stored_positions(split)
        if image(split, "bad") in self:
            stored = stored[self._bad_flags(split) == 0]
        return stored

    def bad_positions(self, split: str) -> np.ndarray:
        """Positions (into the split list) whose image could not be decoded and was skipped."""
        if image(split, "bad") not in self:
            return np.zeros(0, dtype=np.int64)
        return self._stored_positions(split)[self._bad_flags(split) == 1]

    def skipped_paths(self, split: str) -> list[str]:
        """Paths of images that could not be decoded and were skipped."""
        if image(split, "bad") not in self:
            return []
        paths = self.read(image(split, "paths"))
        if np.ndim(paths) != 1 or len(paths) != len(self.split_labels(split)):
            raise validate._bad(self.path, f"{image(split, 'paths')} does not list one path per item")
        return [str(paths[p]) for p in self.bad_positions(split)]

    def features(self, split: str, positions: np.ndarray | None = None) -> np.ndarray:
        """Raw image features (float32) for ``positions`` of the split list; ``None``: every usable item."""
        positions = self.positions(split) if positions is None else np.asarray(positions, dtype=np.int64)
        name = image(split, "features")
        validate.rows(self.path, name, self._dataset(name).shape, len(self._stored_positions(split)))
        return validate.finite(self.path, name, self.read_rows(name, self._rows_of(split, positions)).astype(np.float32))

    def aug_features(self, positions: np.ndarray, split: str = "train") -> np.ndarray | None:
        """Augmented train views (V, n, D) of ``positions``, or None when the cache has none."""
        name = image(split, "aug_features")
        if name not in self:
            return None
        rows = self._rows_of(split, np.asarray(positions, dtype=np.int64))
        validate.rows(self.path, name, self._dataset(name).shape, len(self._stored_positions(split)), axis=1)
        return validate.finite(self.path, name, self.read_rows(name, rows, axis=1).astype(np.float32))

    def _rows_of(self, split: str, positions: np.ndarray) -> np.ndarray:
        stored = self._stored_positions(split)
        rows = np.searchsorted(stored, positions)
        rows = np.clip(rows, 0, max(len(stored) - 1, 0))
        missing = positions[(stored[rows] != positions) if len(stored) else np.ones(len(positions), bool)]
        if len(missing):
            raise CacheMissingError(
                f"{self.path}: {len(missing)} requested {split} position(s) are not encoded (e.g. {int(missing[0])})",
                what="positions", name=split)
        if image(split, "bad") in self:
            bad = self._bad_flags(split)[rows] == 1
            if bad.any():
                raise CacheError(
                    f"{self.path}: {split} position {int(positions[bad][0])} is an image that was skipped as "
                    "unreadable; use a subset without it"
                )
        return rows

    def _stored_positions(self, split: str) -> np.ndarray:
        """The encoded positions of a split, checked: strictly increasing, inside the split list."""
        if split not in self._rows:
            n_items = len(self.split_labels(split))
            name = image(split, "positions")
            self._rows[split] = validate.positions(self.path, name, self.read(name), n_items)
        return self._rows[split]

    def _bad_flags(self, split: str) -> np.ndarray:
        """The unreadable-image flags of a split: 0 or 1, one per encoded position."""
        name = image(split, "bad")
        flags = validate.integers(self.path, name, self.read(name), 0, 2)
        validate.rows(self.path, name, flags.shape, len(self._stored_positions(split)))
        return flags

    def _require_split(self, split: str) -> None:
        if image(split, "labels") not in self:
            raise CacheMissingError(
                f"{self.path} has no '{split}' split (has: {', '.join(self.splits) or 'none'})",
                what="split", name=split)

    # -- text ----------------------------------------------------------------------------------------
    def templates(self, template_set: str) -> list[str]:
        self._require_set(template_set)
        return [str(t) for t in self.read(text(template_set, "templates"))]

    def text_features(self, template_set: str) -> np.ndarray:
        """Per-template text features (C, L, D), float32."""
        self._require_set(template_set)
        name = text(template_set, "features")
        validate.text_shape(self.path, name, self._dataset(name).shape, len(self.classes))
        return validate.finite(self.path, name, self.read(name).astype(np.float32))

    def _require_set(self, template_set: str) -> None:
        if text(template_set, "features") not in self:
            raise CacheMissingError(
                f"{self.path} has no template set '{template_set}' (has: {', '.join(self.template_sets) or 'none'})",
                what="template_set", name=template_set)
