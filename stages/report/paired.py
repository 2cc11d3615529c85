"""Paired comparisons: CMM against every other method, over the (dataset, shots, seed) triples both have.

A difference is CMM's value minus the other method's on one triple (same dataset, same few-shot subset, same
test split), so what the two share (a hard dataset, an unlucky draw of shots) cancels. The table gives the mean
difference per shot count and over all shots, with a 95% interval from a hierarchical percentile bootstrap:
resample the datasets with replacement, then, within each drawn dataset, its seeds with replacement (a seed
carries all its shot counts), and take the mean over the drawn triples. Datasets are the outer level because
methods differ systematically by dataset: resampling triples alone would treat three seeds on each of two
datasets as six independent draws and give too narrow an interval. The bootstrap seed is fixed, so a report is
reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from stages.report.groups import Family, RunGroup
from stages.report.stats import Missing, Value
from stages.report.style import display_name, metric_label, metric_value
from stages.report.table import Column, Table
from stages.report.tables_accuracy import shots_name
from stages.shared.naming import join_name
from stages.shared.record import RunRecord

REFERENCE = "cmm"             #: the method label every other run group is compared with
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95

Triple = tuple[str, int, int]  # (dataset, shots, seed)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``reference - other`` over ``n_triples`` triples from ``n_datasets`` datasets, and its interval
    (None when there is a single (dataset, seed): nothing to resample)."""

    mean: float
    low: float | None
    high: float | None
    n_triples: int
    n_datasets: int


def paired_differences(reference: RunGroup, other: RunGroup, value: Callable[[RunRecord], float | None],
                       shots: int | None = None) -> dict[Triple, float]:
    """{(dataset, shots, seed): value(reference) - value(other)} over the triples where both have a value
    (only at ``shots`` when given); a triple either lacks is left out, never filled in."""
    diffs: dict[Triple, float] = {}
    for (dataset, k), by_seed in reference.cells.items():
        if shots is not None and k != shots:
            continue
        theirs = other.cells.get((dataset, k), {})
        for seed, record in by_seed.items():
            if seed in theirs and (a := value(record)) is not None and (b := value(theirs[seed])) is not None:
                diffs[(dataset, k, seed)] = a - b
    return diffs


def hierarchical_bootstrap(diffs: Mapping[Triple, float], *, resamples: int = RESAMPLES,
                           seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> PairedDifference:
    """The mean of ``diffs`` and its percentile interval, resampling datasets, then seeds within each dataset.

    Each resample draws as many datasets as there are, with replacement, and for each drawn dataset as many of
    its seeds as it has, with replacement; its statistic is the mean over every triple drawn (so the point
    estimate is the plain mean over the triples).
    """
    if not diffs:
        raise ValueError("no paired differences to summarise")
    datasets = sorted({d for d, _, _ in diffs})
    seeds = [sorted({s for d2, _, s in diffs if d2 == d}) for d in datasets]
    width = max(len(s) for s in seeds)
    # per (dataset, seed position): the sum and the count of its triples' differences
    sums, counts = np.zeros((len(datasets), width)), np.zeros((len(datasets), width))
    for (d, _, s), diff in diffs.items():
        i = datasets.index(d)
        j = seeds[i].index(s)
        sums[i, j] += diff
        counts[i, j] += 1
    mean = float(sums.sum() / counts.sum())
    n_seeds = np.array([len(s) for s in seeds])
    if len(datasets) == 1 and n_seeds[0] == 1:
        return PairedDifference(mean, None, None, len(diffs), len(datasets))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(datasets), size=(resamples, len(datasets)))
    # seed positions: uniform over each drawn dataset's own seeds; draws beyond its seed count are masked out
    position = np.floor(rng.random((resamples, len(datasets), width)) * n_seeds[drawn][..., None]).astype(int)
    used = np.arange(width)[None, None, :] < n_seeds[drawn][..., None]
    rows = np.broadcast_to(drawn[..., None], position.shape)
    total = (sums[rows, position] * used).sum(axis=(1, 2))
    count = (counts[rows, position] * used).sum(axis=(1, 2))
    stats = total / count
    tail = (1.0 - level) / 2 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return PairedDifference(mean, float(low), float(high), len(diffs), len(datasets))


def _cells(result: PairedDifference) -> list:
    interval = ([Value(result.low), Value(result.high)] if result.low is not None else
                [Missing("one dataset and one seed: nothing to resample, no interval"), None])
    return [Value(result.mean), *interval, Value(result.n_triples), Value(result.n_datasets)]


def paired_table(family: Family) -> Table | None:
    """CMM (label ``cmm``) against every other run group of ``family``, per shot count and over all shots;
    None when the family has no CMM group or nothing else to compare it with."""
    reference = next((g for g in family.groups if g.method_label == REFERENCE), None)
    others = [g for g in family.groups if g is not reference]
    if reference is None or not others:
        return None
    value = metric_value(family.metric)
    label = metric_label(family.metric)
    table = Table(
        name=join_name("paired", family.name),
        title=f"{display_name(REFERENCE)} against each method: mean paired difference in test {label} (points) "
              f"— {family.describe()}",
        columns=[Column("Method", "text"), Column("Shots", "text"), Column("Mean difference", "value"),
                 Column("95% low", "value"), Column("95% high", "value"), Column("Triples", "value", digits=0),
                 Column("Datasets", "value", digits=0)],
        meta={"kind": "paired", "model": family.model, "weights": family.weights, "metric": family.metric,
              "random_weights": family.random_weights, "reference": REFERENCE,
              "difference": f"{REFERENCE} minus the method, per (dataset, shots, seed)",
              "interval": {"method": "hierarchical percentile bootstrap (datasets, then seeds within each)",
                           "level": LEVEL, "resamples": RESAMPLES, "seed": BOOTSTRAP_SEED}},
    )
    unpaired = []
    for other in others:
        rows = []
        for k in [*reference.shots, None]:
            diffs = paired_differences(reference, other, value, k)
            if diffs:
                rows.append([other.method_name, "all" if k is None else shots_name(k),
                             *_cells(hierarchical_bootstrap(diffs))])
        if not rows:
            unpaired.append(other.method_name)
            continue
        table.rule_before.add(len(table.rows))
        table.rows += rows
    if not table.rows:
        return None
    table.notes += [
        f"difference = {display_name(REFERENCE)} minus the method, in points, on each (dataset, shots, seed) that "
        "both have (a triple either lacks is left out); positive: CMM ahead",
        f"95% interval: hierarchical percentile bootstrap, {RESAMPLES} resamples of the datasets and, within each, "
        f"of its seeds (seed {BOOTSTRAP_SEED}); a single dataset and seed gives no interval",
        "every other run group is compared, CMM's own variants (ablations, templates, views) included: there the "
        "difference is what the variant loses to the default",
    ]
    if unpaired:
        table.notes.append(f"no triple in common with {display_name(REFERENCE)}: {', '.join(unpaired)}")
    return table
