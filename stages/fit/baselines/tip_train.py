"""Tip-Adapter-F's training loop: the cache keys as parameters, CE on the fused logits, epoch chosen on val."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stages.fit.baselines.tip_cache import cache_logits, tip_logits
from stages.fit.estimator import top1


def train_keys(keys0: torch.Tensor, labels: torch.Tensor, train: list[tuple[torch.Tensor, torch.Tensor]],
               y: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, block: int, *,
               alpha: float, beta: float, lr: float, eps: float, weight_decay: float, epochs: int,
               batch_size: int, seed: int) -> tuple[torch.Tensor, list[list[float]], int]:
    """Train keys from ``keys0``; returns (kept keys, [[epoch, val top-1], ...], kept epoch).

    ``train`` holds (unit features, zero-shot logits) per view; epoch e (from 0) uses view e mod V.
    With ``val`` = (unit features, zero-shot logits, labels), the keys of the first epoch with the best
    val top-1 (at the training alpha, beta) are kept; without, the last epoch's.
    """
    n_classes = train[0][1].shape[1]
    keys = keys0.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([keys], lr=lr, eps=eps, weight_decay=weight_decay)
    n = len(y)
    batch = max(1, min(batch_size, n))
    per_epoch = -(-n // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * per_epoch))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    curve: list[list[float]] = []
    best: tuple[float, int, torch.Tensor] | None = None
    for epoch in range(epochs):
        v, zs = train[epoch % len(train)]
        order = torch.randperm(n, generator=gen).to(v.device)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            logits = zs[idx] + alpha * cache_logits(v[idx], keys, labels, beta, n_classes, block)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if val is not None:
            v_val, zs_val, y_val = val
            fused = tip_logits(v_val, zs_val, keys.detach(), labels, alpha, beta, block)
            acc = top1(fused, y_val)
            curve.append([epoch + 1, acc])
            if best is None or acc > best[0]:
                best = (acc, epoch + 1, keys.detach().clone())
    if best is None:
        return keys.detach(), curve, epochs
    return best[2], curve, best[1]
