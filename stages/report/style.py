"""How the report names and draws things: display names of methods and variants, one fixed colour and marker
per method in every figure, short model names for titles, and the metric a report shows.

Colours and markers depend on the method label alone (a fixed table for known methods, a hash for other
variants), never on the order in which series appear, so a method looks the same in every figure and report.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable

METHOD_NAMES = {
    "cmm": "CMM", "zero_shot": "Zero-shot CLIP", "linear_probe": "Linear probe", "tip_adapter": "Tip-Adapter",
    "tip_adapter_f": "Tip-Adapter-F", "clap": "CLAP", "gda": "GDA", "lp_pp": "LP++",
    "ape": "APE", "proker": "ProKeR",
}
VARIANT_NAMES = {
    "no_triplet": "no triplet", "frozen_prototypes": "frozen prototypes", "no_fusion": "no fusion",
    "plain_map": "plain map", "bias": "with bias", "aug": "augmented views",
    "released": "released view protocol",
}

# tab10 colours, one per known method (colour-blind-safe pairs kept apart: CMM red vs linear probe blue)
_METHOD_STYLE = {
    "cmm": ("#d62728", "o"), "zero_shot": ("#7f7f7f", ""), "linear_probe": ("#1f77b4", "s"),
    "tip_adapter": ("#2ca02c", "^"), "tip_adapter_f": ("#ff7f0e", "v"), "clap": ("#9467bd", "D"),
    "gda": ("#8c564b", "P"), "lp_pp": ("#17becf", "X"),
    "ape": ("#1b9e77", "<"), "proker": ("#e7298a", "*"),
}
# for variants (ablations, other template sets, augmented views) and unknown methods: distinct from the above
_EXTRA_COLOURS = ("#e377c2", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                  "#e6550d", "#31a354", "#756bb1", "#636363", "#ad494a", "#a55194", "#6b6ecf", "#b5cf6b")
_EXTRA_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "*", "p")

METRICS = {  # --metric -> (record key under "metrics", label in titles and axes)
    "top1": ("test_top1", "top-1"),
    "top5": ("test_top5", "top-5"),
    "mean_per_class": ("test_mean_per_class", "mean per-class accuracy"),
}


def display_name(method_label: str) -> str:
    """'cmm+no_triplet' -> 'CMM (no triplet)', 'tip_adapter+tpl_imagenet7+aug' -> 'Tip-Adapter (imagenet7
    templates, augmented views)'; unknown parts are shown as they are."""
    method, *parts = method_label.split("+")
    name = METHOD_NAMES.get(method, method)
    extras = [f"{p[4:]} templates" if p.startswith("tpl_") else VARIANT_NAMES.get(p, p.replace("_", " "))
              for p in parts]
    return f"{name} ({', '.join(extras)})" if extras else name


@dataclass(frozen=True)
class SeriesStyle:
    """How one method label is drawn: colour, marker ('' for a line without markers) and line style."""

    colour: str
    marker: str
    linestyle: str


def series_style(method_label: str) -> SeriesStyle:
    """The fixed style of a method label (the same in every figure of every report)."""
    if method_label in _METHOD_STYLE:
        colour, marker = _METHOD_STYLE[method_label]
        return SeriesStyle(colour, marker, ":" if method_label == "zero_shot" else "-")
    digest = int(hashlib.sha256(method_label.encode()).hexdigest(), 16)
    base = method_label.split("+", 1)[0]
    marker = _METHOD_STYLE.get(base, (None, _EXTRA_MARKERS[digest % len(_EXTRA_MARKERS)]))[1] or "o"
    colour = _EXTRA_COLOURS[(digest // len(_EXTRA_MARKERS)) % len(_EXTRA_COLOURS)]
    return SeriesStyle(colour, marker, "--" if base in _METHOD_STYLE else "-")


def published_colour(method_name: str) -> str:
    """A published curve's colour: its method's own colour when we run that method too (drawn dashed)."""
    key = {name: key for key, name in METHOD_NAMES.items()}.get(method_name)
    return series_style(key if key is not None else f"published:{method_name}").colour


def short_model(model: str) -> str:
    """A model name without machine paths: 'local-dir:/home/me/models/x' -> 'x', '/a/b/cfg.json' -> 'cfg';
    open_clip names and hf-hub ids (org/repo) stay as they are."""
    if model.startswith("local-dir:"):
        model = model.split(":", 1)[1]
    elif model.startswith("hf-hub:"):
        return model.split(":", 1)[1]
    if "/" in model or "\\" in model:
        model = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        model = model[:-5] if model.endswith(".json") else model
    return model or "model"


def model_title(model: str, weights: str) -> str:
    """How titles name a model x weights: 'RN50 (openai)', the model without machine paths (file names use
    the short name of stages.shared.naming instead)."""
    return f"{short_model(model)} ({weights})"


def metric_label(metric: str) -> str:
    """'top-1', 'top-5', 'mean per-class accuracy'."""
    return METRICS[metric][1]


def metric_value(metric: str) -> Callable[[Any], float | None]:
    """A function record -> the metric's value (None when the record does not carry it, e.g. top-5 below 5
    classes or a record written before the metric existed)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}' (choose from {', '.join(METRICS)})")
    key = METRICS[metric][0]
    if key == "test_top1":
        return lambda record: record.test_top1

    def value(record: Any) -> float | None:
        number = (record.metrics or {}).get(key)
        ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
        return float(number) if ok else None

    return value
