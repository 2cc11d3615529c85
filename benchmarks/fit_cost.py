"""Fit cost (seconds and peak memory) of CMM and the baselines on the same cached-like features, each including
its val search, on a quiet machine and beside one competing CPU-bound process, in one process or in ``--jobs``
workers.

    .venv/bin/python benchmarks/fit_cost.py                                  # 10, 100, 1000 classes; quiet and loaded; jobs 1 and 2
    .venv/bin/python benchmarks/fit_cost.py --classes 10,100 --jobs 1,2 --conditions quiet,loaded
    .venv/bin/python benchmarks/fit_cost.py --classes 100 --methods cmm --conditions quiet --warm-up   # the old figure
    .venv/bin/python benchmarks/fit_cost.py --classes 1000 --methods proker --proker-grid point      # one grid point

``--dataset`` names the released per-dataset grids that Tip-Adapter(-F), APE and ProKeR search (default
``imagenet``, the 1000-class benchmark: Tip-Adapter 200 x 20 (beta, alpha), APE 200 x 20 x 5 (beta, alpha, gamma),
ProKeR 10 x 10 (beta, lambda)). ProKeR costs one Cholesky factorisation of an N x N kernel per grid point;
``--proker-grid point`` fits it at one (beta, lambda) (2, 0.1) to measure that unit where the full grid takes
too long on a CPU (1000 classes x 16 shots: about a minute per point on 2 shared cores, so the default run's
100-point ProKeR fit there takes over an hour; on a GPU, seconds). Peak memory per fit: the process's peak resident set (VmHWM, reset before each fit through
/proc/self/clear_refs) minus its resident set before the fit, i.e. what the fit itself added.

Features come from ``make_clip_like`` (real CLIP caches cost the same: only shapes matter); the val split has
min(16, 4) = 4 shots per class as in CoOp. Each (condition, jobs) cell runs in a FRESH process, as a user's
``pipeline fit`` does, so the first fit pays its imports (torch._dynamo on the first optimiser step) unless
``--warm-up``. ``loaded`` starts one busy-loop process before the cell and kills it after (benchmarks/common.py).
``--jobs 1`` fits in the cell's own process under the thread policy (stages/fit/estimator.py);
``--jobs N`` sends the fits to N worker processes of one torch thread each (stages/fit/parallel.py), as
``pipeline fit --jobs N`` does. The cell's wall time is what a user waits for all its fits.
Writes benchmarks/results/fit_cost.json (``--out`` names another file there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import machine, run_cells  # benchmarks/common.py
from stages.fit.methods import DEFAULT_METHODS  # numpy only: the methods pipeline fit runs by default

RESULTS = Path(__file__).parent / "results" / "fit_cost.json"


PROKER_POINT = {"beta_grid": (2.0,), "lmbda_grid": (0.1,)}


def sources(args: argparse.Namespace) -> dict:
    """The features of every class count, and the settings every unit needs (sent to ``--jobs`` workers)."""
    from stages.fit.synthetic import make_clip_like

    features = {n: make_clip_like(n_classes=n, dim=args.dim, train_per_class=args.shots,
                                  val_per_class=min(args.shots, 4), test_per_class=5, seed=0) for n in args.classes}
    return {"features": features, "dataset": args.dataset, "proker_grid": args.proker_grid}


def _memory_mib() -> dict[str, float]:
    """VmRSS and VmHWM (peak) of this process, MiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def _reset_peak() -> float | None:
    """Reset this process's peak resident set to its current one; returns the current one (None: not Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _memory_mib()["VmRSS"]
    except (OSError, KeyError):
        return None


def time_fit(data: dict, unit: tuple[int, str]) -> dict:
    """Seconds and added peak memory of one fit including its val search, and its test top-1 (a unit for
    stages.fit.parallel)."""
    from stages.fit.methods import make_estimator

    n_classes, method = unit
    source = data["features"][n_classes]
    X, y = source.image["train"]
    Xv, yv = source.image["val"]
    Xt, yt = source.image["test"]
    estimator = make_estimator(method, source.text["coop"], source.logit_scale, random_state=1,
                               dataset=data["dataset"])
    if method == "proker" and data["proker_grid"] == "point":
        estimator.set_params(**PROKER_POINT)
    before = _reset_peak()
    started = time.perf_counter()
    estimator.fit(X, y, Xv, yv)
    seconds = time.perf_counter() - started
    peak = None if before is None else round(_memory_mib()["VmHWM"] - before, 1)
    row = {"classes": n_classes, "method": method, "seconds": round(seconds, 3), "peak_mib": peak,
           "test_top1_synthetic": round(float(estimator.score(Xt, yt) * 100), 2)}
    grid = getattr(estimator, "search_", {}).get("grid", {})
    if grid:
        row["grid_points"] = int(np.prod([len(values) for values in grid.values()]))
    return row


def cell(args: argparse.Namespace, jobs: int) -> dict:
    """All the fits of one cell in this process (jobs 1) or in ``jobs`` workers; per-fit rows and wall time."""
    import stages.fit.cmm  # noqa: F401 - torch and the methods imported before the clock, in every cell
    from stages.fit.methods import make_estimator

    started = time.perf_counter()
    data = sources(args)
    units = [(n, m) for n in args.classes for m in args.methods]
    if args.warm_up:  # imports and allocator, as the figures before issue 14 were taken
        s = data["features"][args.classes[0]]
        make_estimator("cmm", s.text["coop"], 100.0, random_state=1).fit(s.image["train"][0][:8],
                                                                           s.image["train"][1][:8])
    fits_started = time.perf_counter()
    if jobs == 1:
        rows = [time_fit(data, unit) for unit in units]
    else:
        from stages.fit.parallel import run_units

        rows = [None] * len(units)
        for index, row in run_units(time_fit, data, units, jobs):
            rows[index] = row
    return {"rows": rows, "wall_fits": round(time.perf_counter() - fits_started, 2),
            "wall_with_setup": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="10,100,1000")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dataset", default="imagenet",
                        help="the released per-dataset grids to search (Tip-Adapter(-F), APE, ProKeR)")
    parser.add_argument("--proker-grid", choices=("full", "point"), default="full",
                        help="ProKeR over its dataset's whole grid, or at one (beta, lambda)")
    parser.add_argument("--jobs", default="1,2", help="comma-separated: 1 = in process, N = N worker processes")
    parser.add_argument("--conditions", default="quiet,loaded", help="quiet and/or loaded (one competing process)")
    parser.add_argument("--warm-up", action="store_true", help="one small CMM fit before timing (hides imports)")
    parser.add_argument("--out", default=RESULTS.name, help=f"result file name under benchmarks/results (default {RESULTS.name})")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell, print its JSON
    args = parser.parse_args()
    args.classes = [int(c) for c in args.classes.split(",")]
    args.methods = args.methods.split(",")
    if args.cell:
        print(json.dumps(cell(args, int(args.cell))))
        return
    def show(result: dict) -> None:
        print(f"{result['condition']:6s} jobs {result['jobs']}: {result['wall_fits']:7.2f} s for "
              f"{len(result['rows'])} fits ({result['wall_with_setup']:.2f} s with data set-up)", flush=True)
        for row in result["rows"]:
            peak = "" if row["peak_mib"] is None else f"  peak +{row['peak_mib']:8.1f} MiB"
            points = f"  ({row['grid_points']} grid points)" if "grid_points" in row else ""
            print(f"    {row['classes']:5d} classes  {row['method']:14s} {row['seconds']:8.2f} s{peak}{points}", flush=True)

    cells = run_cells(__file__, args.conditions, args.jobs, _passed(args), on_cell=show)
    ratios = _ratios(cells)
    print("\n| jobs | quiet s | loaded s | loaded / quiet |\n|---:|---:|---:|---:|")
    for jobs, r in ratios.items():
        print(f"| {jobs} | {r['quiet']:.2f} | {r['loaded']:.2f} | {r['ratio']:.2f} |")
    out = RESULTS.parent / Path(args.out).name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "cells": cells,
                               "loaded_over_quiet": ratios}, indent=2))
    print(f"\nwrote {out}")


def _passed(args: argparse.Namespace) -> list[str]:
    out = ["--classes", ",".join(map(str, args.classes)), "--methods", ",".join(args.methods),
           "--shots", str(args.shots), "--dim", str(args.dim), "--dataset", args.dataset,
           "--proker-grid", args.proker_grid]
    return out + (["--warm-up"] if args.warm_up else [])


def _ratios(cells: list[dict]) -> dict:
    """Per jobs: wall seconds of the fits quiet and loaded, and their ratio (what a user feels)."""
    out = {}
    for jobs in sorted({c["jobs"] for c in cells}):
        walls = {c["condition"]: c["wall_fits"] for c in cells if c["jobs"] == jobs}
        if {"quiet", "loaded"} <= set(walls):
            out[jobs] = {"quiet": walls["quiet"], "loaded": walls["loaded"],
                         "ratio": round(walls["loaded"] / walls["quiet"], 2)}
    return out


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
