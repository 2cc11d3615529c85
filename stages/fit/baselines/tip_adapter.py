"""Tip-Adapter (training-free) and Tip-Adapter-F (trainable keys), Zhang et al., ECCV 2022, as estimators.

logits = s v . T0^T + alpha exp(-beta (1 - v . K^T)) V, v = norm(x), K the cache keys (normalised few-shot
train features; the mean of the augmented views when given), V their one-hot labels. See tip_cache.py.

The search follows the released code's per-dataset configs (released.py, ``dataset``): beta over
[0.1, scale_beta) in 200 steps and alpha over [0.1, scale_alpha) in 20 steps (e.g. Caltech101 [12, 5],
Flowers [50, 50]), beta-major, first maximum kept; the dataset's init_alpha / init_beta are the values used
without validation data and Tip-Adapter-F's training weights. Deviations from the released code: the search
runs on the few-shot val split (min(K, 4) per class; the release uses the whole val split), and Tip-Adapter-F's
epoch is chosen on val (the release keeps its best TEST epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.fit.estimator import FitData, LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1
from stages.fit.baselines.released import TIP, TipConfig, released_key
from stages.fit.baselines.tip_cache import build_cache, equal_blocks, search_alpha_beta, tip_logits
from stages.fit.baselines.tip_train import train_keys
from stages.fit.features import l2_normalize


class TipAdapterClassifier(LogitsClassifierMixin, BaseEstimator):
    """Training-free Tip-Adapter on raw CLIP image features.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : s of the zero-shot term (100 for CLIP, as the original's fixed 100).
    dataset : the dataset key whose released config gives every value left at None (released.py; an unknown
        key or None: Caltech101's).
    alpha, beta : residual weight and sharpness used without validation data; None: the config's init_alpha,
        init_beta.
    alpha_grid, beta_grid : searched on the validation data, beta-major, first maximum kept; None: the
        config's ``[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]`` grids (20 alphas, 200 betas);
        an empty sequence: no search.
    random_state, device : no randomness here; ``device`` runs the search and the logits.

    ``X_aug`` (V, n, D): the keys are the normalised mean of the V raw views (Tip-Adapter's cache), else
    the normalised train features. Keys are stored sorted by class (``cache_keys_``, ``cache_labels_``).
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 dataset: str | None = None, alpha: float | None = None, beta: float | None = None,
                 alpha_grid: Sequence[float] | None = None, beta_grid: Sequence[float] | None = None,
                 random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.dataset = dataset
        self.alpha = alpha
        self.beta = beta
        self.alpha_grid = alpha_grid
        self.beta_grid = beta_grid
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _config(self) -> TipConfig:
        return TIP[released_key(self.dataset)]

    def _init(self) -> tuple[float, float]:
        """(alpha, beta) without a search: the parameters, or the released config's initial values."""
        config = self._config()
        return (float(config.init_alpha if self.alpha is None else self.alpha),
                float(config.init_beta if self.beta is None else self.beta))

    def _grids(self) -> tuple[list[float], list[float]]:
        """(alphas, betas) to search: the parameters, or the released config's grids."""
        config = self._config()
        alphas = config.alpha_grid() if self.alpha_grid is None else [float(a) for a in self.alpha_grid]
        betas = config.beta_grid() if self.beta_grid is None else [float(b) for b in self.beta_grid]
        return alphas, betas

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
        alphas, betas = self._grids()
        if data.has_val and alphas and betas:
            v_val, zs_val = self._tensors(l2_normalize(data.X_val))
            y_val = torch.from_numpy(data.y_val).to(self.device)
            alpha, beta, acc = search_alpha_beta(v_val, y_val, zs_val, keys, labels, alphas, betas, self._block)
            self.search_ = {"grid": {"alpha": alphas, "beta": betas}, "selected_on": "val",
                            "config": released_key(self.dataset)}
            self.val_top1_ = acc
        else:
            alpha, beta = self._init()
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
        # the val affinities once per beta of the grid
        work = (0 if data.X_val is None else data.X_val.size) * len(keys) * len(self._grids()[1])
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
    train), AdamW (lr 1e-3, eps 1e-4, torch's default weight decay 0.01), ``epochs`` (None: the dataset's
    released train_epoch, 20; EuroSAT 100), batches of ``batch_size`` = 256 reshuffled each epoch
    (torch.Generator seeded with ``random_state``), a cosine learning-rate schedule over all steps,
    cross-entropy on the fused logits with the initial alpha, beta (``alpha``, ``beta``; None: the dataset's
    released init_alpha, init_beta, e.g. 3 and 1 for Caltech101). Epoch e trains on augmented view e mod V
    when ``X_aug`` is given (the release draws a fresh augmentation each epoch), else on X.

    Epoch selection: the published code keeps the epoch with the best TEST accuracy (a known leak); here
    the best epoch is chosen on the VALIDATION data (first maximum, at the initial alpha, beta), and
    alpha, beta are then re-searched on val with those keys. Without val, the last epoch and the initial
    alpha, beta are kept. ``val_curve_`` lists [epoch, val top-1] for every epoch.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 dataset: str | None = None, alpha: float | None = None, beta: float | None = None,
                 alpha_grid: Sequence[float] | None = None, beta_grid: Sequence[float] | None = None,
                 lr: float = 1e-3, eps: float = 1e-4, weight_decay: float = 0.01, epochs: int | None = None,
                 batch_size: int = 256, random_state: int = 0, device: str = "cpu") -> None:
        super().__init__(prototypes, logit_scale, dataset=dataset, alpha=alpha, beta=beta, alpha_grid=alpha_grid,
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
            alpha, beta = self._init()
            epochs = self._config().epochs if self.epochs is None else int(self.epochs)
            keys, curve, best_epoch = train_keys(
                keys0, labels, train, torch.from_numpy(data.y).to(self.device), val, self._block,
                alpha=alpha, beta=beta, lr=float(self.lr), eps=float(self.eps),
                weight_decay=float(self.weight_decay), epochs=epochs,
                batch_size=int(self.batch_size), seed=int(self.random_state))
            self.cache_keys_ = keys.cpu().numpy()
            self._select(data, keys, labels)
        self.best_epoch_ = best_epoch
        self.val_curve_ = curve
        del self._block
        return self
