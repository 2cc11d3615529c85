"""Accuracy-vs-shots plots per dataset and averaged over datasets: one solid line per measured method
(band = ± std over seeds), zero-shot as a horizontal line, published curves dashed for the same backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.naming import join_name
from stages.report.plot_common import new_figure, save_figure
from stages.report.published import PublishedSeries, matching
from stages.report.stats import Stat, Value, average_stat, average_values

AVERAGE = "average"


def _measured(group: RunGroup, datasets: list[str], shots: int) -> Stat | None:
    """The complete cell (one dataset) or complete average (several) at ``shots``, else None."""
    cell = (group.stat(datasets[0], shots) if len(datasets) == 1
            else average_stat([(d, group.stat(d, shots)) for d in datasets], "average"))
    return cell if isinstance(cell, Stat) and cell.complete else None


def _published(series: PublishedSeries, datasets: list[str], shots: int) -> float | None:
    value = average_values([(d, series.at(d, shots)) for d in datasets], "average")
    return value.value if isinstance(value, Value) else None


def _draw(ax: Any, family: Family, datasets: list[str], published: list[PublishedSeries]) -> bool:
    """Draw every line that has data; returns False when nothing could be drawn."""
    drawn = False
    colours = iter(f"C{i % 10}" for i in range(1000))
    for group in family.groups:
        colour = next(colours)
        if group.method == "zero_shot":
            ref = group.reference_shots(min(group.shots))
            cell = _measured(group, datasets, ref) if ref is not None else None
            if cell is not None:
                ax.axhline(cell.mean, color=colour, linestyle=":", linewidth=1.5, label=group.method_label)
                drawn = True
            continue
        points = [(k, c) for k in group.shots if k > 0 and (c := _measured(group, datasets, k)) is not None]
        if not points:
            continue
        xs = [k for k, _ in points]
        means = [c.mean for _, c in points]
        stds = [c.std for _, c in points]
        ax.plot(xs, means, marker="o", color=colour, label=group.method_label)
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=colour, alpha=0.15, linewidth=0)
        drawn = True
    from matplotlib import colormaps

    palette = colormaps["tab20b"]
    for i, series in enumerate(matching(published, family.model)):
        style = {"color": palette(i % 20), "linestyle": "--", "linewidth": 1, "alpha": 0.8,
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


def accuracy_plot(family: Family, which: str, published: list[PublishedSeries], out_dir: Path) -> list[Path]:
    """One figure for dataset ``which`` (or AVERAGE over the family's datasets); [] when nothing to draw."""
    datasets = family.datasets if which == AVERAGE else [which]
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    if not _draw(ax, family, datasets, published):
        return []
    shots = sorted({k for g in family.groups if g.method != "zero_shot" for k in g.shots if k > 0}
                   | {k for s in matching(published, family.model) for k in s.shots if k > 0})
    if shots:
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.minorticks_off()
    ax.set_xlabel("shots per class")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    what = f"average over {len(datasets)} datasets" if which == AVERAGE else which
    title = f"{what}: top-1 vs shots — {family.name}"
    if family.random_weights:
        title += f"\n{RANDOM_LABEL}"
    ax.set_title(title, fontsize=10, color="red" if family.random_weights else "black")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    return save_figure(fig, out_dir / join_name("acc", family.name, which))


def accuracy_plots(family: Family, published: list[PublishedSeries], out_dir: Path) -> list[Path]:
    """Accuracy-vs-shots figures for every dataset of the family, then the averaged one."""
    paths: list[Path] = []
    for which in family.datasets + ([AVERAGE] if len(family.datasets) > 1 else []):
        paths += accuracy_plot(family, which, published, out_dir)
    return paths
