"""The CLIP paper's linear probe: multinomial logistic regression on L2-normalised image features.

Objective (scikit-learn's convention, so C means what it means there):
    min_{W, b}  sum_i CE(v_i W + b, y_i) + ||W||^2 / (2 C),   the intercept b not penalised,
solved full-batch with torch L-BFGS (strong Wolfe line search) on a rescaled objective (see _solve), along the
C grid from the strongest regularisation to the weakest, each fit warm-started from the previous one
(a regularisation path: later, harder fits start close to their optimum, which keeps the search fast).
The rows are centred on their mean m before solving: (v - m) W + b' is the same model as v W + b with
b = b' + m W and the same penalty (b is free), so the optimum is unchanged, but CLIP features share a
large common direction that otherwise makes the problem badly conditioned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.shared.errors import FitError
from stages.fit.estimator import FitData, LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1, view_rows
from stages.fit.features import l2_normalize

#: 11 values, half a decade apart; the CLIP paper searches a coarse log grid then refines it.
DEFAULT_C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-1, 4, 11))


class LinearProbeClassifier(LogitsClassifierMixin, BaseEstimator):
    """Linear probe on norm(x) (CLIP paper, Radford et al. 2021), C chosen on the few-shot val split.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; only their count (the classes) and D are used.
    logit_scale : unused by the probe (its logits are its own); kept for the uniform interface.
    C : inverse regularisation strength used without validation data (scikit-learn's convention); 100,
        mid-grid, by default. It is reached along the same warm-started path (grid values below it first),
        so ``C=c`` without val gives exactly the model that the search scores at ``c``.
    C_grid : values tried with validation data; ``DEFAULT_C_GRID`` = 10^-1 ... 10^4, 11 values.
    max_iter : L-BFGS iterations per C at most, and 1.25 x as many loss evaluations (torch's max_eval),
        each two (n x D) @ (D x C) products: the main cost. 10: along the warm-started path this lands
        within a few percent of the optimum's objective and its test top-1 within a point of the
        converged probe's on the synthetic data, at a fraction of the cost; raise it for a converged probe.
    tol : stop a C early when max |gradient| of the objective (see ``_solve``) is below it.
    views : with ``X_aug`` (V, n, D): ``aug`` adds every view as extra training rows; ``released`` ignores
        the views (the CLIP paper's probe trains on the plain features).
    random_state : unused (the problem is convex and solved deterministically from zero); kept for the
        uniform interface.
    device : torch device for the solver.

    With (X_val, y_val), every C of the grid is fitted and the one with the highest val top-1 is kept
    (ties: lowest val cross-entropy, then the smaller C).
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 C: float = 100.0, C_grid: Sequence[float] | None = DEFAULT_C_GRID, max_iter: int = 10,
                 tol: float = 1e-6, views: str = "aug", random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.C = C
        self.C_grid = C_grid
        self.max_iter = max_iter
        self.tol = tol
        self.views = views
        self.random_state = random_state
        self.device = device

    def _grid(self, have_val: bool) -> list[float]:
        """The C path: the whole grid with val; without, the grid values below ``C`` then ``C`` itself."""
        grid = sorted(float(c) for c in (self.C_grid or ()))
        if any(not c > 0 for c in [*grid, float(self.C)]):
            raise FitError(f"LinearProbeClassifier: C values must be > 0, got C={self.C}, C_grid={grid}")
        if have_val and grid:
            return grid
        return [c for c in grid if c < float(self.C)] + [float(self.C)]

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> LinearProbeClassifier:
        """Fit the probe along the C path; keep the C with the best val top-1 (``C`` without val)."""
        rows_policy = view_rows(type(self).__name__, self.views, released="shots")
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        n_classes, dim = data.T0.shape
        cs = self._grid(data.has_val)
        dev = torch.device(self.device)
        rows, labels = data.training_rows(rows_policy)
        rows = l2_normalize(rows)
        with cpu_threads_for(rows.size * n_classes, self.device):
            best, n_iter = self._path(rows, labels, data, cs, dev)
        key, c_best, W_best, b_best = best
        self.n_iter_ = n_iter
        self.coef_ = W_best.T.cpu().numpy()
        self.intercept_ = b_best.cpu().numpy()
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = dim
        self.hyperparameters_ = {"C": c_best}
        self.search_ = {"grid": {"C": cs}, "selected_on": "val"} if data.has_val else {}
        self.val_top1_ = None if key is None else key[0]
        return self

    def _path(self, rows: np.ndarray, labels: np.ndarray, data: FitData, cs: list[float],
              dev: torch.device) -> tuple[tuple, list[int]]:
        """Solve along ``cs`` with warm starts; returns ((val key, C, W, b) of the kept C, iterations per C)."""
        n_classes, dim = data.T0.shape
        mean = torch.from_numpy(rows.mean(0)).to(dev)
        v = torch.from_numpy(rows).to(dev) - mean
        yt = torch.from_numpy(labels).to(dev)
        if data.has_val:
            v_val = torch.from_numpy(l2_normalize(data.X_val)).to(dev)
            y_val_t = torch.from_numpy(data.y_val).to(dev)

        W = torch.zeros(dim, n_classes, device=dev, requires_grad=True)
        b = torch.zeros(n_classes, device=dev, requires_grad=True)
        best = None
        n_iter: list[int] = []
        for c in cs:
            n_iter.append(self._solve(v, yt, W, b, c))
            with torch.no_grad():
                b_raw = b - mean @ W
            if not data.has_val:
                best = (None, c, W.detach().clone(), b_raw)
                continue
            with torch.no_grad():
                logits = v_val @ W + b_raw
                acc = top1(logits, y_val_t)
                key = (acc, -float(F.cross_entropy(logits, y_val_t)))
            if best is None or key > best[0]:
                best = (key, c, W.detach().clone(), b_raw)
        return best, n_iter

    def _solve(self, v: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: float) -> int:
        """Minimise K (mean CE + ||W||^2 / (2 C n)) in place from the current (W, b); returns iterations.

        The factor K (classes) keeps the gradient's entries O(1) whatever the class count, so ``tol``
        means the same at 10 and at 1000 classes (the mean over rows alone shrinks them by 1/K).
        """
        scale = float(W.shape[1])
        penalty = 1.0 / (2.0 * c * len(y))
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=int(self.max_iter), tolerance_grad=float(self.tol),
                                tolerance_change=1e-10, history_size=10, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=False)
            loss = scale * (F.cross_entropy(v @ W + b, y) + penalty * (W * W).sum())
            loss.backward()
            return loss

        opt.step(closure)
        return int(opt.state[W].get("n_iter", 0))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Probe logits norm(x) W^T + b, shape (n, C)."""
        check_is_fitted(self, "coef_")
        return l2_normalize(X) @ self.coef_.T + self.intercept_
