"""Tip-Adapter (training-free) and Tip-Adapter-F (trainable keys), Zhang et al., ECCV 2022, as estimators.

logits = s v . T0^T + alpha exp(-beta (1 - v . K^T)) V, v = norm(x), K the cache keys (normalised few-shot
train features; the mean of the augmented views when given), V their one-hot labels. See tip_cache.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.fit.estimator import FitData, LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1
from stages.fit.baselines.tip_cache import (DEFAULT_ALPHA_GRID, DEFAULT_BETA_GRID, build_cache, equal_blocks,
                                            search_alpha_beta, tip_logits)
from stages.fit.baselines.tip_train import train_keys
from stages.fit.features import l2_normalize


class TipAdapterClassifier(LogitsClassifierMixin, BaseEstimator):
    """Training-free Tip-Adapter on raw CLIP image features.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : s of the zero-shot term (100 for CLIP, as the original's fixed 100).
    alpha, beta : residual weight and sharpness used without validation data (1, 1).
    alpha_grid, beta_grid : searched on the validation data, beta-major, first maximum kept. Defaults:
        the original's ``[i * (hi - 0.1) / steps + 0.1 for i in range(steps)]`` with beta hi = 7 and
        alpha hi = 3, its steps (200, 20) coarsened to (20, 10): beta 0.1, 0.445, ..., 6.655 and
        alpha 0.1, 0.39, ..., 2.71.
    random_state, device : no randomness here; ``device`` runs the search and the logits.

    ``X_aug`` (V, n, D): the keys are the normalised mean of the V raw views (Tip-Adapter's cache), else
    the normalised train features. Keys are stored sorted by class (``cache_keys_``, ``cache_labels_``).
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 alpha: float = 1.0, beta: float = 1.0,
                 alpha_grid: Sequence[float] | None = DEFAULT_ALPHA_GRID,
                 beta_grid: Sequence[float] | None = DEFAULT_BETA_GRID,
                 random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.alpha = alpha
        self.beta = beta
        self.alpha_grid = alpha_grid
        self.beta_grid = beta_grid
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _tensors(self, v: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(unit features, zero-shot logits) on the device, for unit rows ``v``."""
        vt = torch.from_numpy(v).to(self.device)
        t0 = torch.from_numpy(self.zs_prototypes_).to(self.device)
        return vt, float(self.logit_scale) * vt @ t0.T

    def _cache_tensors(self, keys: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.cache_keys_ if keys is None else keys
        return (torch.from_numpy(keys).to(self.device),
                torch.from_numpy(self.cache_labels_).to(self.device))

    def _start(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None,
               X_aug: np.ndarray | None) -> FitData:
        """Check inputs; store T0, the cache and the class bookkeeping."""
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        self.zs_prototypes_ = data.T0
        self.classes_ = np.arange(len(data.T0))
        self.n_features_in_ = data.T0.shape[1]
        self.cache_keys_, self.cache_labels_ = build_cache(data.X, data.y, data.X_aug)
        self._block = equal_blocks(self.cache_labels_, len(data.T0))
        return data

    def _select(self, data: FitData, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Choose alpha, beta on val (grid search) or keep the defaults; set the fitted summary."""
        if data.has_val and self.alpha_grid and self.beta_grid:
            alphas = [float(a) for a in self.alpha_grid]
            betas = [float(b) for b in self.beta_grid]
            v_val, zs_val = self._tensors(l2_normalize(data.X_val))
            y_val = torch.from_numpy(data.y_val).to(self.device)
            alpha, beta, acc = search_alpha_beta(v_val, y_val, zs_val, keys, labels, alphas, betas, self._block)
            self.search_ = {"grid": {"alpha": alphas, "beta": betas}, "selected_on": "val"}
            self.val_top1_ = acc
        else:
            alpha, beta = float(self.alpha), float(self.beta)
            self.search_ = {}
            self.val_top1_ = None
            if data.has_val:
                self.val_top1_ = top1(self._logits(data.X_val, alpha, beta), data.y_val)
        self.hyperparameters_ = {"alpha": alpha, "beta": beta}

    def _logits(self, X: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        v, zs = self._tensors(l2_normalize(X))
        keys, labels = self._cache_tensors()
        block = equal_blocks(self.cache_labels_, len(self.classes_))
        with cpu_threads_for(v.numel() * len(keys), self.device):
            return tip_logits(v, zs, keys, labels, alpha, beta, block).cpu().numpy()

    # ------------------------------------------------------------------ API
    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> TipAdapterClassifier:
        """Build the cache; search alpha, beta on (X_val, y_val) when given."""
        data = self._start(X, y, X_val, y_val, X_aug)
        keys, labels = self._cache_tensors()
        work = (0 if data.X_val is None else data.X_val.size) * len(keys)  # one pass over the val affinities
        with cpu_threads_for(work, self.device):
            self._select(data, keys, labels)
        del self._block
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Tip-Adapter logits (n, C) with the chosen alpha, beta."""
        check_is_fitted(self, "cache_keys_")
        hp = self.hyperparameters_
        return self._logits(np.asarray(X, dtype=np.float32), hp["alpha"], hp["beta"])


class TipAdapterFClassifier(TipAdapterClassifier):
    """Tip-Adapter-F: the cache keys are trained, then alpha and beta are re-searched on val.

    Training (the original's recipe): keys initialised to the cache keys (not re-normalised while they
    train), AdamW (lr 1e-3, eps 1e-4, torch's default weight decay 0.01), ``epochs`` = 20, batches of
    ``batch_size`` = 256 reshuffled each epoch (torch.Generator seeded with ``random_state``), a cosine
    learning-rate schedule over all steps, cross-entropy on the fused logits with alpha = ``alpha``,
    beta = ``beta`` (1, 1). Epoch e trains on augmented view e mod V when ``X_aug`` is given, else on X.

    Epoch selection: the published code keeps the epoch with the best TEST accuracy (a known leak); here
    the best epoch is chosen on the VALIDATION data (first maximum, alpha = beta = 1 while choosing), and
    alpha, beta are then re-searched on val with those keys. Without val, the last epoch and alpha = beta
    = 1 are kept. ``val_curve_`` lists [epoch, val top-1] for every epoch.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 alpha: float = 1.0, beta: float = 1.0,
                 alpha_grid: Sequence[float] | None = DEFAULT_ALPHA_GRID,
                 beta_grid: Sequence[float] | None = DEFAULT_BETA_GRID,
                 lr: float = 1e-3, eps: float = 1e-4, weight_decay: float = 0.01, epochs: int = 20,
                 batch_size: int = 256, random_state: int = 0, device: str = "cpu") -> None:
        super().__init__(prototypes, logit_scale, alpha=alpha, beta=beta, alpha_grid=alpha_grid,
                         beta_grid=beta_grid, random_state=random_state, device=device)
        self.lr = lr
        self.eps = eps
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> TipAdapterFClassifier:
        """Train the keys; pick the epoch on val; re-search alpha, beta on val."""
        data = self._start(X, y, X_val, y_val, X_aug)
        views = [data.X] if data.X_aug is None else list(data.X_aug)
        keys0, labels = self._cache_tensors()
        work = min(int(self.batch_size), len(data.y)) * keys0.numel()  # per training step
        with cpu_threads_for(work, self.device):
            train = [self._tensors(l2_normalize(view)) for view in views]
            val = None
            if data.has_val:
                v_val, zs_val = self._tensors(l2_normalize(data.X_val))
                val = (v_val, zs_val, torch.from_numpy(data.y_val).to(self.device))
            keys, curve, best_epoch = train_keys(
                keys0, labels, train, torch.from_numpy(data.y).to(self.device), val, self._block,
                alpha=float(self.alpha), beta=float(self.beta), lr=float(self.lr), eps=float(self.eps),
                weight_decay=float(self.weight_decay), epochs=int(self.epochs),
                batch_size=int(self.batch_size), seed=int(self.random_state))
            self.cache_keys_ = keys.cpu().numpy()
            self._select(data, keys, labels)
        self.best_epoch_ = best_epoch
        self.val_curve_ = curve
        del self._block
        return self
