"""Val accuracy of fused logits ``z + alpha q`` for a whole grid of alpha in one pass (Tip-Adapter, APE).

Row i is classified correctly at weight ``a`` when its label y beats every other class c:
``(z_iy - z_ic) + a (q_iy - q_ic) > 0``. Each such condition holds on a half-line of ``a``, so together they
hold on one open interval (lo_i, hi_i), possibly empty. Counting the rows whose interval holds ``a`` gives the
accuracy at every grid value from one pass over the (rows x classes) logits, instead of one argmax pass per
value: the searches of Tip-Adapter (20 alphas) and APE (20 alphas per beta and gamma) get ~10x cheaper at
ImageNet scale. An exact tie between the label and another class counts as wrong (argmax would break it by
class order); ties have measure zero on real features.
"""

from __future__ import annotations

import torch


def fused_correct(z: torch.Tensor, q: torch.Tensor, y: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """(A,) number of rows with ``argmax(z + a q) == y`` for each ``a`` in ``alphas``; z, q (m, C), y (m,)."""
    label_z = z.gather(1, y[:, None])
    label_q = q.gather(1, y[:, None])
    dz = label_z - z  # the label's margin over each class at a = 0 ...
    dq = label_q - q  # ... and how it grows with a
    others = torch.ones_like(dz, dtype=torch.bool).scatter_(1, y[:, None], False)
    crossing = -dz / torch.where(dq == 0, torch.ones_like(dq), dq)  # the weight where the margin changes sign
    lo = torch.where(others & (dq > 0), crossing, torch.full_like(dz, -torch.inf)).amax(1)
    hi = torch.where(others & (dq < 0), crossing, torch.full_like(dz, torch.inf)).amin(1)
    never = (others & (dq == 0) & (dz <= 0)).any(1)
    inside = (lo[:, None] < alphas[None, :]) & (alphas[None, :] < hi[:, None]) & ~never[:, None]
    return inside.sum(0)
