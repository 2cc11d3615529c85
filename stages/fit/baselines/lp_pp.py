"""LP++, Huang et al., CVPR 2024, "LP++: A Surprisingly Strong Linear Probe for Few-Shot CLIP".

A linear probe whose class weights blend learnable visual weights with class-wise scaled text embeddings:
logits_c(v) = v . w_c + b_c + alpha_c v . t_c, v and t_c unit vectors. Trained full-batch by block
coordinate descent with step sizes derived from the data instead of searched (the paper's Lipschitz
bounds, as in its released code):
- w_c starts at the sum of the class's few-shot features, b at 0 (the code's nn.Linear draws b at random);
- lr_w = 4 N / lambda_max(V^T V), SGD with momentum 0.9 on (W, b) every epoch;
- alpha starts at 250 x the mean over (class c, prototype j) of the class-c mean of v . t_j, and takes a
  plain gradient step of lr_alpha = N / (4 max_j sum_i (v_i . t_j)^2) every 10 epochs (the paper's
  alternation; the released code lets alpha's gradient accumulate between those steps, we use the current one);
- 300 epochs; the epoch is chosen on val (highest top-1, ties to the later epoch, as the released code),
  never on test (the released code scores test at each new val best and keeps it; we only record val).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1
from stages.fit.features import l2_normalize


def lp_pp_step_sizes(v: torch.Tensor, text_logits: torch.Tensor) -> tuple[float, float]:
    """(lr_w, lr_alpha) from the data: 4N / lambda_max(V^T V) and N / (4 max_j sum_i (v_i . t_j)^2)."""
    n = len(v)
    lam = float(torch.linalg.eigvalsh((v.T @ v).double()).max())
    return 4.0 * n / lam, n / (4.0 * float((text_logits ** 2).sum(0).max()))


def lp_pp_init_alpha(text_logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """250 x the mean over (c, j) of the class-c mean of v . t_j (the released code's initial blend)."""
    sums = torch.zeros(n_classes, text_logits.shape[1], dtype=text_logits.dtype).index_add_(0, y, text_logits)
    counts = torch.bincount(y, minlength=n_classes).clamp(min=1).to(text_logits.dtype)
    return float(250.0 * (sums / counts[:, None]).mean())


class LPPlusPlusClassifier(LogitsClassifierMixin, BaseEstimator):
    """LP++ on raw CLIP image features (no learning rate to search: step sizes come from the data).

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : kept for a uniform interface; LP++'s logits carry their own scale (alpha).
    epochs : full-batch epochs (300, the released configuration).
    alpha_every : epochs between updates of the blending weights alpha (10).
    random_state, device : no randomness (full batch, deterministic initialisation); ``device`` trains.

    ``X_aug`` (V, n, D): augmented views are extra training rows of their class.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *, epochs: int = 300,
                 alpha_every: int = 10, random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.epochs = epochs
        self.alpha_every = alpha_every
        self.random_state = random_state
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> LPPlusPlusClassifier:
        """Block coordinate descent on (W, b) and alpha; the epoch chosen on val when given."""
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        rows, labels = data.training_rows()
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
        alpha = torch.full((n_classes,), lp_pp_init_alpha(text, y, n_classes), device=dev, requires_grad=True)
        opt = torch.optim.SGD([W, b], lr=lr_w, momentum=0.9)
        val = None
        if data.has_val:
            v_val = torch.from_numpy(l2_normalize(data.X_val)).to(dev)
            val = (v_val, v_val @ T.T, torch.from_numpy(data.y_val).to(dev))
        best = None
        curve = []
        for epoch in range(int(self.epochs)):
            loss = F.cross_entropy(v @ W.T + b + alpha * text, y)
            opt.zero_grad(set_to_none=True)
            alpha.grad = None
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
                                 "alpha_mean": float(self.alpha_.mean())}
        self.search_ = ({"grid": {"epoch": list(range(1, int(self.epochs) + 1))}, "selected_on": "val"}
                        if val is not None else {})
        self.val_curve_ = [[i + 1, a] for i, a in enumerate(curve)]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """v . W^T + b + alpha * (v . T0^T), shape (n, C)."""
        check_is_fitted(self, "W_")
        v = l2_normalize(X)
        return v @ self.W_.T + self.b_ + self.alpha_ * (v @ self.zs_prototypes_.T)
