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

    # -- identity ------------------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return str(self.attrs.get("dataset", "unknown"))

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.read("classes")]

    @property
    def logit_scale(self) -> float:
        """The scale the encoder that wrote the file multiplies its cosine logits by (stored by the writer)."""
        if "logit_scale" not in self.file.attrs:
            raise CacheMissingError(f"{self.path} has no logit_scale attribute", what="array", name="logit_scale")
        return float(self.file.attrs["logit_scale"])

    @property
    def parent_class_ids(self) -> np.ndarray | None:
        return self.read("parent_class_ids").astype(np.int64) if "parent_class_ids" in self else None

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
            "cache": {"path": str(self.path), "key": self.key},
        }

    # -- images --------------------------------------------------------------------------------------
    def split_labels(self, split: str) -> np.ndarray:
        """Labels of every item of the split list (encoded or not), in file order."""
        self._require_split(split)
        return self.read(image(split, "labels")).astype(np.int64)

    def split_paths(self, split: str) -> list[str]:
        self._require_split(split)
        return [str(p) for p in self.read(image(split, "paths"))]

    def positions(self, split: str) -> np.ndarray:
        """Positions (into the split list) that have a usable feature."""
        stored = self.read(image(split, "positions")).astype(np.int64)
        if image(split, "bad") in self:
            stored = stored[self.read(image(split, "bad")) == 0]
        return stored

    def bad_positions(self, split: str) -> np.ndarray:
        """Positions (into the split list) whose image could not be decoded and was skipped."""
        if image(split, "bad") not in self:
            return np.zeros(0, dtype=np.int64)
        stored = self.read(image(split, "positions")).astype(np.int64)
        return stored[self.read(image(split, "bad")) == 1]

    def skipped_paths(self, split: str) -> list[str]:
        """Paths of images that could not be decoded and were skipped."""
        if image(split, "bad") not in self:
            return []
        stored = self.read(image(split, "positions"))
        paths = self.read(image(split, "paths"))
        return [str(paths[p]) for p in stored[self.read(image(split, "bad")) == 1]]

    def features(self, split: str, positions: np.ndarray | None = None) -> np.ndarray:
        """Raw image features (float32) for ``positions`` of the split list; ``None``: every usable item."""
        positions = self.positions(split) if positions is None else np.asarray(positions, dtype=np.int64)
        return self.read_rows(image(split, "features"), self._rows_of(split, positions)).astype(np.float32)

    def aug_features(self, positions: np.ndarray, split: str = "train") -> np.ndarray | None:
        """Augmented train views (V, n, D) of ``positions``, or None when the cache has none."""
        name = image(split, "aug_features")
        if name not in self:
            return None
        rows = self._rows_of(split, np.asarray(positions, dtype=np.int64))
        return self.read_rows(name, rows, axis=1).astype(np.float32)

    def _rows_of(self, split: str, positions: np.ndarray) -> np.ndarray:
        if split not in self._rows:
            self._require_split(split)
            self._rows[split] = self.read(image(split, "positions")).astype(np.int64)
        stored = self._rows[split]
        rows = np.searchsorted(stored, positions)
        rows = np.clip(rows, 0, max(len(stored) - 1, 0))
        missing = positions[(stored[rows] != positions) if len(stored) else np.ones(len(positions), bool)]
        if len(missing):
            raise CacheMissingError(
                f"{self.path}: {len(missing)} requested {split} position(s) are not encoded (e.g. {int(missing[0])})",
                what="positions", name=split)
        if image(split, "bad") in self:
            bad = self.read(image(split, "bad"))[rows] == 1
            if bad.any():
                raise CacheError(
                    f"{self.path}: {split} position {int(positions[bad][0])} is an image that was skipped as "
                    "unreadable; use a subset without it"
                )
        return rows

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
        return self.read(text(template_set, "features")).astype(np.float32)

    def _require_set(self, template_set: str) -> None:
        if text(template_set, "features") not in self:
            raise CacheMissingError(
                f"{self.path} has no template set '{template_set}' (has: {', '.join(self.template_sets) or 'none'})",
                what="template_set", name=template_set)
