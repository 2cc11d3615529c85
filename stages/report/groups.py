"""Records organised as tables see them: run groups (model x weights x method label) within families
(model x weights), with canonical orders for datasets, methods and shift targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from stages.shared.naming import model_name
from stages.shared.record import RunRecord
from stages.report.stats import Stat, stat_of
from stages.report.style import display_name, metric_value, model_title

# CoOp's table order, which the anchors and the published CSV follow; other datasets come after, sorted.
DATASET_ORDER = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                 "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
SHIFT_ORDER = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
METHOD_ORDER = ("zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "ape", "gda", "lp_pp", "clap", "proker",
                "cmm")
RANDOM_LABEL = "RANDOM WEIGHTS — not a CLIP result"


def ordered(names: Iterable[str], canonical: tuple[str, ...]) -> list[str]:
    """Names in canonical order first, then the rest alphabetically."""
    names = set(names)
    return [n for n in canonical if n in names] + sorted(names - set(canonical))


@dataclass
class RunGroup:
    """All records of one model x weights x method label, by (dataset, shots) then seed."""

    model: str
    weights: str
    method: str
    method_label: str
    cells: dict[tuple[str, int], dict[int, RunRecord]] = field(default_factory=dict)
    random_weights: bool = False
    metric: str = "top1"  # what stat() measures by default: top1, top5 or mean_per_class (style.METRICS)

    @property
    def name(self) -> str:
        """The short name of the model x weights (file names: stages.shared.naming)."""
        return model_name(self.model, self.weights)

    def add(self, record: RunRecord) -> None:
        self.cells.setdefault((record.dataset, record.shots), {})[record.seed] = record
        self.random_weights = self.random_weights or record.random_weights

    @property
    def seeds(self) -> tuple[int, ...]:
        """Every seed present in the group: the yardstick a cell's completeness is judged against."""
        return tuple(sorted({s for by_seed in self.cells.values() for s in by_seed}))

    @property
    def datasets(self) -> list[str]:
        return ordered({d for d, _ in self.cells}, DATASET_ORDER)

    @property
    def shots(self) -> list[int]:
        return sorted({k for _, k in self.cells})

    def records(self) -> list[RunRecord]:
        return [r for by_seed in self.cells.values() for r in by_seed.values()]

    @property
    def method_name(self) -> str:
        """The method label as a reader sees it: 'CMM (no triplet)', 'Tip-Adapter-F' (legends, table cells)."""
        return display_name(self.method_label)

    def stat(self, dataset: str, shots: int, value: Callable[[RunRecord], float | None] | None = None) -> Stat:
        """The cell for ``dataset`` at ``shots`` (empty Stat when never run); the group's metric by default."""
        return stat_of(self.cells.get((dataset, shots), {}), self.seeds, value or metric_value(self.metric))

    def reference_shots(self, shots: int) -> int | None:
        """Shot count whose cells stand for ``shots``: itself, or 0 for a zero-shot group run at 0 shots."""
        have = {k for _, k in self.cells}
        if shots in have:
            return shots
        if self.method == "zero_shot" and have:
            return min(have)
        return None


@dataclass
class Family:
    """Every run group of one model x weights (what one comparison table or plot shows)."""

    model: str
    weights: str
    groups: list[RunGroup]
    metric: str = "top1"

    @property
    def name(self) -> str:
        """The short name of the model x weights (file names: stages.shared.naming)."""
        return model_name(self.model, self.weights)

    @property
    def random_weights(self) -> bool:
        return any(g.random_weights for g in self.groups)

    @property
    def datasets(self) -> list[str]:
        return ordered({d for g in self.groups for d in g.datasets}, DATASET_ORDER)

    def describe(self) -> str:
        """'RN50 (openai)', with the random-weights label when it applies; no machine paths (short model name)."""
        text = model_title(self.model, self.weights)
        return f"{text} [{RANDOM_LABEL}]" if self.random_weights else text


def _method_rank(group: RunGroup) -> tuple:
    base = METHOD_ORDER.index(group.method) if group.method in METHOD_ORDER else len(METHOD_ORDER)
    return (base, group.method, group.method_label != group.method, group.method_label)


def group_records(records: Iterable[RunRecord], metric: str = "top1") -> list[Family]:
    """Families sorted by model and weights, each with its groups in method order; cells measure ``metric``."""
    groups: dict[tuple[str, str, str], RunGroup] = {}
    for r in records:
        key = (r.model, r.weights, r.method_label)
        if key not in groups:
            groups[key] = RunGroup(model=r.model, weights=r.weights, method=r.method, method_label=r.method_label,
                                   metric=metric)
        groups[key].add(r)
    families: dict[tuple[str, str], list[RunGroup]] = {}
    for (model, weights, _), group in groups.items():
        families.setdefault((model, weights), []).append(group)
    return [Family(model=m, weights=w, groups=sorted(gs, key=_method_rank), metric=metric)
            for (m, w), gs in sorted(families.items())]
