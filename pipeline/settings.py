"""Default locations, overridable by environment variables so scripts need not repeat them."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "PIPELINE_CACHE_DIR"
DATA_ROOT_ENV = "PIPELINE_DATA_ROOT"
RUNS_DIR_ENV = "PIPELINE_RUNS_DIR"
MIRROR_ENV = "PIPELINE_MIRROR"      # space-separated mirror URLs or folders for `pipeline download`
MANIFEST_ENV = "PIPELINE_MANIFEST"  # a download manifest merged over the built-in one


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, "work_dir/cache"))


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "work_dir/runs"))
