"""Modality-gap table: before/after centroid gap, cosine to own and nearest wrong prototype, and
nearest-prototype accuracy (record ``gap``), mean ± std over seeds per dataset x method x shots."""

from __future__ import annotations

from stages.report.groups import DATASET_ORDER, Family, ordered
from stages.shared.naming import join_name
from stages.report.stats import STD_NOTE, Cell
from stages.report.table import Column, Table

METRICS = (("centroid_gap", 3), ("cos_own", 3), ("cos_wrong", 3), ("proto_acc", 2))
SIDES = ("before", "after")


def gap_table(family: Family) -> Table | None:
    """One row per dataset x method x shots that recorded a gap; columns metric x (before, after)."""
    cells = [(g, d, k) for g in family.groups for (d, k), by_seed in g.cells.items()
             if any(r.gap for r in by_seed.values())]
    if not cells:
        return None
    rank = {d: i for i, d in enumerate(ordered({d for _, d, _ in cells}, DATASET_ORDER))}
    cells.sort(key=lambda c: (rank[c[1]], family.groups.index(c[0]), c[2]))
    columns = [Column("Dataset", "text"), Column("Method", "text"), Column("Shots", "text")]
    columns += [Column(f"{metric} {side}", "stat", digits) for metric, digits in METRICS for side in SIDES]
    table = Table(
        name=join_name("gap", family.name),
        title=f"Modality gap on test images vs class prototypes — {family.describe()}",
        columns=columns,
        meta={"kind": "gap", "model": family.model, "weights": family.weights,
              "random_weights": family.random_weights},
    )
    for g, d, k in cells:
        row: list[Cell] = [d, g.method_label, str(k)]
        for metric, _ in METRICS:
            for side in SIDES:
                row.append(g.stat(d, k, lambda r, s=side, m=metric: r.gap.get(s, {}).get(m)))
        table.rows.append(row)
    table.notes += [
        f"{STD_NOTE}; each row is judged against the seeds of its run group",
        "centroid_gap = ||mean(image) - mean(prototype)|| (Liang et al. 2022); cos_own / cos_wrong = mean "
        "cosine of an image to its own / nearest wrong class prototype; proto_acc = nearest-prototype top-1 "
        "(%) with the plain text prototypes; before = raw CLIP features, after = through the learned map",
        "— without a footnote: the method does not record that side (it maps no features)",
    ]
    return table
