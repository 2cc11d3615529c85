"""The package versions the records were made with (``versions`` of each record, written by fit), as the
report's index shows them: one line per distinct set, and a warning when the records mix sets."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from stages.shared.record import RunRecord

NOT_RECORDED = "not recorded (a record written before versions were kept)"


def version_sets(records: Sequence[RunRecord]) -> list[tuple[dict[str, str], int]]:
    """Each distinct ``versions`` mapping with the number of records that carry it, most common first (ties in
    the order of the mapping's text, records that kept none last); an empty mapping stands for those."""
    counts = Counter(tuple(sorted(r.versions.items())) for r in records)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], not item[0], item[0]))
    return [(dict(items), n) for items, n in ordered]


def describe_set(versions: dict[str, str]) -> str:
    """'pipeline 0.1.0, torch 2.14.1, ...' in the record's key order (sorted), or NOT_RECORDED."""
    return ", ".join(f"{name} {version}" for name, version in versions.items()) if versions else NOT_RECORDED


def mixed_warning(sets: list[tuple[dict[str, str], int]]) -> str | None:
    """One line naming the packages whose versions differ between the records, or None when all agree."""
    if len(sets) < 2:
        return None
    names = sorted({name for versions, _ in sets for name in versions})
    differing = [name for name in names if len({versions.get(name) for versions, _ in sets}) > 1]
    return (f"the records were made with {len(sets)} different sets of package versions (differing: "
            f"{', '.join(differing)}); numbers from different sets may not compare: see Versions in the index")
