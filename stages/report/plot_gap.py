"""The modality-gap pictures: test images and class prototypes in the 2-D basis stored in each run's ``.npz``
(stages.fit.gap.joint_projection: one basis for every run of the same features), before the map once and
after the map per run, in panels that share axes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stages.report.escape import one_line, plot_text
from stages.report.groups import RANDOM_LABEL, Family, RunGroup
from stages.shared.fitted_file import META, PROJECTION, FittedFile, FittedFileError, read_meta, read_projection
from stages.shared.naming import join_name
from stages.report.plot_common import balanced_parts, new_figure, save_figure
from stages.report.sections import ABLATED
from stages.shared.record import RunRecord
from stages.report.style import display_name, model_title

MAX_LEGEND_CLASSES = 12  # more classes: the legend says how colours map instead of naming each
MAX_GAP_PANELS = 9       # 'before' + 8 'after' panels in a 3 x 3 grid
PROJ_KEYS = PROJECTION


def load_projection(path: Path) -> dict[str, np.ndarray] | None:
    """The projection arrays of a params file, or None when it holds none (not a mapping method).

    Reads only those members and ``__meta__`` (the class count, when it has one), each bounded before it is
    read (stages/shared/fitted_file.py). Raises ValueError (one line) when the file or the arrays are malformed.
    """
    with FittedFile(path) as fitted:
        if not all(name in fitted for name in PROJ_KEYS):
            return None
        names = _classes(read_meta(fitted)) if META in fitted else None
        return read_projection(fitted, len(names) if names is not None else None)


def class_names(path: Path) -> list[str] | None:
    """The class names stored in a params file's metadata (``__meta__``), or None when it has none."""
    try:
        with FittedFile(path) as fitted:
            return _classes(read_meta(fitted)) if META in fitted else None
    except FittedFileError:
        return None


