"""Table cells: a statistic over seeds, a single published value, or a value that is missing for a reason.

Convention (one place, used by every table and plot): a cell is "mean ± std" over the seeds of its run
group; std is the POPULATION standard deviation (numpy ``ddof=0``), as CoOp/Dassl's ``parse_test_res.py``
computes it, so our spreads compare with theirs. A cell that lacks a seed present elsewhere in its run
group is incomplete: it is shown as missing and never enters a mean. An average over rows is computed per
seed (mean over the rows of that seed's values), then summarised like any cell, so its mean equals the
mean of the row means and its std is the spread of the seed-wise averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from stages.shared.record import RunRecord

STD_NOTE = ("mean ± std over seeds; std is the population standard deviation (ddof=0, as CoOp/Dassl's "
            "parse_test_res.py); a cell from a single seed shows the value alone")


@dataclass(frozen=True)
class Stat:
    """Values of one quantity by seed, judged against the seeds its run group has elsewhere."""

    values: Mapping[int, float]
    expected: tuple[int, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.values))

    @property
    def empty(self) -> bool:
        return not self.values

    @property
    def complete(self) -> bool:
        return bool(self.values) and set(self.expected) <= set(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over seeds, or None when the cell is incomplete (never averaged)."""
        return float(np.mean([self.values[s] for s in self.seeds])) if self.complete else None

    @property
    def std(self) -> float | None:
        """Population std over seeds, or None when the cell is incomplete."""
        return float(np.std([self.values[s] for s in self.seeds], ddof=0)) if self.complete else None

    def shortfall(self) -> str:
        """'2/3 seeds (have 1, 2; missing 3)': why an incomplete cell is missing."""
        missing = sorted(set(self.expected) - set(self.values))
        have = ", ".join(map(str, self.seeds))
        return (f"{len(self.values)}/{len(self.expected)} seeds (have {have}; missing "
                f"{', '.join(map(str, missing))}), not averaged")


@dataclass(frozen=True)
class Value:
    """A single number with no spread, e.g. a published accuracy."""

    value: float


@dataclass(frozen=True)
class Missing:
    """A cell that is deliberately left out; ``note`` says why and becomes its footnote."""

    note: str


Cell = str | Stat | Value | Missing | None


def stat_of(by_seed: Mapping[int, RunRecord], expected: Sequence[int],
            value: Callable[[RunRecord], float | None]) -> Stat:
    """A Stat of ``value(record)`` over the records of one cell; records whose value is None are absent."""
    values = {seed: v for seed, record in by_seed.items() if (v := value(record)) is not None}
    return Stat(values=values, expected=tuple(sorted(expected)))


def average_stat(labelled: Sequence[tuple[str, Stat]], what: str) -> Stat | Missing:
    """Seed-wise average of complete Stats over rows; Missing (naming the culprits) unless all are complete."""
    if not labelled:
        return Missing(f"{what}: no rows to average")
    lacking = [label for label, stat in labelled if not stat.complete]
    if lacking:
        return Missing(f"{what}: not given because {', '.join(lacking)} "
                       f"{'lacks' if len(lacking) == 1 else 'lack'} a complete cell")
    seed_sets = {stat.seeds for _, stat in labelled}
    if len(seed_sets) != 1:
        return Missing(f"{what}: not given because the rows were run with different seeds")
    seeds = seed_sets.pop()
    per_seed = {s: float(np.mean([stat.values[s] for _, stat in labelled])) for s in seeds}
    return Stat(values=per_seed, expected=seeds)


def average_values(labelled: Sequence[tuple[str, float | None]], what: str) -> Value | Missing:
    """Plain mean of single values over rows; Missing unless every row has one."""
    if not labelled:
        return Missing(f"{what}: no rows to average")
    lacking = [label for label, v in labelled if v is None]
    if lacking:
        return Missing(f"{what}: not given because {', '.join(lacking)} "
                       f"{'has' if len(lacking) == 1 else 'have'} no published value")
    return Value(float(np.mean([v for _, v in labelled])))
