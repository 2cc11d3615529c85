"""A real ``fit_runs`` sweep in its own process (``--jobs 2``), for the kill test: ``python sweep_child.py RUNS``."""

from __future__ import annotations

import sys
from pathlib import Path

from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like

SWEEP = dict(methods=["cmm", "zero_shot", "tip_adapter"], shots=[1, 2, 4], seeds=[1, 2])


def source():
    """The features both the child and the test build (deterministic)."""
    return make_clip_like(n_classes=8, dim=32, train_per_class=10, val_per_class=4, test_per_class=12, seed=5)


if __name__ == "__main__":
    fit_runs(source(), runs_dir=Path(sys.argv[1]), jobs=int(sys.argv[2]), progress=lambda line: print(line, flush=True),
             **SWEEP)
