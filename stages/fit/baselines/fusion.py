"""Val accuracy of fused logits ``z + alpha q`` for a whole grid of alpha in one pass (Tip-Adapter, APE).

Row i is classified correctly at weight ``a`` when its label y beats every other class c:
``(z_iy - z_ic) + a (q_iy - q_ic) > 0``. Each such condition holds on a half-line of ``a``, so together they
hold on one open interval (lo_i, hi_i), possibly empty. Counting the rows whose interval holds ``a`` gives the
accuracy at every grid value from one pass over the (rows x classes) logits, instead of one argmax pass per
value; the margins of ``z`` are computed once for all the ``q`` a search tries. An exact tie between the label
and another class counts as wrong (argmax would break it by class order); ties have measure zero on real
features.
"""

from __future__ import annotations

import torch


class FusedScorer:
    """Counts, for fixed logits ``z`` (m, C) and labels ``y`` (m,), the rows that ``z + a q`` gets right."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor) -> None:
        self.labels = y[:, None]
        margin = z.gather(1, self.labels) - z  # the label's margin over each class at a = 0
        self.margin = margin.scatter_(1, self.labels, 1.0)  # own column: positive, so it never constrains a
        self.blocked = self.margin <= 0

    def correct(self, q: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """(A,) number of rows with ``argmax(z + a q) == y`` for each ``a`` in ``alphas``."""
        slope = q.gather(1, self.labels) - q  # how the label's margin grows with a (0 in its own column)
        crossing = torch.div(self.margin, slope).neg_()  # the weight where the margin changes sign
        lo = torch.where(slope > 0, crossing, -torch.inf).amax(1)
        hi = torch.where(slope < 0, crossing, torch.inf).amin(1)
        never = ((slope == 0) & self.blocked).any(1)
        lo = torch.where(never, torch.inf, lo)
        return ((lo[:, None] < alphas[None, :]) & (alphas[None, :] < hi[:, None])).sum(0)

