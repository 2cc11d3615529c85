"""Tip-Adapter's cache model (Zhang et al., ECCV 2022) on unit features, with one-hot values exploited.

cache logits = exp(-beta (1 - v . K^T)) V, V the one-hot labels of the keys: instead of a dense
(m x N) @ (N x C) product, the affinities are summed per class (a reshape-sum when the keys are sorted
by class with equal counts, an index_add otherwise), which keeps the alpha/beta search cheap at 1000 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stages.fit.features import l2_normalize

#: rows x keys per chunk when scoring many images at once (bounds memory: ~256 MB of float32 affinities).
CHUNK_ELEMENTS = 64_000_000


def tip_grid(high: float, steps: int, low: float = 0.1) -> list[float]:
    """The original search's grid ``[i * (high - low) / steps + low for i in range(steps)]``."""
    return [i * (high - low) / steps + low for i in range(steps)]


#: beta in [0.1, 7), alpha in [0.1, 3): the original's ranges, its (200, 20) steps coarsened to (20, 10).
DEFAULT_BETA_GRID: tuple[float, ...] = tuple(tip_grid(7.0, 20))
DEFAULT_ALPHA_GRID: tuple[float, ...] = tuple(tip_grid(3.0, 10))


def build_cache(X: np.ndarray, y: np.ndarray, X_aug: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(keys (N, D) unit, labels (N,)) sorted by class (stable): the mean of the raw views when given
    (as Tip-Adapter averages its augmented epochs' features), then normalised."""
    raw = X if X_aug is None else np.asarray(X_aug, dtype=np.float32).mean(axis=0)
    order = np.argsort(y, kind="stable")
    return l2_normalize(raw[order]), np.asarray(y, dtype=np.int64)[order]


def equal_blocks(labels: np.ndarray, n_classes: int) -> int:
    """k when ``labels`` is exactly [0]*k + [1]*k + ... + [C-1]*k (the reshape-sum fast path), else 0."""
    if len(labels) == 0 or len(labels) % n_classes:
        return 0
    k = len(labels) // n_classes
    return k if np.array_equal(labels, np.repeat(np.arange(n_classes), k)) else 0


def class_sums(E: torch.Tensor, labels: torch.Tensor, n_classes: int, block: int) -> torch.Tensor:
    """E @ onehot(labels) (m, C) without the dense product: per-class sums of E's columns."""
    if block:
        return E.reshape(len(E), n_classes, block).sum(-1)
    return torch.zeros(len(E), n_classes, dtype=E.dtype, device=E.device).index_add_(1, labels, E)


def cache_logits(v: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, beta: float, n_classes: int,
                 block: int) -> torch.Tensor:
    """exp(-beta (1 - v . K^T)) @ onehot(labels) for unit rows ``v``; differentiable in ``keys``."""
    return class_sums(torch.exp(beta * (v @ keys.T - 1.0)), labels, n_classes, block)


def _chunks(n_rows: int, n_keys: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // max(1, n_keys))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


@torch.no_grad()
def tip_logits(v: torch.Tensor, zs: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, alpha: float,
               beta: float, block: int) -> torch.Tensor:
    """zs + alpha * cache logits, computed in row chunks; ``zs`` the zero-shot logits of ``v``."""
    out = zs.clone()
    for rows in _chunks(len(v), len(keys)):
        out[rows] += alpha * cache_logits(v[rows], keys, labels, beta, zs.shape[1], block)
    return out


@torch.no_grad()
def search_alpha_beta(v: torch.Tensor, y: torch.Tensor, zs: torch.Tensor, keys: torch.Tensor,
                      labels: torch.Tensor, alphas: Sequence[float], betas: Sequence[float],
                      block: int) -> tuple[float, float, float]:
    """(alpha, beta, top-1 %) maximising accuracy on (v, y); ties go to the first in beta-major order,
    as in the original's loops (``for beta: for alpha: if acc > best``)."""
    correct = torch.zeros(len(betas), len(alphas), dtype=torch.float64)
    for rows in _chunks(len(v), len(keys)):
        shifted = v[rows] @ keys.T - 1.0
        for i, beta in enumerate(betas):
            cache = class_sums(torch.exp(beta * shifted), labels, zs.shape[1], block)
            for j, alpha in enumerate(alphas):
                pred = (zs[rows] + alpha * cache).argmax(1)
                correct[i, j] += float((pred == y[rows]).sum())
    flat = int(torch.argmax(correct.flatten()))  # first maximum in row-major (beta-major) order
    i, j = divmod(flat, len(alphas))
    return float(alphas[j]), float(betas[i]), float(correct[i, j]) / len(y) * 100.0
