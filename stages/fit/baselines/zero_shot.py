"""Zero-shot CLIP as an estimator: logits s * norm(x) . T0^T; nothing is learned from the shots."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, top1
from stages.fit.features import l2_normalize


def zero_shot_logits(X: np.ndarray, T0: np.ndarray, logit_scale: float) -> np.ndarray:
    """s * norm(X) @ T0^T for raw image features X (n, D) and unit prototypes T0 (C, D)."""
    return float(logit_scale) * l2_normalize(X) @ T0.T


class ZeroShotClassifier(LogitsClassifierMixin, BaseEstimator):
    """Zero-shot CLIP: argmax s * norm(x) . T0^T, T0 the class prototypes of the raw text features.

    ``fit`` only stores T0 and, when validation data are given, its val top-1 (``val_top1_``); the train
    features are checked but unused, so the baseline runs through the same fit/persist path as the others.
    ``random_state`` and ``device`` are accepted for a uniform interface and unused.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.random_state = random_state
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> ZeroShotClassifier:
        """Store T0; record the val top-1 when (X_val, y_val) are given."""
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        self.zs_prototypes_ = data.T0
        self.classes_ = np.arange(len(data.T0))
        self.n_features_in_ = data.T0.shape[1]
        self.hyperparameters_: dict = {}
        self.search_: dict = {}
        self.val_top1_ = (top1(zero_shot_logits(data.X_val, data.T0, self.logit_scale), data.y_val)
                          if data.has_val else None)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Zero-shot logits (n, C)."""
        check_is_fitted(self, "zs_prototypes_")
        return zero_shot_logits(X, self.zs_prototypes_, self.logit_scale)
