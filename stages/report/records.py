"""Finding the run records of a runs folder for the report: the valid ones once each, the rest skipped with a warning.

The record itself (schema, layout, validation) is owned by ``stages.shared.record``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from stages.shared.errors import RecordError
from stages.shared.record import RECORD_GLOB, RunRecord, read_record
from stages.report.escape import one_line


def load_records(runs_dir: Path, warn: Callable[[str], None]) -> tuple[list[RunRecord], list[Path]]:
    """Every valid record under ``runs_dir`` (sorted by path) and the paths skipped with a warning (one line each,
    whatever the path or the record holds: a name with a newline or NUL is invalid, stages.shared.record).

    A second record of the same dataset x model x weights x method label x shots x seed (a copy elsewhere
    in the tree) is skipped too, so that no run is counted twice; the one at its layout path is kept.
    """
    valid: dict[tuple, list[RunRecord]] = {}
    skipped: list[Path] = []
    for path in sorted(runs_dir.rglob(RECORD_GLOB)):
        if not path.is_file():
            continue
        try:
            record = read_record(path)
        except RecordError as exc:
            warn(f"warning: skipped run record {one_line(path)}: {one_line(exc.reason)}")
            skipped.append(path)
            continue
        valid.setdefault(record.run_key, []).append(record)
    records: list[RunRecord] = []
    for same in valid.values():
        same.sort(key=lambda r: (r.path != r.layout_path(runs_dir), str(r.path)))
        records.append(same[0])
        for other in same[1:]:
            warn(f"warning: skipped run record {one_line(other.path)}: same run as {one_line(same[0].path)}")
            skipped.append(other.path)
    return sorted(records, key=lambda r: str(r.path)), skipped
