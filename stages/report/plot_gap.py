"""The modality-gap picture of a run: test images and class prototypes in the 2-D joint PCA basis stored
in its ``.npz``, before and after the map, in two panels that share axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from stages.report.groups import RANDOM_LABEL, RunGroup
from stages.shared.fitted_file import META, PROJECTION, FittedFile, FittedFileError, read_meta, read_projection
from stages.shared.naming import join_name
from stages.report.plot_common import new_figure, save_figure
from stages.shared.record import RunRecord
from stages.report.style import display_name, model_title

MAX_LEGEND_CLASSES = 12  # more classes: the legend says how colours map instead of naming each
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
                      color=cmap((c - norm["vmin"]) / (norm["vmax"] - norm["vmin"])), label=names[c])
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


def gap_plot(record: RunRecord, arrays: dict[str, np.ndarray], random_weights: bool, out_dir: Path,
             names: list[str] | None = None) -> list[Path]:
    """Two panels (before, after) for one run, with a class legend; returns the PNG and SVG paths."""
    fig = new_figure(11.5, 4.8)
    before, after = fig.subplots(1, 2, sharex=True, sharey=True)
    labels = arrays["proj_labels"]
    for ax, side in ((before, "before"), (after, "after")):
        gap = record.gap.get(side, {}).get("centroid_gap")
        note = f" (centroid gap {gap:.3f})" if gap is not None else ""
        _panel(ax, arrays[f"proj_images_{side}"], labels, arrays[f"proj_protos_{side}"],
               f"{side} the map{note}")
    before.set_ylabel("PC 2")
    before.legend(loc="best", fontsize=7)
    _class_legend(after, arrays["proj_protos_before"].shape[0], names)
    title = (f"Modality gap — {record.dataset}, {display_name(record.method_label)}, "
             f"{model_title(record.model, record.weights)}, {record.shots} shots, seed {record.seed}")
    if random_weights:
        title += f"\n{RANDOM_LABEL}"
    fig.suptitle(title, fontsize=10, color="red" if random_weights else "black")
    stem = join_name("gap", record.name, record.method_label, record.dataset,
                     f"shots{record.shots}_seed{record.seed}")
    return save_figure(fig, out_dir / stem)


def gap_plots(group: RunGroup, out_dir: Path, warn: Callable[[str], None]) -> list[Path]:
    """One picture per dataset of the group: the run with the most shots, lowest seed, whose params file
    holds projection arrays; groups without such files (non-mapping methods) give none."""
    paths: list[Path] = []
    for dataset in group.datasets:
        candidates = sorted((r for r in group.records() if r.dataset == dataset),
                            key=lambda r: (-r.shots, r.seed))
        for record in candidates:
            if record.params_path is None or not record.params_path.is_file():
                continue
            try:
                arrays = load_projection(record.params_path)
            except ValueError as exc:
                warn(f"warning: no gap plot from {record.params_path}: {exc}")
                continue
            if arrays is not None:
                paths += gap_plot(record, arrays, group.random_weights, out_dir, class_names(record.params_path))
                break
    return paths
