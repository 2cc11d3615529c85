"""What every baseline shares: input checks, the val split, and predict/predict_proba from logits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import ClassifierMixin

from stages.shared.errors import FitError
from stages.fit.features import class_prototypes, softmax


@dataclass
class FitData:
    """Checked fit inputs: T0 (C, D), raw X (n, D) float32, y (n,) int64, optional val and views."""

    T0: np.ndarray
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_aug: np.ndarray | None

    @property
    def has_val(self) -> bool:
        """True when validation data were given (the only data hyper-parameters may be chosen on)."""
        return self.X_val is not None


def _check_labels(name: str, what: str, y: np.ndarray, n_rows: int, n_classes: int) -> None:
    if y.ndim != 1 or len(y) != n_rows:
        raise FitError(f"{name}: {what} labels have shape {y.shape}, expected ({n_rows},), one per feature row")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise FitError(f"{name}: {what} labels must be class indices in [0, {n_classes}), "
                       f"got values in [{y.min()}, {y.max()}]")


def check_fit_inputs(name: str, prototypes: np.ndarray | None, X: np.ndarray, y: np.ndarray,
                     X_val: np.ndarray | None, y_val: np.ndarray | None,
                     X_aug: np.ndarray | None) -> FitData:
    """Validate shapes and labels once, so that each estimator fails with one clear line."""
    if prototypes is None:
        raise FitError(f"{name} needs prototypes= (C x D or C x L x D raw text features)")
    T0 = class_prototypes(prototypes)
    n_classes, dim = T0.shape
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or X.shape[1] != dim:
        raise FitError(f"{name}: image features have shape {X.shape}, text prototypes have D={dim}")
    if len(X) == 0:
        raise FitError(f"{name}: no training features; sample at least one shot per class")
    _check_labels(name, "train", y, len(X), n_classes)
    if (X_val is None) != (y_val is None):
        raise FitError(f"{name}: give both X_val and y_val, or neither")
    if X_val is not None:
        X_val = np.asarray(X_val, dtype=np.float32)
        y_val = np.asarray(y_val, dtype=np.int64)
        if X_val.ndim != 2 or X_val.shape[1] != dim:
            raise FitError(f"{name}: val features have shape {X_val.shape}, text prototypes have D={dim}")
        _check_labels(name, "val", y_val, len(X_val), n_classes)
        if len(X_val) == 0:
            X_val = y_val = None
    if X_aug is not None:
        X_aug = np.asarray(X_aug, dtype=np.float32)
        if X_aug.ndim != 3 or X_aug.shape[1:] != X.shape or len(X_aug) == 0:
            raise FitError(f"{name}: augmented views have shape {X_aug.shape}, expected (V, {len(X)}, {dim}) "
                           f"views of the train features; pass X_aug=None for plain training")
    return FitData(T0, X, y, X_val, y_val, X_aug)


#: below this many multiply-adds per pass (one loss evaluation, training step or val scoring), one CPU
#: thread: thread hand-offs cost ~1 ms each, and far more when the cores are shared (measured on 2 busy
#: cores: Tip-Adapter-F at 100 classes 1.9 s on one thread, 10.3 s on two).
SMALL_WORK = 1_000_000_000


@contextmanager
def cpu_threads_for(work: float, device: str) -> Iterator[None]:
    """Run small CPU problems on one torch thread (restored afterwards); large ones as configured.

    Small tensors spend more time waking threads than computing (measured: a 160 x 10 cross-entropy takes
    0.3 ms on one thread, 1-4 ms on two), which made small fits 10-100 times slower.
    """
    previous = torch.get_num_threads()
    single = torch.device(device).type == "cpu" and work < SMALL_WORK and previous > 1
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(previous)


def val_top1(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent (what every search maximises)."""
    return float(np.mean(np.asarray(logits).argmax(1) == y)) * 100.0


class LogitsClassifierMixin(ClassifierMixin):
    """predict / predict_proba on top of a subclass's ``decision_function`` (logits)."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax of the logits."""
        return softmax(np.asarray(self.decision_function(X), dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class index with the highest logit."""
        return self.classes_[np.asarray(self.decision_function(X)).argmax(1)]
