"""GDA, Wang et al., ICLR 2024, "A Hard-to-Beat Baseline for Training-free CLIP-based Adaptation".

Gaussian discriminant analysis on the normalised few-shot features: class means mu_c and one shared
covariance, shrunk as in the released code: Sigma_inv = D pinv((N - 1) S + tr(S) I), S the covariance of
the features centred on their class means. The linear classifier w_c = Sigma_inv mu_c,
b_c = log(1/C) - mu_c Sigma_inv mu_c / 2 is fused with zero-shot CLIP:
logits = s v . T0^T + alpha (v . W^T + b), alpha chosen on val from 10^-4, 10^-3, ..., 10^2 (the seven values
of the released code's few-shot search, github.com/mrflogs/ICLR24 ``main_few_shots.py``; first maximum kept, so
ties go to the smaller weight). With one shot per class S = 0, so W = 0: GDA is zero-shot.

Deviations from the released code: the search runs on the few-shot val split (min(K, 4) per class; the
release searches the whole val split); with ``views="released"`` the training samples are the augmented views
alone, as the release's 10 augmented epochs, while ``views="aug"`` (the project's protocol) adds the views to
the plain shots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, top1, view_rows
from stages.fit.features import l2_normalize

DEFAULT_ALPHA_GRID: tuple[float, ...] = tuple(10.0 ** i for i in range(-4, 3))


def gda_parameters(v: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(W (C, D), b (C,)) of GDA with the shrunk shared covariance, from unit features ``v`` and labels ``y``."""
    v = v.astype(np.float64)
    dim = v.shape[1]
    counts = np.bincount(y, minlength=n_classes)
    means = np.zeros((n_classes, dim))
    np.add.at(means, y, v)
    means /= np.maximum(counts, 1)[:, None]
    centred = v - means[y]
    if len(centred) > 1:
        cov = np.cov(centred, rowvar=False)
    else:
        cov = np.zeros((dim, dim))
    precision = dim * np.linalg.pinv((len(centred) - 1) * cov + np.trace(cov) * np.eye(dim), hermitian=True)
    W = means @ precision
    b = np.log(1.0 / n_classes) - 0.5 * np.einsum("cd,cd->c", W, means)
    return W.astype(np.float32), b.astype(np.float32)


class GDAClassifier(LogitsClassifierMixin, BaseEstimator):
    """Training-free GDA fused with zero-shot CLIP (Wang et al., ICLR 2024) on raw CLIP features.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : s of the zero-shot term (100 for CLIP, the released code's fixed 100).
    alpha : weight of the GDA logits used without validation data.
    alpha_grid : searched on the validation data (first maximum kept).
    views : with ``X_aug`` (V, n, D): ``aug`` adds the views to the shots as extra samples of their class;
        ``released`` trains on the views alone (the released code's augmented train cache).
    random_state, device : accepted for a uniform interface; GDA is closed-form and deterministic (numpy).
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 alpha: float = 1.0, alpha_grid: Sequence[float] | None = DEFAULT_ALPHA_GRID,
                 views: str = "aug", random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.views = views
        self.random_state = random_state
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> GDAClassifier:
        """Class means and shrunk covariance of the shots; the fusion weight on val."""
        rows_policy = view_rows(type(self).__name__, self.views, released="views")
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        rows, labels = data.training_rows(rows_policy)
        v = l2_normalize(rows)
        n_classes = len(data.T0)
        self.zs_prototypes_ = data.T0
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = data.T0.shape[1]
        self.W_, self.b_ = gda_parameters(v, labels, n_classes)
        self.alpha_, self.val_top1_ = float(self.alpha), None
        grid = [float(a) for a in self.alpha_grid] if data.has_val and self.alpha_grid else []
        if grid:
            v_val = l2_normalize(data.X_val)
            zs, gda = self._terms(v_val)
            scores = [top1(zs + a * gda, data.y_val) for a in grid]
            best = int(np.argmax(scores))
            self.alpha_, self.val_top1_ = grid[best], float(scores[best])
        self.hyperparameters_ = {"alpha": self.alpha_}
        self.search_ = {"grid": {"alpha": grid}, "selected_on": "val"} if grid else {}
        return self

    def _terms(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(zero-shot logits, GDA logits) of unit features ``v``."""
        return float(self.logit_scale) * v @ self.zs_prototypes_.T, v @ self.W_.T + self.b_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Fused logits s v . T0^T + alpha (v . W^T + b), shape (n, C)."""
        check_is_fitted(self, "W_")
        zs, gda = self._terms(l2_normalize(X))
        return zs + self.alpha_ * gda
