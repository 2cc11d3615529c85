"""Where stage two gets its features: a protocol the HDF5 cache reader meets, and an in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from stages.shared.errors import FitError


@runtime_checkable
class FeatureSource(Protocol):
    """Cached CLIP features of one dataset x model; the cache reader implements it by duck typing.

    Features are RAW encoder outputs (not L2-normalised); positions index the split lists in file order.
    """

    dataset: str
    classes: list[str]
    logit_scale: float
    parent_class_ids: np.ndarray | None
    template_sets: list[str]
    splits: list[str]

    def split_labels(self, split: str) -> np.ndarray:
        """(N,) int64 labels of every item of the split list, in file order; reads no features."""
        ...

    def positions(self, split: str) -> np.ndarray:
        """Positions of the split list that have a usable feature (unreadable images left out)."""
        ...

    def bad_positions(self, split: str) -> np.ndarray:
        """Positions of the split list whose image was skipped as unreadable at extraction."""
        ...

    def skipped_paths(self, split: str) -> list[str]:
        """Paths of the images skipped as unreadable at extraction."""
        ...

    def features(self, split: str, positions: np.ndarray | None = None) -> np.ndarray:
        """(n, D) float32 raw image features at ``positions`` of the split list (None = all)."""
        ...

    def aug_features(self, positions: np.ndarray) -> np.ndarray | None:
        """(V, n, D) augmented views of the train items at ``positions``, or None when not cached."""
        ...

    def text_features(self, template_set: str) -> np.ndarray:
        """(C, L, D) float32 raw text features, one row per template."""
        ...

    def describe(self) -> dict:
        """{"dataset", "model", "weights", "random_weights", "cache": {"path", "key"}}."""
        ...


@dataclass
class ArraySource:
    """A FeatureSource held in memory: for tests, benchmarks, notebooks and the estimator docs.

    ``image`` maps a split name to (features (N, D), labels (N,)); ``text`` maps a template set to (C, L, D);
    ``aug`` is (V, N_train, D) views of the train split, aligned with ``image["train"]``.
    """

    dataset: str
    classes: list[str]
    image: dict[str, tuple[np.ndarray, np.ndarray]]
    text: dict[str, np.ndarray]
    logit_scale: float = 100.0
    aug: np.ndarray | None = None
    parent_class_ids: np.ndarray | None = None
    model: str = "synthetic"
    weights: str = "none"
    random_weights: bool = False
    cache_key: str = "in-memory"
    meta: dict = field(default_factory=dict)

    @property
    def template_sets(self) -> list[str]:
        """Names of the cached template sets."""
        return list(self.text)

    @property
    def splits(self) -> list[str]:
        """Names of the splits held."""
        return list(self.image)

    def positions(self, split: str) -> np.ndarray:
        """Every position of the split (nothing is skipped in memory)."""
        return np.arange(len(self.split_labels(split)), dtype=np.int64)

    def bad_positions(self, split: str) -> np.ndarray:
        """None: an in-memory source has no unreadable images."""
        return np.zeros(0, dtype=np.int64)

    def skipped_paths(self, split: str) -> list[str]:
        """None: an in-memory source has no unreadable images."""
        return []

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self.image:
            raise FitError(f"split '{split}' is not in the features of {self.dataset}; "
                           f"available: {', '.join(self.image)}")
        return self.image[split]

    def split_labels(self, split: str) -> np.ndarray:
        """(N,) int64 labels of the split, file order."""
        return np.asarray(self._split(split)[1], dtype=np.int64)

    def features(self, split: str, positions: np.ndarray | None = None) -> np.ndarray:
        """(n, D) float32 raw features at ``positions`` (None = all)."""
        feats = self._split(split)[0]
        out = feats if positions is None else feats[np.asarray(positions, dtype=np.int64)]
        return np.asarray(out, dtype=np.float32)

    def aug_features(self, positions: np.ndarray) -> np.ndarray | None:
        """(V, n, D) train views at ``positions``, or None."""
        if self.aug is None:
            return None
        return np.asarray(self.aug[:, np.asarray(positions, dtype=np.int64)], dtype=np.float32)

    def text_features(self, template_set: str) -> np.ndarray:
        """(C, L, D) raw text features of a template set."""
        if template_set not in self.text:
            raise FitError(f"template set '{template_set}' is not cached for {self.dataset}; "
                           f"available: {', '.join(self.text)}")
        return np.asarray(self.text[template_set], dtype=np.float32)

    def describe(self) -> dict:
        """Provenance written into every run record."""
        return {"dataset": self.dataset, "model": self.model, "weights": self.weights,
                "random_weights": self.random_weights,
                "cache": {"path": None, "key": self.cache_key}}
