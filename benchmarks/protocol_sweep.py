"""The whole few-shot protocol from cache: 11 dataset-sized feature sets x shots 1-16 x seeds 1-3 x methods,
quiet and beside one competing CPU-bound process, with ``pipeline fit --jobs 1`` and ``--jobs 2``.

    .venv/bin/python benchmarks/protocol_sweep.py                        # everything: CMM, zero-shot, Tip-Adapter
    .venv/bin/python benchmarks/protocol_sweep.py --methods cmm,gda,zero_shot,tip_adapter   # where gda exists
    .venv/bin/python benchmarks/protocol_sweep.py --datasets dtd,eurosat --shots 16 --conditions quiet --jobs 2

Each set has the class count and test size of the real benchmark (protocol.md) and D = 512 features from
``make_clip_like``; ``fit_runs`` does exactly what ``pipeline fit --method ... --jobs N`` does (sampling, val
search, test scoring, gap measures, records). Each (condition, jobs) cell runs in a fresh process; ``loaded``
starts one busy-loop process before the cell and kills it after (benchmarks/common.py).
Writes benchmarks/results/protocol_sweep.json (``--out`` names another file there).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import machine, run_cells  # benchmarks/common.py

# (classes, test images) of the 11 benchmarks
SIZES = {"caltech101": (100, 2465), "dtd": (47, 1692), "eurosat": (10, 8100), "fgvc_aircraft": (100, 3333),
         "food101": (101, 30300), "imagenet": (1000, 50000), "oxford_flowers": (102, 2463),
         "oxford_pets": (37, 3669), "stanford_cars": (196, 8041), "sun397": (397, 19850), "ucf101": (101, 3783)}
DEFAULT_METHODS = "cmm,zero_shot,tip_adapter"
RESULTS = Path(__file__).parent / "results" / "protocol_sweep.json"


def cell(args: argparse.Namespace, jobs: int) -> dict:
    """The sweep in this process (jobs 1) or in ``jobs`` workers; seconds per dataset and in all."""
    from stages.fit.run import fit_runs
    from stages.fit.synthetic import make_clip_like

    rows, total = [], 0.0
    with tempfile.TemporaryDirectory() as runs_dir:
        for name in args.datasets:
            classes, test = SIZES[name]
            source = make_clip_like(n_classes=classes, dim=512, train_per_class=max(args.shots), val_per_class=4,
                                    test_per_class=max(1, test // classes), seed=0, dataset=name)
            started = time.perf_counter()
            fit_runs(source, methods=args.methods, shots=args.shots, seeds=args.seeds, runs_dir=Path(runs_dir),
                     jobs=jobs, progress=lambda _: None)
            seconds = time.perf_counter() - started
            total += seconds
            rows.append({"dataset": name, "classes": classes,
                         "fits": len(args.shots) * len(args.seeds) * len(args.methods), "seconds": round(seconds, 1)})
            print(f"{name:15s} {classes:5d} classes  {rows[-1]['fits']} fits  {seconds:7.1f} s", file=sys.stderr,
                  flush=True)
    return {"rows": rows, "total_minutes": round(total / 60, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(SIZES))
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated methods of pipeline fit")
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--jobs", default="1,2", help="comma-separated: 1 = in process, N = N worker processes")
    parser.add_argument("--conditions", default="quiet,loaded", help="quiet and/or loaded (one competing process)")
    parser.add_argument("--out", default=RESULTS.name, help=f"result file name under benchmarks/results (default {RESULTS.name})")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell, print its JSON
    args = parser.parse_args()
    passed = ["--datasets", args.datasets, "--methods", args.methods, "--shots", args.shots, "--seeds", args.seeds]
    args.datasets, args.methods = args.datasets.split(","), args.methods.split(",")
    args.shots, args.seeds = [int(s) for s in args.shots.split(",")], [int(s) for s in args.seeds.split(",")]
    if args.cell:
        print(json.dumps(cell(args, int(args.cell))))
        return
    def show(result: dict) -> None:
        fits = sum(r["fits"] for r in result["rows"])
        print(f"   {result['condition']} jobs {result['jobs']}: {result['total_minutes']:.2f} min for {fits} fits "
              f"({', '.join(args.methods)})", flush=True)

    cells = run_cells(__file__, args.conditions, args.jobs, passed, announce=True, on_cell=show)
    ratios = {}
    for jobs in sorted({c["jobs"] for c in cells}):
        minutes = {c["condition"]: c["total_minutes"] for c in cells if c["jobs"] == jobs}
        if {"quiet", "loaded"} <= set(minutes):
            ratios[jobs] = {**minutes, "ratio": round(minutes["loaded"] / minutes["quiet"], 2)}
    print("\n| condition | jobs | minutes |\n|---|---:|---:|")
    for c in cells:
        print(f"| {c['condition']} | {c['jobs']} | {c['total_minutes']:.2f} |")
    for jobs, r in ratios.items():
        print(f"jobs {jobs}: loaded / quiet = {r['ratio']:.2f}")
    out = RESULTS.parent / Path(args.out).name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "methods": args.methods,
                               "cells": cells, "loaded_over_quiet": ratios}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
