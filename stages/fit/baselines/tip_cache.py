"""Tip-Adapter's cache model (Zhang et al., ECCV 2022) on unit features, with one-hot values exploited.

cache logits = exp(-beta (1 - v . K^T)) V, V the one-hot labels of the keys: instead of a dense
(m x N) @ (N x C) product, the affinities are summed per class (a reshape-sum when the keys are sorted
by class with equal counts, an index_add otherwise), which keeps the alpha/beta search cheap at 1000 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stages.fit.baselines.fusion import FusedScorer
from stages.fit.features import l2_normalize

#: rows x keys per chunk when scoring many images at once (bounds memory: ~256 MB of float32 affinities).
CHUNK_ELEMENTS = 64_000_000


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


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, beta: float) -> torch.Tensor:
    """exp(-beta (1 - a . b^T)) for unit rows a (m, D), b (n, D), computed in place (one m x n buffer); the
    cache affinity of Tip-Adapter and APE, ProKeR's kernel. Not for tensors that need gradients."""
    return (a @ b.T).sub_(1.0).mul_(beta).exp_()


def cache_logits(v: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, beta: float, n_classes: int,
                 block: int) -> torch.Tensor:
    """exp(-beta (1 - v . K^T)) @ onehot(labels) for unit rows ``v``; differentiable in ``keys``."""
    return class_sums(torch.exp(beta * (v @ keys.T - 1.0)), labels, n_classes, block)


def chunks(n_rows: int, n_keys: int) -> list[slice]:
    """Row slices of at most ``CHUNK_ELEMENTS / n_keys`` rows: a chunk's affinities stay within the bound."""
    step = max(1, CHUNK_ELEMENTS // max(1, n_keys))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


@torch.no_grad()
def tip_logits(v: torch.Tensor, zs: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, alpha: float,
               beta: float, block: int) -> torch.Tensor:
    """zs + alpha * cache logits, computed in row chunks; ``zs`` the zero-shot logits of ``v``."""
    out = zs.clone()
    for rows in chunks(len(v), len(keys)):
        out[rows] += alpha * cache_logits(v[rows], keys, labels, beta, zs.shape[1], block)
    return out


@torch.no_grad()
def search_alpha_beta(v: torch.Tensor, y: torch.Tensor, zs: torch.Tensor, keys: torch.Tensor,
                      labels: torch.Tensor, alphas: Sequence[float], betas: Sequence[float],
                      block: int) -> tuple[float, float, float]:
    """(alpha, beta, top-1 %) maximising accuracy on (v, y); ties go to the first in beta-major order,
    as in the original's loops (``for beta: for alpha: if acc > best``). Every alpha of a beta is scored in
    one pass (fusion.py), the affinities of a row chunk computed once for all betas."""
    grid = torch.tensor(alphas, dtype=zs.dtype, device=zs.device)
    correct = torch.zeros(len(betas), len(alphas), dtype=torch.int64, device=zs.device)
    for rows in chunks(len(v), len(keys)):
        scorer = FusedScorer(zs[rows], y[rows])
        shifted = v[rows] @ keys.T - 1.0
        affinity = torch.empty_like(shifted)
        for i, beta in enumerate(betas):
            torch.mul(shifted, beta, out=affinity).exp_()
            correct[i] += scorer.correct(class_sums(affinity, labels, zs.shape[1], block), grid)
    flat = int(torch.argmax(correct.flatten()))  # the first maximum in row-major (beta-major) order
    i, j = divmod(flat, len(alphas))
    return float(alphas[j]), float(betas[i]), float(correct[i, j]) / len(y) * 100.0
