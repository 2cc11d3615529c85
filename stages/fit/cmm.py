"""Cross-Modal Mapping (CMM, arXiv 2412.20110) as a scikit-learn estimator on cached CLIP features.

v = norm(x); v' = v + vW (W = 0 at start: training starts at zero-shot CLIP) [plain map: v' = vW, W = I];
T starts at T0 (normalised mean of normalised per-template text features) and trains unless frozen;
l_zs = s v.T0^T, l_cmm = s norm(v').norm(T)^T, fused l = l_zs + alpha l_cmm (no fusion: l = l_cmm);
loss = CE(l, y) + lambda_tri * mean(max(0, d(v', T_y) - d(v', T_n) + margin)), n the closest wrong
prototype, d the Euclidean distance between unit vectors. See docs method.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils.validation import check_is_fitted

from stages.shared.errors import FitError
from stages.fit.baselines.common import cpu_threads_for
from stages.fit.features import class_prototypes, l2_normalize

MAPS = ("residual", "plain")

# What ``pipeline fit`` searches on the few-shot val split, on top of the checkpoint (every ``eval_every``
# steps, step 0 = zero-shot) and the fusion weight alpha (re-searched after training: the logits decompose).
DEFAULT_GRID: dict[str, list] = {"lr": [5e-4, 2e-3]}
HYPERPARAMETERS = ("lr", "lambda_tri", "margin", "train_prototypes", "weight_decay", "batch_size", "steps",
                   "map", "bias", "fusion")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=1e-12)


def cmm_logits(v: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None, T: torch.Tensor,
               residual: bool, scale: float) -> torch.Tensor:
    """l_cmm = s norm(v').norm(T)^T for unit image features ``v``."""
    mapped = v @ W if not residual else v + v @ W
    if bias is not None:
        mapped = mapped + bias
    return scale * _unit(mapped) @ _unit(T).T


def triplet_loss(cos: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge on d(own) - d(hardest wrong) + margin, d = ||a - b|| = sqrt(2 - 2 cos) for unit vectors."""
    dist = torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-8))
    rows = torch.arange(len(y), device=cos.device)
    wrong = cos.scatter(1, y[:, None], float("-inf"))
    hardest = wrong.argmax(1)
    return F.relu(dist[rows, y] - dist[rows, hardest] + margin).mean()


class CMMClassifier(ClassifierMixin, BaseEstimator):
    """Cross-Modal Mapping few-shot classifier over raw CLIP image features.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; class c is label c.
    logit_scale : CLIP's exp(logit_scale), s (100 for CLIP).
    lr : Adam(W) learning rate of the map W (and of T, times ``proto_lr_scale``).
    steps : optimisation steps on mini-batches of ``batch_size`` (reshuffled every pass; full batch if smaller).
    lambda_tri, margin : triplet weight and margin.
    alpha : weight of l_cmm in the fused logits while training.
    alpha_grid : fusion weights tried on the validation data after training (logits decompose, so cheap).
    train_prototypes : False freezes T = T0 (ablation).
    map : "residual" (v + vW, W = 0) or "plain" (vW, W = I; ablation).
    bias : add a trainable bias to the mapped feature (ablation).
    fusion : False uses l_cmm alone (ablation).
    weight_decay : decoupled decay of W (towards the identity map for "residual") and of the bias.
    eval_every : steps between validation checkpoints when validation data are given.
    grid : optional {parameter: [values]} searched on the validation data (one fit per combination, the
        best by validation accuracy, ties to the lower cross-entropy); ignored without validation data.
    random_state : seeds the batch order (torch.Generator; no global state is touched).
    device : torch device for training ("cpu" or "cuda").

    With ``X_val, y_val`` given to ``fit``, the checkpoint (step, including step 0 = zero-shot) and the
    fusion weight are chosen on them: highest accuracy, ties to the lowest cross-entropy of the fused
    logits divided by (1 + alpha). Without, the last step and ``alpha`` are kept.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *, lr: float = 1e-3,
                 proto_lr_scale: float = 1.0, steps: int = 120, batch_size: int = 256, lambda_tri: float = 1.0,
                 margin: float = 0.1, alpha: float = 1.0,
                 alpha_grid: Sequence[float] | None = (0.25, 0.5, 1.0, 2.0, 4.0),
                 train_prototypes: bool = True, map: str = "residual", bias: bool = False, fusion: bool = True,
                 weight_decay: float = 1e-2, eval_every: int = 12, grid: Mapping[str, Sequence] | None = None,
                 random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.lr = lr
        self.proto_lr_scale = proto_lr_scale
        self.steps = steps
        self.batch_size = batch_size
        self.lambda_tri = lambda_tri
        self.margin = margin
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.train_prototypes = train_prototypes
        self.map = map
        self.bias = bias
        self.fusion = fusion
        self.weight_decay = weight_decay
        self.eval_every = eval_every
        self.grid = grid
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ fitting
    def _check_params(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.prototypes is None:
            raise FitError("CMMClassifier needs prototypes= (C x D or C x L x D text features)")
        if self.map not in MAPS:
            raise FitError(f"map must be one of {', '.join(MAPS)}, got {self.map!r}")
        T0 = class_prototypes(self.prototypes)
        if X.ndim != 2 or X.shape[1] != T0.shape[1]:
            raise FitError(f"image features have shape {X.shape}, text prototypes have D={T0.shape[1]}")
        if len(y) != len(X) or y.min() < 0 or y.max() >= len(T0):
            raise FitError(f"labels must be class indices in [0, {len(T0)}) with one per feature row")
        return T0

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            X_aug: np.ndarray | None = None) -> CMMClassifier:
        """Train W (and T) on raw features ``X`` (plus augmented views ``X_aug`` (V, n, D), as extra rows)
        with labels ``y``; choose the grid point, the step and alpha on (X_val, y_val), never on test."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        self._check_params(X, y)
        if X_aug is not None:
            X_aug = np.asarray(X_aug, dtype=np.float32)
            if X_aug.ndim != 3 or X_aug.shape[1:] != X.shape:
                raise FitError(f"augmented views have shape {X_aug.shape}, expected (V, {X.shape[0]}, {X.shape[1]})")
            X, y = np.concatenate([X, X_aug.reshape(-1, X.shape[1])]), np.concatenate([y] * (1 + len(X_aug)))
        have_val = X_val is not None and y_val is not None and len(y_val) > 0
        if self.grid and have_val:
            return self._fit_grid(X, y, X_val, y_val)
        with self._threads(X):
            self._fit_one(X, y, X_val if have_val else None, y_val if have_val else None)
        self.search_ = self._search({}) if have_val else {}
        return self

    def _fit_grid(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> CMMClassifier:
        """One fit per grid point; keep the best on val (accuracy, then lower cross-entropy)."""
        best, best_score = None, None
        for point in ParameterGrid({k: list(v) for k, v in self.grid.items()}):
            candidate = clone(self).set_params(grid=None, **point)
            with self._threads(X):
                candidate._fit_one(X, y, X_val, y_val)
            if best_score is None or candidate.val_score_ > best_score:
                best, best_score = candidate, candidate.val_score_
        for name, value in vars(best).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(self, name, value)
        self.search_ = self._search({k: list(v) for k, v in self.grid.items()})
        return self

    def _search(self, grid: dict) -> dict:
        """What was searched on val: ``grid``, the fusion weights and the checkpoints of the kept fit."""
        steps = [step for step, _ in self.val_curve_]
        return {"grid": {**grid, "alpha": self._alphas(True), "step": steps}, "selected_on": "val"}

    def _threads(self, X: np.ndarray):
        """One torch thread for small problems (thread wake-ups cost more than the maths), all for large ones."""
        dim = X.shape[1]
        n_classes = np.asarray(self.prototypes).shape[0]
        per_step = min(len(X), int(self.batch_size)) * dim * (dim + n_classes)
        return cpu_threads_for(20 * per_step, self.device)

    def _fit_one(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None,
                 y_val: np.ndarray | None) -> None:
        """Train with this estimator's own parameters; select the checkpoint and alpha on val when given."""
        T0 = self._check_params(X, y)
        dev = torch.device(self.device)
        residual = self.map == "residual"
        scale = float(self.logit_scale)
        dim = T0.shape[1]

        t0 = torch.from_numpy(T0).to(dev)
        v = torch.from_numpy(l2_normalize(X)).to(dev)
        yt = torch.from_numpy(y).to(dev)
        zs = scale * v @ t0.T
        W = torch.zeros(dim, dim, device=dev) if residual else torch.eye(dim, device=dev)
        W.requires_grad_(True)
        T = t0.clone().requires_grad_(self.train_prototypes)
        b = torch.zeros(dim, device=dev, requires_grad=True) if self.bias else None

        decayed = [W] + ([b] if b is not None else [])
        groups = [{"params": decayed, "weight_decay": self.weight_decay}]
        if self.train_prototypes:
            groups.append({"params": [T], "weight_decay": 0.0, "lr": self.lr * self.proto_lr_scale})
        opt = torch.optim.AdamW(groups, lr=self.lr)

        val = None
        if X_val is not None and y_val is not None and len(y_val):
            v_val = torch.from_numpy(l2_normalize(np.asarray(X_val, dtype=np.float32))).to(dev)
            y_val_t = torch.from_numpy(np.asarray(y_val, dtype=np.int64)).to(dev)
            val = (v_val, y_val_t, scale * v_val @ t0.T)
        alphas = self._alphas(val is not None)

        gen = torch.Generator(device="cpu").manual_seed(int(self.random_state))
        n = len(y)
        batch = min(int(self.batch_size), n)
        order = torch.randperm(n, generator=gen)
        cursor = 0
        best = None
        curve: list[tuple[int, float]] = []
        for step in range(int(self.steps) + 1):
            if val is not None and (step % self.eval_every == 0 or step == self.steps):
                with torch.no_grad():
                    cand = self._checkpoint_score(val, W, b, T, residual, scale, alphas)
                curve.append((step, cand[0]))
                if best is None or cand[:2] > best[0][:2]:
                    best = (cand, step, W.detach().clone(), T.detach().clone(),
                            None if b is None else b.detach().clone())
            if step == self.steps:
                break
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor:cursor + batch].to(dev)
            cursor += batch
            l_cmm = cmm_logits(v[idx], W, b, T, residual, scale)
            logits = zs[idx] + self.alpha * l_cmm if self.fusion else l_cmm
            loss = F.cross_entropy(logits, yt[idx])
            if self.lambda_tri:
                loss = loss + self.lambda_tri * triplet_loss(l_cmm / scale, yt[idx], self.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        if best is None:
            self.alpha_ = float(self.alpha)
            self.best_step_ = int(self.steps)
            W_, T_, b_ = W.detach(), T.detach(), (None if b is None else b.detach())
            self.val_top1_ = None
            self.val_score_ = None
        else:
            (acc, neg_ce, alpha), self.best_step_, W_, T_, b_ = best
            self.alpha_, self.val_top1_ = float(alpha), float(acc)
            self.val_score_ = [float(acc), float(neg_ce)]
        self.W_ = W_.cpu().numpy()
        self.prototypes_ = _unit(T_).cpu().numpy()
        self.zs_prototypes_ = T0
        self.bias_ = None if b_ is None else b_.cpu().numpy()
        self.val_curve_ = [[int(step), float(acc)] for step, acc in curve]
        self.classes_ = np.arange(len(T0))
        self.n_features_in_ = dim
        chosen = {name: getattr(self, name) for name in HYPERPARAMETERS}
        self.hyperparameters_ = {**chosen, "steps": self.best_step_, "alpha": self.alpha_}

    def _alphas(self, have_val: bool) -> list[float]:
        if not self.fusion:
            return [1.0]
        if have_val and self.alpha_grid:
            return [float(a) for a in self.alpha_grid]
        return [float(self.alpha)]

    def _checkpoint_score(self, val: tuple, W: torch.Tensor, b: torch.Tensor | None, T: torch.Tensor,
                          residual: bool, scale: float, alphas: list[float]) -> tuple[float, float, float]:
        """(val top-1, -CE, alpha) of the best fusion weight at this checkpoint."""
        v_val, y_val, zs_val = val
        l_cmm = cmm_logits(v_val, W, b, T, residual, scale)
        best = None
        for a in alphas:
            fused = (zs_val + a * l_cmm) / (1.0 + a) if self.fusion else l_cmm
            acc = float((fused.argmax(1) == y_val).double().mean()) * 100.0
            cand = (acc, -float(F.cross_entropy(fused, y_val)), a)
            if best is None or cand[:2] > best[:2]:
                best = cand
        return best

    # ---------------------------------------------------------------- inference
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Mapped unit image features norm(v') (the features CMM compares with its prototypes)."""
        check_is_fitted(self, "W_")
        v = l2_normalize(X)
        mapped = v @ self.W_ if self.map == "plain" else v + v @ self.W_
        if self.bias_ is not None:
            mapped = mapped + self.bias_
        return l2_normalize(mapped)

    def decompose(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(l_zs, l_cmm): the two logit terms, so the fusion weight can be re-searched cheaply."""
        check_is_fitted(self, "W_")
        s = float(self.logit_scale)
        return s * l2_normalize(X) @ self.zs_prototypes_.T, s * self.transform(X) @ self.prototypes_.T

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Fused logits l_zs + alpha_ l_cmm (l_cmm alone without fusion), shape (n, C)."""
        l_zs, l_cmm = self.decompose(np.asarray(X, dtype=np.float32))
        return l_zs + self.alpha_ * l_cmm if self.fusion else l_cmm

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax of the decision function."""
        logits = self.decision_function(X)
        z = np.exp(logits - logits.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class index with the highest fused logit."""
        return self.classes_[self.decision_function(X).argmax(1)]
