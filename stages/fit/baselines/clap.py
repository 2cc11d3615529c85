"""CLAP: CLass-Adaptive linear Probe (Silva-Rodriguez, Hajimiri, Ben Ayed, Dolz, CVPR 2024), as an estimator.

"A Closer Look at the Few-Shot Adaptation of Large Vision-Language Models" (arXiv 2312.12730), official
code github.com/jusiro/CLAP (``trainers/adapters.py``, config ``SGD_lr1e-1_B256_ep300``, run with
``INIT=ZS CONSTRAINT=l2``). Our implementation is written from the paper's description and checked against
the released code's settings; no code is copied.

Model (ZS-LP, the paper's zero-shot-initialised linear probe)
    logits = s * norm(v) . norm(W)^T,  W (C x D) trainable, initialised at the zero-shot prototypes t_k,
    s the model's logit scale (CLIP's exp(logit_scale) = 100), no bias.
Objective (CLAP)
    CE(logits, y) + (1/C) sum_k lambda_k ||w_k - t_k||^2,
    the class-wise multipliers lambda_k set once, before training, to the zero-shot confidence of class k on
    its own support rows: lambda_k = mean_{i: y_i = k} softmax(s * v_i . T0^T)_k (the paper's class-adaptive
    initialisation, which replaces a validation set: classes the zero-shot model already gets right are held
    close to their text prototype). Nothing is selected on validation data: ``search_ = {}``.

What follows the paper / its released configuration
    * zero-shot initialisation, L2-normalised weights and features in the logits, fixed temperature s;
    * the l2 constraint to the initial prototypes, averaged over classes, with class-adaptive multipliers from
      the zero-shot softmax on the support rows, kept fixed during training (``multiplier_update="fixed"``,
      the setting behind the paper's CLAP results);
    * optimisation: SGD, lr 0.1, momentum 0.9 (Dassl's default), no weight decay, batch 256, 300 epochs,
      1 warm-up epoch at a constant lr of 1e-5, then cosine annealing per epoch
      (lr_e = 0.5 * lr * (1 + cos(pi * e / epochs)) for epoch e >= 1);
    * training rows: the augmented views when given (the paper caches 20 random-resized-crop + flip views per
      shot and trains on all of them; the plain feature is not added); otherwise the plain features. One
      "epoch" is as many batches as the few-shot set of *images* gives (floor(n / 256), at least 1), drawn
      from a fresh shuffle of all rows, as the released trainer does;
    * the multipliers are computed on those same training rows.

Our choices (stated, not in the paper)
    * direction of t_k: the project's T0 (each template normalised, averaged, normalised), so that the initial
      model is exactly :class:`ZeroShotClassifier`. Scale of t_k (``prototype_scale="raw"``): the norm of the
      mean of the raw template embeddings, as the released code keeps the prototypes unnormalised (the scale
      sets the effective step size, since the logits normalise W). ``prototype_scale="unit"`` uses T0 itself.
    * ``multiplier_update="alm"``: the released code's optional augmented-Lagrangian outer step after every
      epoch (PHR penalty: lambda_k <- max(0, lambda_k + rho_k h_k), rho_k <- h_k, h_k = ||w_k - t_k||^2,
      rho initialised at 0). It is not the configuration of the paper's tables; kept as an ablation.
    * ``multiplier``: a constant for every class instead of the zero-shot confidences (an ablation;
      ``multiplier=0`` is ZS-LP). None (default) is the paper's class-adaptive initialisation.
    * shuffling uses a local torch generator seeded by ``random_state`` (the original uses numpy's global one).
    * with validation data, ``val_top1_`` is reported for information only; it selects nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.shared.errors import FitError
from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1
from stages.fit.features import l2_normalize

PROTOTYPE_SCALES = ("raw", "unit")
MULTIPLIER_UPDATES = ("fixed", "alm")


def clap_logits(X: np.ndarray, W: np.ndarray, logit_scale: float) -> np.ndarray:
    """s * norm(X) . norm(W)^T for raw image features X (n, D) and class weights W (C, D)."""
    return float(logit_scale) * l2_normalize(X) @ l2_normalize(W).T


def raw_prototype_norms(prototypes: np.ndarray) -> np.ndarray:
    """(C,) norms of the mean raw template embedding per class (the released code's prototype scale)."""
    text = np.asarray(prototypes, dtype=np.float64)
    mean = text if text.ndim == 2 else text.mean(axis=1)
    return np.linalg.norm(mean, axis=-1).astype(np.float32)


def zero_shot_multipliers(v: torch.Tensor, y: torch.Tensor, T0: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """lambda_k = mean over rows of class k of the zero-shot softmax probability of class k (0 if no rows)."""
    n_classes = T0.shape[0]
    prob = torch.softmax(logit_scale * v @ T0.T, dim=1).gather(1, y[:, None])[:, 0]
    total = torch.zeros(n_classes, dtype=prob.dtype, device=prob.device).index_add_(0, y, prob)
    count = torch.zeros_like(total).index_add_(0, y, torch.ones_like(prob))
    return total / count.clamp(min=1.0)


class CLAPClassifier(LogitsClassifierMixin, BaseEstimator):
    """CLAP (CVPR 2024): a zero-shot-initialised linear probe held near the text prototypes, no validation.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : s (100 for CLIP), the fixed temperature of the probe's logits and of the zero-shot softmax
        that sets the multipliers.
    epochs, lr, momentum, batch_size, warmup_epochs, warmup_lr : the paper's SGD schedule (300, 0.1, 0.9,
        256, 1, 1e-5), cosine-annealed per epoch after the warm-up.
    multiplier : None (paper: class-adaptive, from the zero-shot confidences), or one constant for every
        class (ablation; 0 = ZS-LP without constraint).
    multiplier_update : "fixed" (paper) or "alm" (the released code's optional per-epoch outer step).
    prototype_scale : "raw" (released code: prototypes keep the raw text embeddings' norm) or "unit".
    random_state : seeds the shuffles (local generator).
    device : torch device.

    See the module docstring for what follows the paper and what is our choice.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 epochs: int = 300, lr: float = 0.1, momentum: float = 0.9, batch_size: int = 256,
                 warmup_epochs: int = 1, warmup_lr: float = 1e-5, multiplier: float | None = None,
                 multiplier_update: str = "fixed", prototype_scale: str = "raw",
                 random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.epochs = epochs
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = warmup_lr
        self.multiplier = multiplier
        self.multiplier_update = multiplier_update
        self.prototype_scale = prototype_scale
        self.random_state = random_state
        self.device = device

    def _check_params(self) -> None:
        name = type(self).__name__
        if self.prototype_scale not in PROTOTYPE_SCALES:
            raise FitError(f"{name}: prototype_scale must be one of {', '.join(PROTOTYPE_SCALES)}, "
                           f"got {self.prototype_scale!r}")
        if self.multiplier_update not in MULTIPLIER_UPDATES:
            raise FitError(f"{name}: multiplier_update must be one of {', '.join(MULTIPLIER_UPDATES)}, "
                           f"got {self.multiplier_update!r}")
        if self.multiplier is not None and not float(self.multiplier) >= 0:
            raise FitError(f"{name}: multiplier must be >= 0 or None (class-adaptive), got {self.multiplier}")
        if int(self.epochs) < 0 or int(self.batch_size) < 1 or not float(self.lr) > 0:
            raise FitError(f"{name}: need epochs >= 0, batch_size >= 1 and lr > 0, got epochs={self.epochs}, "
                           f"batch_size={self.batch_size}, lr={self.lr}")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (from 0): constant warm-up, then cosine over ``epochs``."""
        if epoch < int(self.warmup_epochs):
            return float(self.warmup_lr)
        return 0.5 * float(self.lr) * (1.0 + math.cos(math.pi * epoch / max(1, int(self.epochs))))

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> CLAPClassifier:
        """Train the constrained probe on the support rows (the views when given); no validation is used."""
        self._check_params()
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        n_classes, dim = data.T0.shape
        scale = (raw_prototype_norms(self.prototypes) if self.prototype_scale == "raw"
                 else np.ones(n_classes, dtype=np.float32))
        anchors = data.T0 * scale[:, None]
        views = [data.X] if data.X_aug is None else list(data.X_aug)
        rows = l2_normalize(np.concatenate(views))
        labels = np.tile(data.y, len(views))
        batch = int(self.batch_size)
        n_images = len(data.y)
        # the released trainer: as many batches per epoch as the image loader gives (drop_last when n >= batch)
        per_epoch = max(1, n_images // batch) if n_images >= batch else 1
        s = float(self.logit_scale)
        dev = torch.device(self.device)
        with cpu_threads_for(min(batch, len(rows)) * n_classes * dim, self.device):
            v = torch.from_numpy(rows).to(dev)
            yt = torch.from_numpy(labels).to(dev)
            t = torch.from_numpy(anchors).to(dev)
            T0 = torch.from_numpy(data.T0).to(dev)
            if self.multiplier is None:
                lam = zero_shot_multipliers(v, yt, T0, s)
            else:
                lam = torch.full((n_classes,), float(self.multiplier), device=dev)
            initial = lam.detach().cpu().numpy().astype(np.float32)
            W, lam = self._train(v, yt, t, lam, per_epoch)
        self.weights_ = W.cpu().numpy()
        self.zs_prototypes_ = data.T0
        self.multipliers_ = lam.cpu().numpy().astype(np.float32)
        self.initial_multipliers_ = initial
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = dim
        self.hyperparameters_ = {
            "epochs": int(self.epochs), "lr": float(self.lr), "momentum": float(self.momentum),
            "batch_size": batch, "batches_per_epoch": per_epoch, "warmup_epochs": int(self.warmup_epochs),
            "warmup_lr": float(self.warmup_lr), "optimizer": "sgd", "schedule": "cosine",
            "constraint": "l2", "multipliers": "zero_shot" if self.multiplier is None else float(self.multiplier),
            "multiplier_update": self.multiplier_update, "prototype_scale": self.prototype_scale,
            "train_rows": "plain" if data.X_aug is None else f"views x{len(views)}",
            "validation": "none (CLAP selects nothing on validation data)",
        }
        self.search_: dict = {}
        self.val_top1_ = (top1(self.decision_function(data.X_val), data.y_val) if data.has_val else None)
        return self

    def _train(self, v: torch.Tensor, y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor,
               per_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """SGD on CE + mean_k lam_k ||w_k - t_k||^2 from W = t; returns (W, final multipliers)."""
        s = float(self.logit_scale)
        W = t.detach().clone().requires_grad_(True)
        opt = torch.optim.SGD([W], lr=self.lr_at(0), momentum=float(self.momentum), weight_decay=0.0)
        gen = torch.Generator(device="cpu").manual_seed(int(self.random_state))
        batch = int(self.batch_size)
        rho = torch.zeros_like(lam)
        for epoch in range(int(self.epochs)):
            for group in opt.param_groups:
                group["lr"] = self.lr_at(epoch)
            order = torch.randperm(len(y), generator=gen).to(v.device)
            for b in range(per_epoch):
                idx = order[b * batch:(b + 1) * batch]
                if len(idx) == 0:
                    break
                logits = s * v[idx] @ F.normalize(W, dim=1).T
                penalty = torch.mean(lam * (W - t).pow(2).sum(1))
                loss = F.cross_entropy(logits, y[idx]) + penalty
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if self.multiplier_update == "alm":
                with torch.no_grad():
                    h = (W - t).pow(2).sum(1)
                    lam = torch.clamp(lam + rho * h, min=0.0)
                    rho = h.clone()
        return W.detach(), lam

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Probe logits s * norm(x) . norm(W)^T, shape (n, C)."""
        check_is_fitted(self, "weights_")
        return clap_logits(X, self.weights_, self.logit_scale)
