"""accuracy_metrics: top-1, top-5 (only with >= 5 classes) and mean per-class accuracy, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from stages.fit.metrics import accuracy_metrics


def test_hand_computed_example():
    # 6 classes; 4 test images of class 0, 1 image each of classes 1 and 2
    logits = np.full((6, 6), 0.0)
    y = np.array([0, 0, 0, 0, 1, 2])
    logits[0, 0] = logits[1, 0] = logits[2, 0] = 9  # three right
    logits[3, 5] = 9                                 # class 0 image ranked 6th of 6 for its class: top-5 miss
    logits[3, 0] = -9
    logits[4, 3], logits[4, 1] = 9, 5                # class 1: second -> top-5 hit, top-1 miss
    logits[5, 2] = 9                                 # right
    m = accuracy_metrics(logits, y, n_classes=6)
    assert m["test_top1"] == pytest.approx(4 / 6 * 100)
    assert m["test_top5"] == pytest.approx(5 / 6 * 100)
    assert m["test_mean_per_class"] == pytest.approx((3 / 4 + 0 + 1) / 3 * 100)  # classes 3..5 have no images


def test_no_top5_below_five_classes():
    logits = np.eye(4)
    m = accuracy_metrics(logits, np.arange(4), n_classes=4)
    assert "test_top5" not in m and m["test_top1"] == 100.0 == m["test_mean_per_class"]


def test_top5_matches_a_full_sort():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((400, 30)).astype(np.float32)
    y = rng.integers(0, 30, 400)
    ranked = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    expected = (ranked == y[:, None]).any(1).mean() * 100
    assert accuracy_metrics(logits, y, n_classes=30)["test_top5"] == pytest.approx(expected)
