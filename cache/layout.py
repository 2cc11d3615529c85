"""Names and constants of the cache's HDF5 layout (where a cache file lives is ``stages.shared.naming``)."""

from __future__ import annotations

from pathlib import Path

FORMAT = "cmm-pipeline-cache"
SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"
DONE_SUFFIX = "__done"  # sibling dataset holding one progress flag per block of rows


def partial_path(path: str | Path) -> Path:
    """Where an unfinished write of ``path`` lives until it is committed by an atomic rename."""
    return Path(str(path) + PARTIAL_SUFFIX)


def done_name(name: str) -> str:
    """The progress-mask dataset of the array ``name``."""
    return name + DONE_SUFFIX
