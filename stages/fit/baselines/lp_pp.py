"""LP++, Huang et al., CVPR 2024, "LP++: A Surprisingly Strong Linear Probe for Few-Shot CLIP".

A linear probe whose class weights blend learnable visual weights with class-wise scaled text embeddings:
logits_c(v) = v . w_c + b_c + alpha_c v . t_c, v and t_c unit vectors. Trained full-batch by block
coordinate descent with step sizes derived from the data instead of searched (the paper's Lipschitz
bounds), following the released code (github.com/FereshteShakeri/FewShot-CLIP-Strong-Baseline,
``methods/linear_probe_p2.py``):
- w_c starts at the sum of the class's few-shot features;
- lr_w = 4 N / lambda_max(V^T V), SGD with momentum 0.9 on (W, b) every epoch;
- every alpha_c starts at one value, 250 x the mean over classes c of the mean over c's shots of their OWN
  text logit v . t_c (the release's ``calculate_init_alpha``);
- every 10 epochs alpha takes a plain step of lr_alpha = N / (4 max_j sum_i (v_i . t_j)^2) along its
  gradient as the release keeps it: alpha is outside the optimiser, whose ``zero_grad`` never clears it,
  so the step uses the gradients summed over ALL epochs since the start, never reset;
- 300 epochs; the epoch is chosen on val (highest top-1, ties to the later epoch, as the released code).

Deviations from the released code: b starts at 0 (the release's nn.Linear draws it at random); the epoch
is chosen on the few-shot val split and test is never scored during training (the release scores test at each
new val best and reports that); ``views="aug"`` (the project's protocol) trains on the shots plus every cached
view, ``views="released"`` on one view per image (the release's single augmented pass; the view drawn with
``random_state``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1, view_rows
from stages.fit.features import l2_normalize


def lp_pp_step_sizes(v: torch.Tensor, text_logits: torch.Tensor) -> tuple[float, float]:
    """(lr_w, lr_alpha) from the data: 4N / lambda_max(V^T V) and N / (4 max_j sum_i (v_i . t_j)^2)."""
    n = len(v)
    lam = float(torch.linalg.eigvalsh((v.T @ v).double()).max())
    return 4.0 * n / lam, n / (4.0 * float((text_logits ** 2).sum(0).max()))


def lp_pp_init_alpha(text_logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """250 x the mean over classes c (those with shots) of the mean over c's shots of v . t_c (the released
    code's initial blend), as a 0-d tensor on the logits' device."""
    own = text_logits.gather(1, y[:, None])[:, 0]
    sums = torch.zeros(n_classes, dtype=own.dtype, device=own.device).index_add_(0, y, own)
    counts = torch.zeros_like(sums).index_add_(0, y, torch.ones_like(own))
    present = (counts > 0).to(own.dtype)
    return 250.0 * (sums / counts.clamp(min=1.0)).sum() / present.sum()


class LPPlusPlusClassifier(LogitsClassifierMixin, BaseEstimator):
    """LP++ on raw CLIP image features (no learning rate to search: step sizes come from the data).

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : kept for a uniform interface; LP++'s logits carry their own scale (alpha).
    epochs : full-batch epochs (300, the released configuration).
    alpha_every : epochs between updates of the blending weights alpha (10).
    views : with ``X_aug`` (V, n, D): ``aug`` trains on the shots plus every view as extra rows; ``released``
        on one view per image (drawn with ``random_state``), as the released code's one augmented pass.
    random_state : draws the view of each image with ``views="released"``; nothing else is random (full
        batch, deterministic initialisation).
    device : torch device for training.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *, epochs: int = 300,
                 alpha_every: int = 10, views: str = "aug", random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.epochs = epochs
        self.alpha_every = alpha_every
        self.views = views
        self.random_state = random_state
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> LPPlusPlusClassifier:
        """Block coordinate descent on (W, b) and alpha; the epoch chosen on val when given."""
        rows_policy = view_rows(type(self).__name__, self.views, released="one_view")
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        rows, labels = data.training_rows(rows_policy, seed=int(self.random_state))
        n_classes, dim = data.T0.shape
        work = float(len(rows)) * dim * n_classes * 3 * (1 + (len(data.X_val) / len(rows) if data.has_val else 0))
        with cpu_threads_for(work, self.device):
            self._train(rows, labels, data, n_classes)
        self.zs_prototypes_ = data.T0
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = dim
        return self

    def _train(self, rows: np.ndarray, labels: np.ndarray, data, n_classes: int) -> None:
        dev = torch.device(self.device)
        v = torch.from_numpy(l2_normalize(rows)).to(dev)
        y = torch.from_numpy(labels).to(dev)
        T = torch.from_numpy(data.T0).to(dev)
        text = v @ T.T
        lr_w, lr_alpha = lp_pp_step_sizes(v, text)
        W = torch.zeros(n_classes, v.shape[1], device=dev).index_add_(0, y, v).requires_grad_(True)
        b = torch.zeros(n_classes, device=dev, requires_grad=True)
        start = lp_pp_init_alpha(text, y, n_classes)
        alpha = start.expand(n_classes).clone().requires_grad_(True)
        opt = torch.optim.SGD([W, b], lr=lr_w, momentum=0.9)
        val = None
        if data.has_val:
            v_val = torch.from_numpy(l2_normalize(data.X_val)).to(dev)
            val = (v_val, v_val @ T.T, torch.from_numpy(data.y_val).to(dev))
        best = None
        curve = []
        for epoch in range(int(self.epochs)):
            loss = F.cross_entropy(v @ W.T + b + alpha * text, y)
            opt.zero_grad(set_to_none=True)  # W and b only: alpha's gradient keeps adding up, as released
            loss.backward()
            opt.step()
            if (epoch + 1) % int(self.alpha_every) == 0:
                with torch.no_grad():
                    alpha -= lr_alpha * alpha.grad
            if val is not None:
                with torch.no_grad():
                    v_val, text_val, y_val = val
                    acc = top1(v_val @ W.T + b + alpha * text_val, y_val)
                curve.append(acc)
                if best is None or acc >= best[0]:
                    best = (acc, epoch + 1, W.detach().clone(), b.detach().clone(), alpha.detach().clone())
        if best is None:
            best = (None, int(self.epochs), W.detach(), b.detach(), alpha.detach())
        self.val_top1_, self.best_epoch_ = best[0], best[1]
        self.W_, self.b_, self.alpha_ = (t.cpu().numpy() for t in best[2:])
        self.step_sizes_ = {"lr_w": lr_w, "lr_alpha": lr_alpha}
        self.hyperparameters_ = {"epochs": int(self.best_epoch_), "lr_w": lr_w, "lr_alpha": lr_alpha,
                                 "alpha_init": float(start), "alpha_mean": float(self.alpha_.mean())}
        self.search_ = ({"grid": {"epoch": list(range(1, int(self.epochs) + 1))}, "selected_on": "val"}
                        if val is not None else {})
        self.val_curve_ = [[i + 1, a] for i, a in enumerate(curve)]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """v . W^T + b + alpha * (v . T0^T), shape (n, C)."""
        check_is_fitted(self, "W_")
        v = l2_normalize(X)
        return v @ self.W_.T + self.b_ + self.alpha_ * (v @ self.zs_prototypes_.T)
