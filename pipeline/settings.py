"""Default locations, overridable by environment variables so scripts need not repeat them."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "PIPELINE_CACHE_DIR"
DATA_ROOT_ENV = "PIPELINE_DATA_ROOT"
RUNS_DIR_ENV = "PIPELINE_RUNS_DIR"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, "work_dir/cache"))


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "work_dir/runs"))
