"""Accuracy tables: datasets x shots per run group (the paper-style table) and methods side by side
at each shot count, with published numbers for the same backbone in their own columns."""

from __future__ import annotations

from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.naming import join_name
from stages.report.published import CAVEATS, PublishedSeries, matching
from stages.report.stats import STD_NOTE, Cell, Value, average_stat, average_values
from stages.report.table import Column, Table


def shots_name(shots: int) -> str:
    return f"{shots} shot" if shots == 1 else f"{shots} shots"


def _random_suffix(random_weights: bool) -> str:
    return f" [{RANDOM_LABEL}]" if random_weights else ""


def method_table(group: RunGroup) -> Table:
    """Datasets as rows, shots as columns, mean ± std over seeds, and the Average row."""
    datasets, shots = group.datasets, group.shots
    table = Table(
        name=join_name("acc", group.name, group.method_label),
        title=(f"{group.method_label}: test top-1 (%) — {group.name}"
               f"{_random_suffix(group.random_weights)}"),
        columns=[Column("Dataset", "text")] + [Column(shots_name(k)) for k in shots],
        meta={"kind": "accuracy", "model": group.model, "weights": group.weights, "method": group.method,
              "method_label": group.method_label, "random_weights": group.random_weights,
              "seeds": list(group.seeds), "shots": shots, "datasets": datasets},
    )
    for d in datasets:
        table.rows.append([d] + [group.stat(d, k) for k in shots])
    average: list[Cell] = [f"Average ({len(datasets)} datasets)"]
    for k in shots:
        average.append(average_stat([(d, group.stat(d, k)) for d in datasets], f"Average, {shots_name(k)}"))
    table.rule_before.add(len(table.rows))
    table.rows.append(average)
    table.notes += [
        f"{STD_NOTE}; seeds in this run group: {', '.join(map(str, group.seeds))}",
        "a cell lacking one of those seeds is shown as — and not averaged; the Average row is the mean over "
        "the datasets, per seed, given only where every dataset has a complete cell; — without a footnote: "
        "not run",
    ]
    return table


def compare_shots(family: Family) -> list[int]:
    """Shot counts that get a side-by-side table: those of the trained methods (zero-shot rides along)."""
    trained = {k for g in family.groups if g.method != "zero_shot" for k in g.shots}
    return sorted(trained or {k for g in family.groups for k in g.shots})


def _published_columns(family: Family, published: list[PublishedSeries], shots: int,
                       datasets: list[str]) -> list[PublishedSeries]:
    usable = [s for s in matching(published, family.model) if s.zero_shot_only or shots in s.shots]
    return [s for s in usable if any(s.at(d, shots) is not None for d in datasets)]


def compare_table(family: Family, shots: int, published: list[PublishedSeries]) -> Table | None:
    """Methods as columns at ``shots``, datasets as rows, the Average row; None when there is nothing to
    compare (a single measured method and no published numbers)."""
    groups = [(g, ref) for g in family.groups if (ref := g.reference_shots(shots)) is not None]
    datasets = [d for d in family.datasets if any((d, ref) in g.cells for g, ref in groups)]
    series = _published_columns(family, published, shots, datasets)
    if len(groups) + len(series) < 2:
        return None
    columns = [Column("Dataset", "text")]
    for g, ref in groups:
        columns.append(Column(g.method_label if ref == shots else f"{g.method_label} ({shots_name(ref)})"))
    for s in series:
        at_zero = " (0 shots)" if s.zero_shot_only and shots != 0 else ""
        columns.append(Column(f"{s.label}{at_zero} [{s.short_source}]", "value"))
    table = Table(
        name=join_name("compare", family.name, f"shots{shots}"),
        title=f"Methods at {shots_name(shots)}: test top-1 (%) — {family.describe()}",
        columns=columns,
        meta={"kind": "compare", "model": family.model, "weights": family.weights, "shots": shots,
              "random_weights": family.random_weights, "methods": [g.method_label for g, _ in groups],
              "published": [{"method": s.method, "backbone": s.backbone, "source": s.source} for s in series]},
    )
    for d in datasets:
        row: list[Cell] = [d] + [g.stat(d, ref) for g, ref in groups]
        row += [Value(v) if (v := s.at(d, shots)) is not None else None for s in series]
        table.rows.append(row)
    average: list[Cell] = [f"Average ({len(datasets)} datasets)"]
    for (g, ref), col in zip(groups, columns[1:]):
        average.append(average_stat([(d, g.stat(d, ref)) for d in datasets], f"Average, {col.name}"))
    for s, col in zip(series, columns[1 + len(groups):]):
        average.append(average_values([(d, s.at(d, shots)) for d in datasets], f"Average, {col.name}"))
    table.rule_before.add(len(table.rows))
    table.rows.append(average)
    table.notes.append(f"{STD_NOTE}; each measured column is judged against the seeds of its own run group")
    for s in series:
        table.notes.append(f"{s.label} [{s.short_source}]: source {s.source}; OpenAI CLIP {s.backbone} "
                           f"weights; copied, not measured here, and never part of a measured mean"
                           + (f"; {CAVEATS[s.method]}" if s.method in CAVEATS else ""))
    return table
