"""Test-split accuracies a record carries: top-1, top-5 and mean per-class accuracy (CLIP_benchmark's set).

Top-5 is given only where there are at least 5 classes (with fewer it is trivially 100%); an image counts
when fewer than 5 classes score strictly above its label (one comparison per logit, no partial sort). Mean per-class
accuracy averages each test class's recall, the figure the CLIP paper reports for Aircraft, Caltech101,
Flowers and Pets; classes absent from the test split are left out of the mean.
"""

from __future__ import annotations

import numpy as np


def accuracy_metrics(logits: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """``test_top1``, ``test_top5`` (n_classes >= 5) and ``test_mean_per_class``, in percent, from (n, C) logits."""
    logits, y = np.asarray(logits), np.asarray(y, dtype=np.int64)
    top1 = logits.argmax(1) == y
    metrics = {"test_top1": float(top1.mean() * 100.0)}
    if n_classes >= 5:
        own = logits[np.arange(len(y)), y]
        above = np.count_nonzero(logits > own[:, None], axis=1)
        metrics["test_top5"] = float((above < 5).mean() * 100.0)
    present = np.unique(y)
    metrics["test_mean_per_class"] = float(np.mean([top1[y == c].mean() for c in present]) * 100.0)
    return metrics