def _classes(meta: object) -> list[str] | None:
    names = meta.get("classes") if isinstance(meta, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def _cmap(classes: int) -> dict[str, Any]:
    cmap = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "turbo"
    return {"cmap": cmap, "vmin": 0, "vmax": max(classes - 1, 1)}


def _class_legend(ax: Any, classes: int, names: list[str] | None) -> None:
    """A legend naming each class's colour (up to MAX_LEGEND_CLASSES), else one line on how colours map."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    norm = _cmap(classes)
    if names is None or len(names) != classes:
        names = [f"class {c}" for c in range(classes)]
    if classes > MAX_LEGEND_CLASSES:
        ax.text(0.01, 0.01, f"colour = class ({classes} classes, {norm['cmap']} colour map)", fontsize=7,
                transform=ax.transAxes, color="dimgray")
        return
    cmap = colormaps[norm["cmap"]]
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6,
                      color=cmap((c - norm["vmin"]) / (norm["vmax"] - norm["vmin"])), label=plot_text(names[c]))
               for c in range(classes)]
    ax.legend(handles=handles, title="classes", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7,
              title_fontsize=8, frameon=False)


def _panel(ax: Any, images: np.ndarray, labels: np.ndarray, protos: np.ndarray, title: str) -> None:
    classes = protos.shape[0]
    norm = _cmap(classes)
    ax.scatter(images[:, 0], images[:, 1], c=labels, s=8, alpha=0.5, marker="o", label="test images", **norm)
    ax.scatter(protos[:, 0], protos[:, 1], c=np.arange(classes), s=140, marker="*", edgecolors="black",
               linewidths=0.6, label="class prototypes", **norm)
    centre_i, centre_t = images.mean(axis=0), protos.mean(axis=0)
    ax.plot([centre_i[0], centre_t[0]], [centre_i[1], centre_t[1]], color="black", marker="x",
            linewidth=1.2, label="centroids (images – prototypes)")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("PC 1")
    ax.grid(alpha=0.3)


@dataclass
class GapRun:
    """The run a gap panel shows: its record, projection arrays and class names."""

    record: RunRecord
    arrays: dict[str, np.ndarray]
    names: list[str] | None


def same_basis(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two runs' projections share one basis: their 'before' arrays (images and prototypes, which fit
    computes from the features alone) agree. Records written before the shared basis never do."""
    if any(a[k].shape != b[k].shape for k in PROJ_KEYS) or not np.array_equal(a["proj_labels"], b["proj_labels"]):
        return False
    return all(np.allclose(a[k], b[k], rtol=0, atol=1e-4) for k in ("proj_images_before", "proj_protos_before"))


def _limits(runs: list[GapRun]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits holding every point of ``runs`` with a 5 % margin, so that their figures compare."""
    points = np.concatenate([r.arrays[k] for r in runs for k in PROJ_KEYS if k != "proj_labels"])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = 0.05 * np.maximum(high - low, 1e-6)
    low, high = low - margin, high + margin
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


def _shots_seed(record: RunRecord) -> str:
    return f"{record.shots} shot{'' if record.shots == 1 else 's'}, seed {record.seed}"


def gap_figure(runs: list[GapRun], limits: tuple, random_weights: bool, stem: Path) -> list[Path]:
    """One 'before' panel (shared by ``runs``) and one 'after' panel per run, in one set of axes limits."""
    first = runs[0].record
    panels = 1 + len(runs)
    cols = min(3, panels)
    rows = -(-panels // cols)
    fig = new_figure(4.2 * cols + 2.0, 3.9 * rows + 0.7)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).flat
    common = len({(r.record.shots, r.record.seed) for r in runs}) == 1
    labels = runs[0].arrays["proj_labels"]

    def gap_note(record: RunRecord, side: str) -> str:
        gap = record.gap.get(side, {}).get("centroid_gap")
        return f" (centroid gap {gap:.3f})" if gap is not None else ""

    panels_drawn = [(axes[0], runs[0].arrays["proj_images_before"], runs[0].arrays["proj_protos_before"],
                     f"before the map{gap_note(first, 'before')}")]
    for ax, run in zip(axes[1:], runs):
        where = "" if common else f", {_shots_seed(run.record)}"
        panels_drawn.append((ax, run.arrays["proj_images_after"], run.arrays["proj_protos_after"],
                             f"after the map: {display_name(run.record.method_label)}{where}"
                             f"{gap_note(run.record, 'after')}"))
    for ax, images, protos, title in panels_drawn:
        _panel(ax, images, labels, protos, plot_text(title))
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    for ax in list(axes)[panels:]:
        ax.set_visible(False)
    for row in range(rows):
        axes[row * cols].set_ylabel("PC 2")
    axes[0].legend(loc="best", fontsize=7)
    _class_legend(axes[cols - 1], runs[0].arrays["proj_protos_before"].shape[0], runs[0].names)
    title = f"Modality gap — {first.dataset}, {model_title(first.model, first.weights)}"
    title = plot_text(title + (f", {_shots_seed(first)}" if common else ""))
    title += "\none PCA basis (test images and text prototypes before the map) in every panel"
    if random_weights:
        title += f"\n{RANDOM_LABEL}"
    fig.suptitle(title, fontsize=10, color="red" if random_weights else "black")
    return save_figure(fig, stem)


def _gap_run(group: RunGroup, dataset: str, warn: Callable[[str], None]) -> GapRun | None:
    """The run of ``group`` on ``dataset`` that its gap panel shows: the most shots, lowest seed, whose params
    file holds projection arrays; None for groups without one (methods that map nothing)."""
    candidates = sorted((r for r in group.records() if r.dataset == dataset), key=lambda r: (-r.shots, r.seed))
    for record in candidates:
        if record.params_path is None or not record.params_path.is_file():
            continue
        try:
            arrays = load_projection(record.params_path)
        except ValueError as exc:
            warn(f"warning: no gap plot from {one_line(record.params_path)}: {one_line(exc)}")
            continue
        if arrays is not None:
            return GapRun(record, arrays, class_names(record.params_path))
    return None


def gap_plots(family: Family, out_dir: Path, warn: Callable[[str], None]) -> list[Path]:
    """Per dataset, the runs of every group that holds a projection, clustered by basis: each cluster is drawn
    as one 'before' panel and an 'after' panel per run (CMM's default first), at most ``MAX_GAP_PANELS``
    panels per figure (more: several figures, each with the 'before' panel and CMM's default, in the same axes
    limits). A run in a basis of its own (a record written before bases were shared, another template set)
    gets a figure of its own."""
    paths: list[Path] = []
    for dataset in family.datasets:
        clusters: list[list[GapRun]] = []
        for group in family.groups:
            run = _gap_run(group, dataset, warn)
            if run is None:
                continue
            home = next((c for c in clusters if same_basis(c[0].arrays, run.arrays)), None)
            if home is None:
                clusters.append([run])
            else:
                home.append(run)
        for cluster in clusters:
            limits = _limits(cluster)
            ref = cluster[:1] if cluster[0].record.method_label == ABLATED else []
            parts = balanced_parts(ref, cluster[len(ref):], MAX_GAP_PANELS - 1)
            for n, part in enumerate(parts):
                extra = [f"part{n + 1}"] if len(parts) > 1 else []
                stem = out_dir / join_name("gap", family.name, dataset, cluster[0].record.method_label, *extra)
                paths += gap_figure(part, limits, family.random_weights, stem)
    return paths
