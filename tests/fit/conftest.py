"""Synthetic CLIP-like features with a built-in modality gap, shared by the stage-two tests."""

from __future__ import annotations

import numpy as np
import pytest

from stages.shared.sampling import coop_sample
from stages.fit.synthetic import make_clip_like


def few_shot_split(source, shots: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Train/val features of a CoOp subset and the full test split of an ArraySource."""
    X, y = source.image["train"]
    Xv, yv = source.image["val"]
    subset = coop_sample(y, yv, shots, seed)
    tr, va = np.array(subset["train"]), np.array(subset["val"])
    out = {"X": X[tr], "y": y[tr], "X_val": Xv[va], "y_val": yv[va],
           "X_test": source.image["test"][0], "y_test": source.image["test"][1]}
    if source.aug is not None:
        out["X_aug"] = source.aug[:, tr]
    return out


@pytest.fixture(scope="session")
def gap_source():
    """20 classes, D = 128: image features are rotated, shifted, noisy copies of their class text features."""
    return make_clip_like(n_classes=20, dim=128, train_per_class=20, val_per_class=6, test_per_class=40, seed=3)
