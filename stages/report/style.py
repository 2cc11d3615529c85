"""How the report names and draws things: display names of methods and variants, one fixed style per run
label in every figure, short model names for titles, and the metric a report shows.

Styles go by meaning, never by a hash or by the order in which series appear:

- a method has one fixed colour and marker, drawn solid (zero-shot: grey, dotted, no marker);
- a variant (``cmm+no_triplet``, ``tip_adapter+aug``) is drawn in a shade of its method's colour (CMM's
  ablations in CMM's reds), never solid, with hollow markers on top of the defaults (a variant equal to its
  default stays visible), with a line style and marker from its slot: known variants have fixed
  slots, any other variant takes the next free slot after them (labels in sorted order), so no two labels
  drawn together share colour, line and marker (``series_styles``);
- a published curve takes its method's colour where we run that method too, else a fixed colour of its
  own, dashed with an 'x' marker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

METHOD_NAMES = {
    "cmm": "CMM", "zero_shot": "Zero-shot CLIP", "linear_probe": "Linear probe", "tip_adapter": "Tip-Adapter",
    "tip_adapter_f": "Tip-Adapter-F", "clap": "CLAP", "gda": "GDA", "lp_pp": "LP++", "proker": "ProKeR",
    "ape": "APE",
}
VARIANT_NAMES = {
    "no_triplet": "no triplet", "frozen_prototypes": "frozen prototypes", "no_fusion": "no fusion",
    "no_prior": "no prior", "plain_map": "plain map", "bias": "with bias", "val_search": "val search",
    "aug": "augmented views", "released": "released view protocol",
}

# one colour (tab10) and marker per method; red is CMM's, and its variants' shades of it
_METHOD_STYLE = {
    "cmm": ("#d62728", "o"), "zero_shot": ("#7f7f7f", ""), "linear_probe": ("#1f77b4", "s"),
    "tip_adapter": ("#2ca02c", "^"), "tip_adapter_f": ("#ff7f0e", "v"), "clap": ("#9467bd", "D"),
    "gda": ("#8c564b", "P"), "lp_pp": ("#17becf", "X"), "proker": ("#bcbd22", "h"), "ape": ("#e377c2", "*"),
}
# methods this version does not know, in sorted order (cycled with the markers: 60 before a repeat)
_OTHER_COLOURS = ("#393b79", "#637939", "#8c6d31", "#7b4173", "#6b6ecf")
# published methods that we do not run (stages/report/data), each its own colour
_PUBLISHED_COLOURS = {"CoOp": "#393b79", "CLIP-Adapter": "#637939", "CALIP": "#8c6d31", "Tip-X": "#7b4173",
                      "APE-T": "#6b6ecf"}
# variant slots: the known variants first (fixed for every report), then any other, by label
VARIANT_SLOTS = ("no_triplet", "frozen_prototypes", "no_fusion", "no_prior", "bias", "val_search", "aug",
                 "released", "tpl_imagenet7", "tpl_imagenet80", "frozen_prototypes+no_triplet", "plain_map")
# mixed towards black (< 0) or white (> 0), never the method's own colour: 3 shades x 5 lines x 12 markers = 60 slots
_SHADES = (-0.5, 0.35, -0.25)
_LINESTYLES: tuple[Any, ...] = ("--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))
_MARKERS = ("s", "^", "v", "D", "P", "X", "<", ">", "h", "*", "p", "d")

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
    """How one curve is drawn: colour, marker ('' for a line without markers) and line style (a matplotlib
    name or an (offset, dashes) tuple)."""

    colour: str
    marker: str
    linestyle: Any

    @property
    def key(self) -> tuple:
        """What a reader tells curves apart by: colour, line and marker."""
        return (self.colour, self.linestyle, self.marker)


def shade(colour: str, amount: float) -> str:
    """``colour`` mixed towards black (amount < 0) or white (amount > 0) by ``abs(amount)``."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + (target - c) * abs(amount)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def _slot_style(colour: str, slot: int) -> SeriesStyle:
    return SeriesStyle(shade(colour, _SHADES[slot % len(_SHADES)]), _MARKERS[slot % len(_MARKERS)],
                       _LINESTYLES[slot % len(_LINESTYLES)])


def series_styles(labels: Iterable[str]) -> dict[str, SeriesStyle]:
    """The style of every run label in ``labels`` (see the module docstring); labels of the same method that
    are drawn together never share colour, line and marker. Pass every label a figure set may show, so each
    keeps one style across the set's figures."""
    labels = sorted(set(labels))
    others = sorted({label.partition("+")[0] for label in labels} - set(_METHOD_STYLE))
    own = {**_METHOD_STYLE, **{m: (_OTHER_COLOURS[i % len(_OTHER_COLOURS)], _MARKERS[i % len(_MARKERS)])
                               for i, m in enumerate(others)}}
    styles: dict[str, SeriesStyle] = {}
    next_slot: dict[str, int] = {}  # per method, the next slot after the known ones
    for label in labels:
        method, _, variant = label.partition("+")
        colour, marker = own[method]
        if not variant:
            styles[label] = SeriesStyle(colour, marker, ":" if method == "zero_shot" else "-")
            continue
        if variant in VARIANT_SLOTS:
            slot = VARIANT_SLOTS.index(variant)
        else:
            slot = next_slot.get(method, len(VARIANT_SLOTS))
            next_slot[method] = slot + 1
        styles[label] = _slot_style(colour, slot)
    return styles


def series_style(method_label: str) -> SeriesStyle:
    """The style of one run label drawn alone (a known label has this style in every figure)."""
    return series_styles([method_label])[method_label]


def published_style(method_name: str) -> SeriesStyle:
    """A published curve: its method's colour when we run that method too, else its own; dashed, 'x' marks."""
    key = {name: key for key, name in METHOD_NAMES.items()}.get(method_name)
    colour = _METHOD_STYLE[key][0] if key is not None else _PUBLISHED_COLOURS.get(method_name, _OTHER_COLOURS[0])
    return SeriesStyle(colour, "x", "--")


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
