"""The modality-gap picture of a run: test images and class prototypes in the 2-D joint PCA basis stored
in its ``.npz``, before and after the map, in two panels that share axes."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stages.report.groups import RANDOM_LABEL, RunGroup
from stages.shared.naming import join_name
from stages.report.plot_common import new_figure, save_figure
from stages.shared.record import RunRecord

PROJ_KEYS = ("proj_images_before", "proj_images_after", "proj_labels", "proj_protos_before", "proj_protos_after")


def load_projection(path: Path) -> dict[str, np.ndarray] | None:
    """The projection arrays of a params file, or None when it holds none (not a mapping method).

    Raises ValueError when the file is unreadable or the arrays have inconsistent shapes.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not all(k in npz.files for k in PROJ_KEYS):
                return None
            arrays = {k: np.asarray(npz[k]) for k in PROJ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot be read as .npz ({exc.__class__.__name__}: {exc})") from exc
    n = arrays["proj_labels"].shape
    images_ok = all(arrays[k].ndim == 2 and arrays[k].shape == (n[0], 2) for k in PROJ_KEYS[:2])
    protos_ok = (arrays["proj_protos_before"].ndim == 2 and arrays["proj_protos_before"].shape[1] == 2
                 and arrays["proj_protos_after"].shape == arrays["proj_protos_before"].shape)
    if len(n) != 1 or not images_ok or not protos_ok:
        raise ValueError("projection arrays have inconsistent shapes (want images n x 2, labels n, protos C x 2)")
    return arrays


def _panel(ax: Any, images: np.ndarray, labels: np.ndarray, protos: np.ndarray, title: str) -> None:
    classes = protos.shape[0]
    cmap = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "turbo"
    norm = {"cmap": cmap, "vmin": 0, "vmax": max(classes - 1, 1)}
    ax.scatter(images[:, 0], images[:, 1], c=labels, s=8, alpha=0.5, marker="o", label="test images", **norm)
    ax.scatter(protos[:, 0], protos[:, 1], c=np.arange(classes), s=140, marker="*", edgecolors="black",
               linewidths=0.6, label="class prototypes", **norm)
    centre_i, centre_t = images.mean(axis=0), protos.mean(axis=0)
    ax.plot([centre_i[0], centre_t[0]], [centre_i[1], centre_t[1]], color="black", marker="x",
            linewidth=1.2, label="centroids (images – prototypes)")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("PC 1")
    ax.grid(alpha=0.3)


def gap_plot(record: RunRecord, arrays: dict[str, np.ndarray], random_weights: bool, out_dir: Path) -> list[Path]:
    """Two panels (before, after) for one run; returns the PNG and SVG paths."""
    fig = new_figure(10.0, 4.8)
    before, after = fig.subplots(1, 2, sharex=True, sharey=True)
    labels = arrays["proj_labels"]
    for ax, side in ((before, "before"), (after, "after")):
        gap = record.gap.get(side, {}).get("centroid_gap")
        note = f" (centroid gap {gap:.3f})" if gap is not None else ""
        _panel(ax, arrays[f"proj_images_{side}"], labels, arrays[f"proj_protos_{side}"],
               f"{side} the map{note}")
    before.set_ylabel("PC 2")
    after.legend(loc="best", fontsize=7)
    title = (f"Modality gap — {record.dataset}, {record.method_label}, {record.name}, "
             f"{record.shots} shots, seed {record.seed}")
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
                paths += gap_plot(record, arrays, group.random_weights, out_dir)
                break
    return paths
