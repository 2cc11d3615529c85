"""Accuracy-vs-shots plots per dataset, averaged over datasets, and a grid of every dataset, in figure sets
that each stay readable:

- "methods": the methods at their defaults (zero-shot as a dotted horizontal line);
- "CMM ablations": CMM's default (the reference) and its variants, in CMM's reds;
- "variants": every other method's variants beside their default, in that method's hue;
- "published" (top-1, same backbone only): CMM's default beside the published curves of one source, dashed.

Each curve has its label's fixed style (stages.report.style: no two curves of a figure share colour, line and
marker). A set with more than ``MAX_SERIES`` curves is split into figures of balanced size, each repeating the
reference. The ± std over seeds is drawn as a light band only in figures of at most ``MAX_BANDED`` curves
(more bands merge into one wash; the tables give every std) and never with ``bands=False``. A method that
cannot be averaged (not run on every dataset with every seed) is named under the figure, never silently
dropped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.report.escape import plot_text
from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.naming import join_name
from stages.report.plot_common import MAX_SERIES, balanced_parts, new_figure, save_figure
from stages.report.published import PublishedSeries, matching
from stages.report.sections import ABLATED, ABLATIONS, METHODS, VARIANTS, is_variant, sections
from stages.report.stats import Stat, Value, average_stat, average_values
from stages.report.style import SeriesStyle, metric_label, model_title, published_style, series_styles

AVERAGE = "average"
MAX_BANDED = 4   # bands drawn only in figures of at most this many curves
BAND_ALPHA = 0.15
SET_TITLES = {METHODS: "methods", ABLATIONS: "CMM ablations", VARIANTS: "method variants", "published": "published"}


@dataclass
class FigureSet:
    """The curves of one figure (for every dataset, the average and the grid) and how its files are named."""

    kind: str                        # METHODS, ABLATIONS, VARIANTS or "published"
    suffix: str                      # file-name part after the dataset: '' (methods), 'ablations', 'ablations-2'
    groups: list[RunGroup]
    published: list[PublishedSeries]
    styles: dict[str, SeriesStyle]
    source: str = ""                 # the published source, for the title

    @property
    def curves(self) -> int:
        return len(self.groups) + len(self.published)

    @property
    def title(self) -> str:
        return SET_TITLES[self.kind] + (f" ({self.source})" if self.source else "")


def figure_sets(family: Family, published: list[PublishedSeries]) -> list[FigureSet]:
    """The figure sets of a family, by the rules of the module docstring."""
    styles = series_styles(g.method_label for g in family.groups)
    cmm = [g for g in family.groups if g.method_label == ABLATED]
    out: list[FigureSet] = []
    for kind, blocks in sections(family).items():
        parts: list[list[RunGroup]] = []
        if kind == VARIANTS:  # blocks packed into figures of at most MAX_SERIES, a method's block kept whole
            for block in blocks:
                ref = [block[0]] if not is_variant(block[0]) else []
                for chunk in balanced_parts(ref, block[len(ref):]):
                    if parts and len(parts[-1]) + len(chunk) <= MAX_SERIES:
                        parts[-1] += chunk
                    else:
                        parts.append(chunk)
        else:
            (block,) = blocks
            ref = cmm if cmm and len(block) > MAX_SERIES else []
            parts = balanced_parts(ref, [g for g in block if g not in ref])
        for n, part in enumerate(parts):
            suffix = "" if kind == METHODS else kind if len(parts) == 1 else f"{kind}-{n + 1}"
            out.append(FigureSet(kind, suffix, part, [], styles))
    if family.metric == "top1":  # published numbers are top-1: one figure per source, CMM's default in each
        by_source: dict[str, list[PublishedSeries]] = {}
        for s in matching(published, family.model):
            by_source.setdefault(s.short_source, []).append(s)
        parts = [(source, part) for source, items in by_source.items()
                 for part in balanced_parts([], items, MAX_SERIES - len(cmm))]
        for n, (source, part) in enumerate(parts):
            out.append(FigureSet("published", f"published-{n + 1}", cmm, part, styles, source))
    return out


def _measured(group: RunGroup, datasets: list[str], shots: int) -> Stat | None:
    """The complete cell (one dataset) or complete average (several) at ``shots``, else None."""
    cell = (group.stat(datasets[0], shots) if len(datasets) == 1
            else average_stat([(d, group.stat(d, shots)) for d in datasets], "average"))
    return cell if isinstance(cell, Stat) and cell.complete else None


def _published(series: PublishedSeries, datasets: list[str], shots: int) -> float | None:
    value = average_values([(d, series.at(d, shots)) for d in datasets], "average")
    return value.value if isinstance(value, Value) else None


def _draw(ax: Any, figure: FigureSet, datasets: list[str], bands: bool = True,
          left_out: list[str] | None = None) -> bool:
    """Draw every curve that has data; returns False when nothing could be drawn. Run groups with records but
    no drawable point here are appended to ``left_out``."""
    drawn = False
    for group in figure.groups:
        style = figure.styles[group.method_label]
        label = plot_text(group.method_name)
        if group.method == "zero_shot":
            ref = group.reference_shots(min(group.shots))
            cell = _measured(group, datasets, ref) if ref is not None else None
            if cell is not None:
                ax.axhline(cell.mean, color=style.colour, linestyle=style.linestyle, linewidth=1.5, label=label)
                drawn = True
            elif left_out is not None:
                left_out.append(group.method_name)
            continue
        points = [(k, c) for k in group.shots if k > 0 and (c := _measured(group, datasets, k)) is not None]
        if not points:
            if left_out is not None:
                left_out.append(group.method_name)
            continue
        xs = [k for k, _ in points]
        means = [c.mean for _, c in points]
        stds = [c.std for _, c in points]
        variant = {"markerfacecolor": "white", "zorder": 3} if is_variant(group) else {}  # hollow, on top
        ax.plot(xs, means, marker=style.marker or "o", markersize=5, color=style.colour, linestyle=style.linestyle,
                linewidth=1.6, label=label, **variant)
        if bands and any(stds):
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=style.colour, alpha=BAND_ALPHA, linewidth=0)
        drawn = True
    for series in figure.published:
        style = published_style(series.method)
        kwargs = {"color": style.colour, "linestyle": style.linestyle, "linewidth": 1.2,
                  "label": plot_text(series.label)}  # the source is in the figure's title
        if series.zero_shot_only:
            value = _published(series, datasets, 0)
            if value is not None:
                ax.axhline(value, **kwargs)
                drawn = True
            continue
        points = [(k, v) for k in series.shots if k > 0 and (v := _published(series, datasets, k)) is not None]
        if points:
            ax.plot([k for k, _ in points], [v for _, v in points], marker=style.marker, markersize=5, **kwargs)
            drawn = True
    return drawn


def _has_published(figure: FigureSet, datasets: list[str]) -> bool:
    """Whether any published curve of the figure has a point for ``datasets`` (else the figure is not drawn)."""
    return any(_published(s, datasets, k) is not None for s in figure.published for k in s.shots)


def _banded(figure: FigureSet, bands: bool) -> bool:
    """Whether this figure draws ± std bands (the rule of the module docstring)."""
    return bands and sum(1 for g in figure.groups if g.method != "zero_shot") <= MAX_BANDED


def _axes(ax: Any, family: Family, figure: FigureSet, ylabel: bool = True) -> None:
    shots = sorted({k for g in figure.groups if g.method != "zero_shot" for k in g.shots if k > 0}
                   | {k for s in figure.published for k in s.shots if k > 0})
    if shots:
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.minorticks_off()
    ax.set_xlabel("shots per class")
    if ylabel:
        ax.set_ylabel(f"test {metric_label(family.metric)} (%)")
    ax.grid(alpha=0.3)


def _title(family: Family, what: str, sep: str = "\n") -> tuple[str, str]:
    """(title, colour): the short model name, never a path; red with the random-weights label when it applies."""
    title = plot_text(f"{what}: {metric_label(family.metric)} vs shots") + sep
    title += plot_text(model_title(family.model, family.weights))
    if family.random_weights:
        title += f"\n{RANDOM_LABEL}"
    return title, "red" if family.random_weights else "black"


def _notes(figure: FigureSet, bands: bool, left_out: list[str]) -> list[str]:
    notes = []
    if left_out:
        notes.append("not shown (not run on every dataset with every seed): " + ", ".join(left_out))
    if bands and not _banded(figure, bands):
        notes.append(f"± std bands omitted (more than {MAX_BANDED} curves): the tables give every std")
    return notes


def accuracy_plot(family: Family, figure: FigureSet, which: str, out_dir: Path, bands: bool = True) -> list[Path]:
    """One figure for dataset ``which`` (or AVERAGE over the family's datasets); [] when nothing to draw."""
    datasets = family.datasets if which == AVERAGE else [which]
    if figure.published and not _has_published(figure, datasets):
        return []
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    left_out: list[str] = []
    if not _draw(ax, figure, datasets, _banded(figure, bands), left_out):
        return []
    _axes(ax, family, figure)
    n = len(datasets)
    what = f"average over {n} dataset{'' if n == 1 else 's'}" if which == AVERAGE else which
    title, colour = _title(family, f"{what}, {figure.title}")
    ax.set_title(title, fontsize=10, color=colour)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    notes = _notes(figure, bands, left_out)
    if notes:
        ax.text(0.0, -0.16, plot_text("; ".join(notes)), transform=ax.transAxes, fontsize=7, va="top",
                color="dimgray", wrap=True)
    return save_figure(fig, out_dir / join_name("acc", family.name, which, *filter(None, [figure.suffix])))


def accuracy_grid(family: Family, figure: FigureSet, out_dir: Path, bands: bool = True) -> list[Path]:
    """One panel per dataset (and the average) in a grid with one shared legend; [] for a single dataset."""
    panels = family.datasets + [AVERAGE]
    if len(family.datasets) < 2 or figure.published and not any(_has_published(figure, [d]) for d in panels[:-1]):
        return []
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = new_figure(3.2 * cols + 2.4, 2.8 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    handles: dict[str, Any] = {}
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.set_visible(False)
            continue
        which = panels[index]
        _draw(ax, figure, family.datasets if which == AVERAGE else [which], _banded(figure, bands))
        _axes(ax, family, figure, ylabel=index % cols == 0)
        ax.set_title(plot_text(which), fontsize=9)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    title, colour = _title(family, f"all datasets, {figure.title}", " — ")
    fig.suptitle(title, fontsize=11, color=colour)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False)
    notes = _notes(figure, bands, [])
    if notes:  # below the panels, in the space constrained layout keeps for it
        fig.supxlabel(plot_text("; ".join(notes)), fontsize=7, color="dimgray")
    return save_figure(fig, out_dir / join_name("acc", family.name, "grid", *filter(None, [figure.suffix])))


def accuracy_plots(family: Family, published: list[PublishedSeries], out_dir: Path, bands: bool = True) -> list[Path]:
    """Every figure set's accuracy-vs-shots figures: each dataset, then the averaged one and the grid."""
    paths: list[Path] = []
    for figure in figure_sets(family, published):
        for which in family.datasets + ([AVERAGE] if len(family.datasets) > 1 else []):
            paths += accuracy_plot(family, figure, which, out_dir, bands)
        paths += accuracy_grid(family, figure, out_dir, bands)
    return paths
