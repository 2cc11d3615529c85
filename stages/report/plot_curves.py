"""Accuracy-vs-shots plots per dataset, averaged over datasets, and a grid of every dataset: one line per
measured method in its fixed colour and marker (light band = ± std over seeds, optional), zero-shot as a
dotted horizontal line, published curves dashed grey-blue for the same backbone. A method that cannot be
averaged (not run on every dataset with every seed) is named under the average plot, never silently dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.naming import join_name
from stages.report.plot_common import new_figure, save_figure
from stages.report.published import PublishedSeries, matching
from stages.report.stats import Stat, Value, average_stat, average_values
from stages.report.style import metric_label, model_title, published_colour, series_style

AVERAGE = "average"
BAND_ALPHA = 0.08  # light enough that eight overlapping bands stay readable


def _measured(group: RunGroup, datasets: list[str], shots: int) -> Stat | None:
    """The complete cell (one dataset) or complete average (several) at ``shots``, else None."""
    cell = (group.stat(datasets[0], shots) if len(datasets) == 1
            else average_stat([(d, group.stat(d, shots)) for d in datasets], "average"))
    return cell if isinstance(cell, Stat) and cell.complete else None


def _published(series: PublishedSeries, datasets: list[str], shots: int) -> float | None:
    value = average_values([(d, series.at(d, shots)) for d in datasets], "average")
    return value.value if isinstance(value, Value) else None


def _draw(ax: Any, family: Family, datasets: list[str], published: list[PublishedSeries],
          bands: bool = True, left_out: list[str] | None = None) -> bool:
    """Draw every line that has data; returns False when nothing could be drawn. Methods with records but no
    drawable point here are appended to ``left_out``."""
    drawn = False
    for group in family.groups:
        style = series_style(group.method_label)
        if group.method == "zero_shot":
            ref = group.reference_shots(min(group.shots))
            cell = _measured(group, datasets, ref) if ref is not None else None
            if cell is not None:
                ax.axhline(cell.mean, color=style.colour, linestyle=style.linestyle, linewidth=1.5, label=group.method_name)
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
        ax.plot(xs, means, marker=style.marker or "o", markersize=5, color=style.colour, linestyle=style.linestyle,
                linewidth=1.6, label=group.method_name)
        if bands and any(stds):
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=style.colour, alpha=BAND_ALPHA, linewidth=0)
        drawn = True
    for series in matching(published, family.model):
        style = {"color": published_colour(series.method), "linestyle": "--", "linewidth": 1, "alpha": 0.7,
                 "label": f"{series.label} [{series.short_source}]"}
        if series.zero_shot_only:
            value = _published(series, datasets, 0)
            if value is not None:
                ax.axhline(value, **style)
            continue
        points = [(k, v) for k in series.shots if k > 0 and (v := _published(series, datasets, k)) is not None]
        if points:
            ax.plot([k for k, _ in points], [v for _, v in points], marker="x", markersize=4, **style)
    return drawn


def _axes(ax: Any, family: Family, published: list[PublishedSeries], ylabel: bool = True) -> None:
    shots = sorted({k for g in family.groups if g.method != "zero_shot" for k in g.shots if k > 0}
                   | {k for s in matching(published, family.model) for k in s.shots if k > 0})
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
    title = f"{what}: {metric_label(family.metric)} vs shots{sep}{model_title(family.model, family.weights)}"
    if family.random_weights:
        title += f"\n{RANDOM_LABEL}"
    return title, "red" if family.random_weights else "black"


def _published_for(family: Family, published: list[PublishedSeries]) -> list[PublishedSeries]:
    """Published curves are top-1: drawn only on top-1 plots."""
    return published if family.metric == "top1" else []


def accuracy_plot(family: Family, which: str, published: list[PublishedSeries], out_dir: Path,
                  bands: bool = True) -> list[Path]:
    """One figure for dataset ``which`` (or AVERAGE over the family's datasets); [] when nothing to draw."""
    datasets = family.datasets if which == AVERAGE else [which]
    published = _published_for(family, published)
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    left_out: list[str] = []
    if not _draw(ax, family, datasets, published, bands, left_out):
        return []
    _axes(ax, family, published)
    n = len(datasets)
    what = f"average over {n} dataset{'' if n == 1 else 's'}" if which == AVERAGE else which
    title, colour = _title(family, what)
    ax.set_title(title, fontsize=10, color=colour)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    if left_out:
        ax.text(0.0, -0.16, "not shown (not run on every dataset with every seed): " + ", ".join(left_out),
                transform=ax.transAxes, fontsize=7, va="top", color="dimgray", wrap=True)
    return save_figure(fig, out_dir / join_name("acc", family.name, which))


def accuracy_grid(family: Family, published: list[PublishedSeries], out_dir: Path, bands: bool = True) -> list[Path]:
    """One panel per dataset (and the average) in a grid with one shared legend; [] for a single dataset."""
    panels = family.datasets + [AVERAGE]
    if len(family.datasets) < 2:
        return []
    published = _published_for(family, published)
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = new_figure(3.2 * cols + 2.2, 2.8 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    handles: dict[str, Any] = {}
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.set_visible(False)
            continue
        which = panels[index]
        datasets = family.datasets if which == AVERAGE else [which]
        _draw(ax, family, datasets, published, bands)
        _axes(ax, family, published, ylabel=index % cols == 0)
        ax.set_title("average" if which == AVERAGE else which, fontsize=9)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    title, colour = _title(family, "all datasets", " — ")
    fig.suptitle(title, fontsize=11, color=colour)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False)
    return save_figure(fig, out_dir / join_name("acc", family.name, "grid"))


def accuracy_plots(family: Family, published: list[PublishedSeries], out_dir: Path, bands: bool = True) -> list[Path]:
    """Accuracy-vs-shots figures for every dataset of the family, then the averaged one and the grid."""
    paths: list[Path] = []
    for which in family.datasets + ([AVERAGE] if len(family.datasets) > 1 else []):
        paths += accuracy_plot(family, which, published, out_dir, bands)
    return paths + accuracy_grid(family, published, out_dir, bands)
