"""Names and constants of the cache's HDF5 layout, and where cache files live."""

from __future__ import annotations

import re
from pathlib import Path

FORMAT = "cmm-pipeline-cache"
SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"
DONE_SUFFIX = "__done"  # sibling dataset holding one progress flag per block of rows


def slug(text: str) -> str:
    """File-name-safe form of a model name or weights id (``hf-hub:org/x`` -> ``hf-hub_org_x``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")
    return cleaned or "unnamed"


def cache_path(cache_dir: str | Path, dataset: str, model: str, weights: str) -> Path:
    """The one HDF5 file for a dataset x model x weights: ``<cache_dir>/<dataset>/<model>__<weights>.h5``."""
    return Path(cache_dir) / slug(dataset) / f"{slug(model)}__{slug(weights)}.h5"


def partial_path(path: str | Path) -> Path:
    """Where an unfinished write of ``path`` lives until it is committed by an atomic rename."""
    return Path(str(path) + PARTIAL_SUFFIX)


def done_name(name: str) -> str:
    """The progress-mask dataset of the array ``name``."""
    return name + DONE_SUFFIX
