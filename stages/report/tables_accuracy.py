"""Accuracy tables: datasets x shots per run group (the paper-style table) and methods side by side
at each shot count, with published numbers for the same backbone in their own columns."""

from __future__ import annotations

from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.naming import join_name
from stages.report.published import CAVEATS, PublishedSeries, matching
from stages.report.stats import STD_NOTE, Cell, Value, average_stat, average_values
from stages.report.style import metric_label, model_title
from stages.report.table import Column, Table


def shots_name(shots: int) -> str:
    return f"{shots} shot" if shots == 1 else f"{shots} shots"


def _random_suffix(random_weights: bool) -> str:
    return f" [{RANDOM_LABEL}]" if random_weights else ""


def average_name(datasets: list[str]) -> str:
    """'Average (1 dataset)', 'Average (11 datasets)'."""
    return f"Average ({len(datasets)} dataset{'' if len(datasets) == 1 else 's'})"


def method_table(group: RunGroup) -> Table:
    """Datasets as rows, shots as columns, mean ± std over seeds, and the Average row."""
    datasets, shots = group.datasets, group.shots
    table = Table(
        name=join_name("acc", group.name, group.method_label),
        title=(f"{group.method_name}: test {metric_label(group.metric)} (%) — {model_title(group.model, group.weights)}"
               f"{_random_suffix(group.random_weights)}"),
        columns=[Column("Dataset", "text")] + [Column(shots_name(k)) for k in shots],
        meta={"kind": "accuracy", "model": group.model, "weights": group.weights, "method": group.method,
              "method_label": group.method_label, "random_weights": group.random_weights,
              "seeds": list(group.seeds), "shots": shots, "datasets": datasets, "metric": group.metric},
    )
    for d in datasets:
        table.rows.append([d] + [group.stat(d, k) for k in shots])
    average: list[Cell] = [average_name(datasets)]
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
    if family.metric != "top1":  # published numbers are top-1: never beside another metric
        return []
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
        columns.append(Column(g.method_name if ref == shots else f"{g.method_name} ({shots_name(ref)})"))
    for s in series:
        at_zero = " (0 shots)" if s.zero_shot_only and shots != 0 else ""
        columns.append(Column(f"{s.label}{at_zero} [{s.short_source}]", "value"))
    table = Table(
        name=join_name("compare", family.name, f"shots{shots}"),
        title=f"Methods at {shots_name(shots)}: test {metric_label(family.metric)} (%) — {family.describe()}",
        columns=columns, best="row",
        meta={"kind": "compare", "model": family.model, "weights": family.weights, "shots": shots,
              "random_weights": family.random_weights, "methods": [g.method_label for g, _ in groups],
              "metric": family.metric,
              "published": [{"method": s.method, "backbone": s.backbone, "source": s.source} for s in series]},
    )
    for d in datasets:
        row: list[Cell] = [d] + [g.stat(d, ref) for g, ref in groups]
        row += [Value(v) if (v := s.at(d, shots)) is not None else None for s in series]
        table.rows.append(row)
    average: list[Cell] = [average_name(datasets)]
    for (g, ref), col in zip(groups, columns[1:]):
        average.append(average_stat([(d, g.stat(d, ref)) for d in datasets], f"Average, {col.name}"))
    for s, col in zip(series, columns[1 + len(groups):]):
        average.append(average_values([(d, s.at(d, shots)) for d in datasets], f"Average, {col.name}"))
    table.rule_before.add(len(table.rows))
    table.rows.append(average)
    table.notes.append(f"{STD_NOTE}; each measured column is judged against the seeds of its own run group; "
                       "bold: the best result in its row among the methods measured here")
    for s in series:
        table.notes.append(f"{s.label} [{s.short_source}]: source {s.source}; OpenAI CLIP {s.backbone} "
                           f"weights; copied, not measured here, and never part of a measured mean"
                           + (f"; {CAVEATS[s.method]}" if s.method in CAVEATS else ""))
    return table


def headline_table(family: Family) -> Table | None:
    """Methods as rows, shots as columns, each cell averaged over the family's datasets: the report's summary.

    A method's cell is given only where it has a complete cell on every dataset (else — with the reason);
    zero-shot rides along at its own shot count. The best method per column is bold. None with no trained method.
    """
    datasets = family.datasets
    shots = [k for k in compare_shots(family) if k > 0]
    if not shots:
        return None
    table = Table(
        name=join_name("headline", family.name),
        title=(f"Test {metric_label(family.metric)} (%) averaged over {len(datasets)} dataset"
               f"{'' if len(datasets) == 1 else 's'} — {family.describe()}"),
        columns=[Column("Method", "text")] + [Column(shots_name(k)) for k in shots],
        meta={"kind": "headline", "model": family.model, "weights": family.weights, "metric": family.metric,
              "random_weights": family.random_weights, "datasets": datasets, "shots": shots},
        best="column",
    )
    partial = []
    for g in family.groups:
        refs = [g.reference_shots(k) for k in shots]
        if all(ref is None for ref in refs):
            continue
        row: list[Cell] = [g.method_name if g.method != "zero_shot" else f"{g.method_name} ({shots_name(refs[0])})"]
        absent = [d for d in datasets if d not in g.datasets]
        if absent:  # one note for the row, not one footnote per cell
            partial.append(f"{g.method_name}: not run on {', '.join(absent)}, so not averaged (see its own table)")
            table.rows.append(row + [None] * len(shots))
            continue
        for k, ref in zip(shots, refs):
            row.append(None if ref is None else
                       average_stat([(d, g.stat(d, ref)) for d in datasets], f"{g.method_name}, {shots_name(k)}"))
        table.rows.append(row)
    table.notes += [f"datasets: {', '.join(datasets)}; each cell averages the datasets seed by seed, then gives "
                    f"the mean ± std over seeds ({STD_NOTE})",
                    "bold: the best result in its column"] + partial
    return table
