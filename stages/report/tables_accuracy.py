"""Accuracy tables: datasets x shots per run group, and the paper-style comparisons of each section (main
methods, CMM's ablations, other variants; stages.report.sections): rows x shots averaged over the datasets
(the headline), and rows x datasets at each shot count, with published numbers for the same backbone in rows
of their own."""

from __future__ import annotations

from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.naming import join_name
from stages.report.published import CAVEATS, PublishedSeries, matching
from stages.report.sections import ABLATIONS, METHODS, VARIANTS, is_variant
from stages.report.stats import STD_NOTE, Cell, Value, average_stat, average_values
from stages.report.style import metric_label, model_title
from stages.report.table import Column, Table

# per section: (file name stem, what the tables show, the meta kind of its summary)
SECTION_TABLES = {
    METHODS: ("main", "Methods", "headline"),
    ABLATIONS: ("ablations", "CMM ablations", "ablations_summary"),
    VARIANTS: ("variants", "Method variants", "variants_summary"),
}


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


def section_shots(blocks: list[list[RunGroup]]) -> list[int]:
    """Shot counts of a section's trained runs (zero-shot rides along at its own count); > 0 only."""
    groups = [g for block in blocks for g in block]
    return sorted({k for g in groups if g.method != "zero_shot" for k in g.shots if k > 0})


def _row_name(group: RunGroup, ref: int, shots: int) -> str:
    """'CMM (no triplet)', or 'Zero-shot CLIP (0 shots)' for a group that stands in from another shot count."""
    return group.method_name if ref == shots else f"{group.method_name} ({shots_name(ref)})"


def _published_rows(family: Family, published: list[PublishedSeries], shots: int,
                    datasets: list[str]) -> list[PublishedSeries]:
    if family.metric != "top1":  # published numbers are top-1: never beside another metric
        return []
    usable = [s for s in matching(published, family.model) if s.zero_shot_only or shots in s.shots]
    return [s for s in usable if any(s.at(d, shots) is not None for d in datasets)]


def _published_name(series: PublishedSeries, shots: int) -> str:
    """'published: Tip-Adapter-F [APE]', with '(0 shots)' for a training-free reference at other counts."""
    at_zero = " (0 shots)" if series.zero_shot_only and shots != 0 else ""
    return f"published: {series.method}{at_zero} [{_abbrev(series.short_source)}]"


def _abbrev(short_source: str) -> str:
    """'APE' from 'APE repository'."""
    return short_source.removesuffix(" repository")


def _rules(table: Table, section: str, block: list[RunGroup]) -> None:
    """Rules around a block about to be added: before it (after earlier rows), and after its reference row
    (a method's default heading its variants)."""
    if table.rows:
        table.rule_before.add(len(table.rows))
    if section != METHODS and len(block) > 1 and not is_variant(block[0]):
        table.rule_before.add(len(table.rows) + 1)


def shots_table(family: Family, section: str, blocks: list[list[RunGroup]], shots: int,
                published: list[PublishedSeries]) -> Table | None:
    """The paper's main-table layout at ``shots``: one row per run group (blocks apart by a rule), one column
    per dataset plus the Average, the best of each column in bold; published numbers of the same backbone in
    rows of their own under the measured ones (main section only). None with fewer than two rows."""
    rows = [[(g, ref) for g in block if (ref := g.reference_shots(shots)) is not None] for block in blocks]
    rows = [block for block in rows if block]
    measured = [gr for block in rows for gr in block]
    datasets = [d for d in family.datasets if any((d, ref) in g.cells for g, ref in measured)]
    series = _published_rows(family, published, shots, datasets) if section == METHODS else []
    if len(measured) + len(series) < 2:
        return None
    stem, what, _ = SECTION_TABLES[section]
    averaged = len(datasets) > 1
    columns = [Column("Method", "text")] + [Column(d) for d in datasets] + ([Column("Average")] if averaged else [])
    table = Table(
        name=join_name(stem, family.name, f"shots{shots}"),
        title=f"{what} at {shots_name(shots)}: test {metric_label(family.metric)} (%) — {family.describe()}",
        columns=columns, best="column",
        meta={"kind": stem, "section": section, "model": family.model, "weights": family.weights, "shots": shots,
              "random_weights": family.random_weights, "metric": family.metric, "datasets": datasets,
              "methods": [g.method_label for g, _ in measured],
              "published": [{"method": s.method, "backbone": s.backbone, "source": s.source} for s in series]},
    )
    for block in rows:
        _rules(table, section, [g for g, _ in block])
        for g, ref in block:
            name = _row_name(g, ref, shots)
            row: list[Cell] = [name] + [g.stat(d, ref) for d in datasets]
            if averaged:
                row.append(average_stat([(d, g.stat(d, ref)) for d in datasets], f"{name}, average"))
            table.rows.append(row)
    if series:
        table.rule_before.add(len(table.rows))
    for s in series:
        name = _published_name(s, shots)
        row = [name] + [Value(v) if (v := s.at(d, shots)) is not None else None for d in datasets]
        if averaged:
            row.append(average_values([(d, s.at(d, shots)) for d in datasets], f"{name}, average"))
        table.rows.append(row)
    average_note = "; Average: the mean over the datasets, per seed" if averaged else ""
    table.notes.append(f"{STD_NOTE}; each row is judged against the seeds of its own run group{average_note}; "
                       "bold: the best measured result in its column")
    for source in dict.fromkeys((s.source, s.short_source, s.backbone) for s in series):
        table.notes.append(f"published rows marked [{_abbrev(source[1])}]: source {source[0]}; OpenAI CLIP {source[2]} "
                           "weights; copied, not measured here, never bold and never part of a measured mean")
    table.notes += [f"{_published_name(s, shots)}: {CAVEATS[s.method]}" for s in series if s.method in CAVEATS]
    return table


def summary_table(family: Family, section: str, blocks: list[list[RunGroup]]) -> Table | None:
    """Rows x shots, each cell averaged over the family's datasets: the report's headline for the main section.

    A row's cell is given only where it has a complete cell on every dataset (else — with the reason);
    zero-shot rides along at its own shot count. The best per column is bold. None with no trained run.
    """
    datasets = family.datasets
    shots = section_shots(blocks)
    if not shots:
        return None
    stem, what, kind = SECTION_TABLES[section]
    n = len(datasets)
    table = Table(
        name=join_name("headline" if section == METHODS else stem, family.name),
        title=(f"{'' if section == METHODS else what + ': '}Test {metric_label(family.metric)} (%) averaged over "
               f"{n} dataset{'' if n == 1 else 's'} — {family.describe()}"),
        columns=[Column("Method", "text")] + [Column(shots_name(k)) for k in shots],
        meta={"kind": kind, "section": section, "model": family.model, "weights": family.weights,
              "metric": family.metric, "random_weights": family.random_weights, "datasets": datasets,
              "shots": shots},
        best="column",
    )
    partial = []
    for block in blocks:
        block = [g for g in block if any(g.reference_shots(k) is not None for k in shots)]
        if not block:
            continue
        _rules(table, section, block)
        for g in block:
            refs = [g.reference_shots(k) for k in shots]
            stand_in = {ref for ref, k in zip(refs, shots) if ref != k}  # zero-shot run at 0 shots only
            row: list[Cell] = [f"{g.method_name} ({shots_name(stand_in.pop())})" if stand_in else g.method_name]
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
