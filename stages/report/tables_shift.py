"""Distribution-shift table: accuracy on the source test split and on each shift target
(ImageNet -> V2, Sketch, A, R), from ``metrics.shift`` of the records that have it."""

from __future__ import annotations

from stages.report.groups import DATASET_ORDER, SHIFT_ORDER, Family, ordered
from stages.shared.naming import join_name
from stages.report.stats import STD_NOTE, Cell, average_stat
from stages.report.table import Column, Table


def shift_table(family: Family) -> Table | None:
    """Rows: method x source dataset x shots; columns: source top-1, each target, target average."""
    cells = [(g, d, k) for g in family.groups for (d, k), by_seed in g.cells.items()
             if any(r.shift for r in by_seed.values())]
    if not cells:
        return None
    targets = ordered({t for g, d, k in cells for r in g.cells[(d, k)].values() for t in r.shift}, SHIFT_ORDER)
    rank = {d: i for i, d in enumerate(ordered({d for _, d, _ in cells}, DATASET_ORDER))}
    cells.sort(key=lambda c: (rank[c[1]], family.groups.index(c[0]), c[2]))
    table = Table(
        name=join_name("shift", family.name),
        title=f"Distribution shift: top-1 (%) — {family.describe()}",
        columns=[Column("Method", "text"), Column("Source", "text"), Column("Shots", "text"),
                 Column("Source top-1")] + [Column(t) for t in targets] + [Column("Target average")],
        meta={"kind": "shift", "model": family.model, "weights": family.weights,
              "random_weights": family.random_weights, "targets": targets},
    )
    for g, d, k in cells:
        stats = [(t, g.stat(d, k, lambda r, t=t: r.shift.get(t))) for t in targets]
        row: list[Cell] = [g.method_label, d, str(k), g.stat(d, k)] + [s for _, s in stats]
        row.append(average_stat(stats, f"{g.method_label} / {d} / {k}, target average"))
        table.rows.append(row)
    table.notes += [f"{STD_NOTE}; each row is judged against the seeds of its run group",
                    "the classifier is trained on the source dataset and evaluated on each target as is"]
    return table
