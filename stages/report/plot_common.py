"""Shared plotting helpers: figures through matplotlib's object API (Agg, no pyplot global state) and
saving each figure as PNG and SVG. matplotlib is imported lazily: tables never need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from stages.report.table import split_evenly

T = TypeVar("T")
MAX_SERIES = 10  # tab10's ten distinguishable colours: with more curves, a reader cannot match legend and line


def balanced_parts(reference: list[T], items: list[T], cap: int = MAX_SERIES) -> list[list[T]]:
    """``reference + items`` when it fits ``cap``; else ``items`` split in order into the fewest parts of
    balanced size (counts differ by at most one), each after ``reference``, each within ``cap``."""
    room = max(1, cap - len(reference))
    return [reference + part for part in split_evenly(items, max(1, -(-len(items) // room)))]


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (it is an optional dependency: extras 'plots')."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def new_figure(width: float, height: float, **kwargs: Any) -> Any:
    """A matplotlib Figure with an Agg canvas, independent of any interactive backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg (reproducible metadata); returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.parent / f"{stem.name}.png"
    svg = stem.parent / f"{stem.name}.svg"
    from matplotlib import rc_context

    from stages.shared.safe_io import atomic_path

    with atomic_path(png) as tmp:  # never a 0-byte or half-drawn plot, even when killed
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "cmm"}), atomic_path(svg) as tmp:  # searchable, reproducible
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    return [png, svg]
