"""ProKeR (training-free), Bendou et al., CVPR 2025, "A Kernel-based Perspective on Training-free Few-shot
Adaptation of Large Vision-Language Models", as an estimator.

Kernel ridge regression of the residual between the shots' one-hot labels and their zero-shot logits, in
closed form, added to zero-shot CLIP:

    f(v) = v . T0^T + k(v, S) A,     A = (K / lambda + I)^{-1} (Y - S T0^T),     K = k(S, S),
    k(a, b) = exp(-beta (1 - a . b))   (an RBF kernel on unit vectors),

S the (N, D) unit support rows and Y their one-hot labels. As in the released code
(github.com/ybendou/ProKeR, ``trainers/proker.py``) the zero-shot term is the plain cosine (scale 1; the
residual is fitted on that scale), so ``logit_scale`` is unused. beta and lambda are chosen on val over the
dataset's released grid (released.py: ``torch.linspace`` ranges, e.g. Caltech101 beta 0.5..3 x 20 and lambda
0.001..1 x 10, ImageNet beta 1.5..3 x 10 and lambda 0.05..0.25 x 10), beta-major, the first maximum kept (the
release's ``if acc > best``).

Cost and memory: per beta one kernel K (N x N); per lambda one Cholesky factorisation of K + lambda I
(N^3 / 3) and a solve with C right-hand sides, so a fit is O(grid x N^3): at ImageNet 16 shots (N = 16,000)
about 2 TFLOP per grid point, fine on a GPU and minutes per point on a CPU (BENCHMARKS.md). Memory is K and its
factor (2 N^2 floats, 2 GB at N = 16,000; the diagonal is shifted in place instead of copying K) plus the
val/test affinities in row chunks of at most ``CHUNK_ELEMENTS``; more than ``max_support`` rows are refused.

Deviations from the released code:
- the solve: A = lambda (K + lambda I)^{-1} R by Cholesky (the same solution as the release's LU solve of
  K / lambda + I, half the work), with an LU solve when the factorisation fails;
- validation: the few-shot val split (min(K, 4) per class), not the release's full val split;
- without validation data: beta 1.7, lambda 0.1 (the only fixed values the release ships, its ImageNet
  16-shot choice) unless ``beta`` / ``lmbda`` are given;
- training rows: ``views="aug"`` (the project's protocol) the shots plus every cached view as extra samples;
  ``views="released"`` the views alone, as the release's 10 augmented epochs; without views the plain shots
  (the release's ``--augment-epoch 1`` clean transform);
- the class prototypes T0 are the project's template ensemble (the release: CoOp's single template).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.shared.errors import FitError
from stages.fit.baselines.released import PROKER, PROKER_FIXED, released_key
from stages.fit.baselines.tip_cache import chunks, rbf_kernel
from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, view_rows
from stages.fit.features import l2_normalize


def kernel_ridge(K: torch.Tensor, R: torch.Tensor, lmbda: float) -> torch.Tensor:
    """(K / lmbda + I)^{-1} R, as lmbda (K + lmbda I)^{-1} R by Cholesky (LU if K + lmbda I is not numerically
    positive definite). K's diagonal is shifted in place and restored, and the factor is applied by two
    triangular solves (torch's cholesky_solve copies it), so K and its factor are the only N x N buffers."""
    diagonal = K.diagonal()
    saved = diagonal.clone()
    diagonal.add_(lmbda)
    try:
        factor, info = torch.linalg.cholesky_ex(K)
        if int(info) == 0:
            half = torch.linalg.solve_triangular(factor, lmbda * R, upper=False)
            return torch.linalg.solve_triangular(factor.mT, half, upper=True)
        del factor
        return torch.linalg.solve(K, lmbda * R)
    finally:
        diagonal.copy_(saved)


@torch.no_grad()
def kernel_logits(v: torch.Tensor, zs: torch.Tensor, support: torch.Tensor, coef: torch.Tensor,
                  beta: float) -> torch.Tensor:
    """zs + k(v, support) coef for unit rows ``v``, in row chunks that bound the affinities' memory."""
    out = zs.clone()
    for rows in chunks(len(v), len(support)):
        out[rows] += rbf_kernel(v[rows], support, beta) @ coef
    return out


class ProKeRClassifier(LogitsClassifierMixin, BaseEstimator):
    """Training-free ProKeR (CVPR 2025): zero-shot CLIP plus kernel ridge regression of its residual on the shots.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : unused (the released code's zero-shot term is the plain cosine); kept for the uniform interface.
    dataset : the dataset key whose released grid is searched when ``beta_grid`` / ``lmbda_grid`` are None
        (released.py; an unknown key or None: Caltech101's).
    beta, lmbda : kernel sharpness and ridge strength used without validation data (None: 1.7 and 0.1).
    beta_grid, lmbda_grid : searched on the validation data (None: the dataset's released grid; an empty
        sequence: no search).
    views : with ``X_aug`` (V, n, D): ``aug`` trains on the shots plus every view, ``released`` on the views.
    max_support : the most support rows accepted (the kernel and its factor take 8 N^2 bytes).
    random_state : unused (closed form); kept for the uniform interface.
    device : torch device for the kernel, the solves and the logits.

    See the module docstring for the formulas, the cost and every deviation from the released code.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 dataset: str | None = None, beta: float | None = None, lmbda: float | None = None,
                 beta_grid: Sequence[float] | None = None, lmbda_grid: Sequence[float] | None = None,
                 views: str = "aug", max_support: int = 32_768, random_state: int = 0,
                 device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.dataset = dataset
        self.beta = beta
        self.lmbda = lmbda
        self.beta_grid = beta_grid
        self.lmbda_grid = lmbda_grid
        self.views = views
        self.max_support = max_support
        self.random_state = random_state
        self.device = device

    def _grids(self) -> tuple[list[float], list[float]]:
        """(betas, lambdas) to search: the parameters, or the dataset's released grid."""
        config = PROKER[released_key(self.dataset)]
        betas = config.beta_grid() if self.beta_grid is None else [float(b) for b in self.beta_grid]
        lmbdas = config.lmbda_grid() if self.lmbda_grid is None else [float(v) for v in self.lmbda_grid]
        return betas, lmbdas

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> ProKeRClassifier:
        """Solve the kernel ridge regression of the residual; beta and lambda on val when given."""
        name = type(self).__name__
        rows_policy = view_rows(name, self.views, released="views")
        data = check_fit_inputs(name, self.prototypes, X, y, X_val, y_val, X_aug)
        rows, labels = data.training_rows(rows_policy)
        n, (n_classes, dim) = len(rows), data.T0.shape
        if n > int(self.max_support):
            raise FitError(f"{name}: {n} support rows need a {8 * n * n / 2**30:.1f} GiB kernel, more than "
                           f"max_support={self.max_support} rows allow; train on fewer rows "
                           "(--train-views plain, or fewer augmented views)")
        betas, lmbdas = self._grids()
        fixed = [v for v in (self.lmbda,) if v is not None]
        if any(not float(v) > 0 for v in [*lmbdas, *fixed]):
            raise FitError(f"{name}: lambda must be > 0 (it divides the kernel), got lmbda={self.lmbda}, "
                           f"lmbda_grid={lmbdas}")
        search = data.has_val and betas and lmbdas
        dev = torch.device(self.device)
        with cpu_threads_for(n * n * (n / 3 + dim + n_classes), self.device), torch.no_grad():
            S = torch.from_numpy(l2_normalize(rows)).to(dev)
            T = torch.from_numpy(data.T0).to(dev)
            residual = F.one_hot(torch.from_numpy(labels).to(dev), n_classes).to(S.dtype) - S @ T.T
            if search:
                beta, lmbda, coef, self.val_top1_ = self._search(S, T, residual, data, betas, lmbdas)
            else:
                beta = float(PROKER_FIXED["beta"] if self.beta is None else self.beta)
                lmbda = float(PROKER_FIXED["lmbda"] if self.lmbda is None else self.lmbda)
                coef = kernel_ridge(rbf_kernel(S, S, beta), residual, lmbda)
                self.val_top1_ = None
        self.support_ = S.cpu().numpy()
        self.dual_coef_ = coef.cpu().numpy()
        self.zs_prototypes_ = data.T0
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = dim
        self.hyperparameters_ = {"beta": beta, "lmbda": lmbda}
        self.search_ = ({"grid": {"beta": betas, "lmbda": lmbdas}, "selected_on": "val",
                         "config": released_key(self.dataset)} if search else {})
        if self.val_top1_ is None and data.has_val:
            self.val_top1_ = 100.0 * self.score(data.X_val, data.y_val)
        return self

    def _search(self, S: torch.Tensor, T: torch.Tensor, residual: torch.Tensor, data, betas: list[float],
                lmbdas: list[float]) -> tuple[float, float, torch.Tensor, float]:
        """(beta, lambda, dual coefficients, val top-1 %) of the first best grid point in beta-major order."""
        v_val = torch.from_numpy(l2_normalize(data.X_val)).to(S.device)
        zs_val = v_val @ T.T
        y_val = torch.from_numpy(data.y_val).to(S.device)
        best: tuple[int, float, float, torch.Tensor] | None = None
        for beta in betas:
            K = rbf_kernel(S, S, beta)
            for lmbda in lmbdas:
                coef = kernel_ridge(K, residual, lmbda)
                correct = int((kernel_logits(v_val, zs_val, S, coef, beta).argmax(1) == y_val).sum())
                if best is None or correct > best[0]:  # the first maximum, as the release's ``acc > best``
                    best = (correct, beta, lmbda, coef)
            del K
        correct, beta, lmbda, coef = best
        return beta, lmbda, coef, correct / len(y_val) * 100.0

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """v . T0^T + k(v, S) A, shape (n, C)."""
        check_is_fitted(self, "dual_coef_")
        dev = torch.device(self.device)
        v = torch.from_numpy(l2_normalize(X)).to(dev)
        support = torch.from_numpy(self.support_).to(dev)
        with cpu_threads_for(v.shape[0] * support.shape[0] * (v.shape[1] + self.dual_coef_.shape[1]), self.device):
            zs = v @ torch.from_numpy(self.zs_prototypes_).to(dev).T
            logits = kernel_logits(v, zs, support, torch.from_numpy(self.dual_coef_).to(dev),
                                   self.hyperparameters_["beta"])
        return logits.cpu().numpy()
