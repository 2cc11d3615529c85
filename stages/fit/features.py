"""Small numeric helpers shared by every method: L2 normalisation, class prototypes, softmax."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unit-length rows (float32); zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), EPS)


def class_prototypes(text: np.ndarray) -> np.ndarray:
    """T0 (C, D): normalise each template's embedding, average over templates, normalise the mean.

    Accepts (C, L, D) per-template features or (C, D) features (taken as one template).
    """
    text = np.asarray(text, dtype=np.float32)
    if text.ndim == 2:
        return l2_normalize(text)
    return l2_normalize(l2_normalize(text).mean(axis=1))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
