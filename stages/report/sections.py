"""What goes where in a report: the main comparison holds the methods at their defaults (a run label without
a variant suffix: ``cmm``, ``zero_shot``, ``tip_adapter``, ...); CMM's variants (``cmm+no_triplet``,
``cmm+tpl_imagenet7``) are its ablations; every other variant (``tip_adapter+aug``,
``linear_probe+tpl_imagenet80``) sits beside its own method. And which labels go in at all
(``pipeline report --methods / --exclude``)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Sequence

from stages.shared.errors import ReportError
from stages.shared.record import RunRecord
from stages.report.escape import one_line
from stages.report.groups import Family, RunGroup

ABLATED = "cmm"  # the method whose variants are the ablations
METHODS, ABLATIONS, VARIANTS = "methods", "ablations", "variants"


def is_variant(group: RunGroup) -> bool:
    """True for a variant of a method (its label carries a suffix: ``cmm+no_triplet``, ``gda+aug``)."""
    return "+" in group.method_label


def section_of(group: RunGroup) -> str:
    """METHODS, ABLATIONS (a variant of CMM) or VARIANTS (a variant of any other method)."""
    if not is_variant(group):
        return METHODS
    return ABLATIONS if group.method == ABLATED else VARIANTS


def sections(family: Family) -> dict[str, list[list[RunGroup]]]:
    """The family's groups by section, as blocks of rows/curves that belong together, in method order:

    - METHODS: one block, every default;
    - ABLATIONS: one block, CMM's default first (the reference), then its variants; absent without a variant;
    - VARIANTS: one block per method that has variants, its default first (when run), then its variants.
    """
    defaults = {g.method: g for g in family.groups if not is_variant(g)}
    out: dict[str, list[list[RunGroup]]] = {}
    main = [g for g in family.groups if section_of(g) == METHODS]
    if main:
        out[METHODS] = [main]
    ablations = [g for g in family.groups if section_of(g) == ABLATIONS]
    if ablations:
        out[ABLATIONS] = [([defaults[ABLATED]] if ABLATED in defaults else []) + ablations]
    blocks: dict[str, list[RunGroup]] = {}
    for g in family.groups:
        if section_of(g) == VARIANTS:
            blocks.setdefault(g.method, [defaults[g.method]] if g.method in defaults else []).append(g)
    if blocks:
        out[VARIANTS] = list(blocks.values())
    return out


def _matches(item: str, record: RunRecord) -> bool:
    """A label (exact), a method name (that method and all its variants) or a shell-style pattern over labels."""
    if any(ch in item for ch in "*?["):
        return fnmatchcase(record.method_label, item)
    return item in (record.method_label, record.method)


def choose(records: Sequence[RunRecord], methods: Iterable[str] | None = None,
           exclude: Iterable[str] | None = None) -> list[RunRecord]:
    """The records whose label ``methods`` names (all when None) and ``exclude`` does not.

    Each item is a run label (``cmm+no_triplet``), a method name (``tip_adapter``: the method and all its
    variants) or a pattern (``cmm+*``). An item that names nothing present is a ReportError naming what is.
    """
    methods, exclude = list(methods or []), list(exclude or [])
    for option, items in (("--methods", methods), ("--exclude", exclude)):
        unknown = [item for item in items if not any(_matches(item, r) for r in records)]
        if unknown:
            labels = sorted({r.method_label for r in records})
            names = sorted({r.method for r in records})
            raise ReportError(f"{option}: {', '.join(repr(one_line(u)) for u in unknown)} names no run here; "
                              f"labels present: {', '.join(map(one_line, labels))} (methods: "
                              f"{', '.join(map(one_line, names))}; a pattern like 'cmm+*' works too)")
    kept = [r for r in records if (not methods or any(_matches(m, r) for m in methods))
            and not any(_matches(x, r) for x in exclude)]
    if not kept:
        raise ReportError("--methods/--exclude leave no run to report; labels present: "
                          f"{', '.join(sorted({one_line(r.method_label) for r in records}))}")
    return kept
