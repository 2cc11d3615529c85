"""Every method on the calibrated regimes, through ``fit_runs``: test top-1 per shot count (mean ± std over seeds),
and CMM's paired differences against every other method over the (regime, shots, seed) triples.

    .venv/bin/python benchmarks/method_quality.py            # everything below (BENCHMARKS.md: its time)
    .venv/bin/python benchmarks/method_quality.py --quick    # seed 1, shots 1, 4, 16, without imagenet_like
    .venv/bin/python benchmarks/method_quality.py --regimes weak --runs-dir runs_mq   # in pieces: records kept,
    .venv/bin/python benchmarks/method_quality.py --runs-dir runs_mq                  # then the rest and the tables

Regimes: the calibrated ones of ``stages/fit/regimes.py`` (Pets-25-like, Caltech-64-like, ImageNet-1000-like, and
Pets-25 with its val split harder than test; their figures are printed first) and the weak-zero-shot generator
``make_clip_like`` (50 classes, D = 256) used by the tests. Methods: every one of ``stages.fit.methods.METHODS``
(so a method added there appears here) and CMM's previous selection (``cmm+val_search``). ``fit_runs`` does what
``pipeline fit`` does: CoOp's sampling (val = min(K, 4) per class), every choice on val, test read only to
score; with ``--runs-dir`` the records stay there and a rerun fits only what is missing (so the full run can be
done in pieces, each reported with its own time). imagenet_like runs at ``--imagenet-shots`` (1, 2: what the real ImageNet figures cover; 1000 classes at
16 shots would take most methods minutes per fit). The paired table is the report's own
(``stages/report/paired.py``), with the regimes as its datasets. Writes benchmarks/results/method_quality.json
and prints Markdown tables (the ones in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, write_timed  # benchmarks/common.py
from stages.fit.methods import METHODS
from stages.fit.regimes import REAL_FIGURES, REAL_VAL_ZERO_SHOT, REGIMES, geometry, make_regime
from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like
from stages.report.groups import group_records
from stages.report.paired import paired_table
from stages.report.records import load_records
from stages.report.render import to_json, to_markdown

RESULTS = Path(__file__).parent / "results" / "method_quality.json"
LABELS = (*METHODS, "cmm+val_search")


def source_for(regime: str):
    """The features of one regime (data seed 0)."""
    if regime == "weak":
        return make_clip_like(n_classes=50, dim=256, train_per_class=20, val_per_class=8, test_per_class=30,
                              seed=0, dataset="weak")
    return make_regime(regime, seed=0)


def run_regime(regime: str, labels: list[str], shots: list[int], seeds: list[int], runs_dir: Path) -> dict:
    """{label: {shots: [test top-1 per seed]}} and seconds per label; the records stay in ``runs_dir``."""
    source = source_for(regime)
    scores: dict[str, dict[int, list[float]]] = {}
    seconds: dict[str, float] = {}
    for label in labels:
        method, _, ablation = label.partition("+")
        started = time.perf_counter()
        paths = fit_runs(source, methods=[method], shots=shots, seeds=seeds, runs_dir=runs_dir,
                         ablations=[{ablation: True}] if ablation else None, progress=lambda _: None)
        seconds[label] = time.perf_counter() - started
        for path in paths:
            record = json.loads(path.read_text())
            scores.setdefault(label, {}).setdefault(record["shots"], []).append(record["metrics"]["test_top1"])
        print(f"  {regime:14s} {label:18s} " + " ".join(
            f"{np.mean(scores[label][k]):6.2f}" for k in shots) + f"   ({seconds[label]:.0f} s)", flush=True)
    return {"scores": scores, "seconds": seconds}


def markdown(regime: str, result: dict, shots: list[int]) -> str:
    """One table: methods x shots, mean ± std over seeds, and the average over shot counts."""
    lines = [f"{regime}:", "", "| method | " + " | ".join(f"{k} shot{'s' if k > 1 else ''}" for k in shots)
             + " | average |", "|---|" + "---:|" * (len(shots) + 1)]
    for label, by_shots in result["scores"].items():
        cells = [f"{np.mean(by_shots[k]):.2f} ± {np.std(by_shots[k]):.2f}" for k in shots]
        average = np.mean([np.mean(by_shots[k]) for k in shots])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {average:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", default=",".join([*REGIMES, "weak"]))
    parser.add_argument("--methods", default=",".join(LABELS), help="method labels (default: %(default)s)")
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--imagenet-shots", default="1,2", help="shots of imagenet_like (default: %(default)s)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--quick", action="store_true", help="seed 1, shots 1,4,16, without imagenet_like")
    parser.add_argument("--runs-dir", help="keep the run records here (default: a temporary folder)")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON (default: %(default)s)")
    args = parser.parse_args()
    regimes = args.regimes.split(",")
    if args.quick:
        args.seeds, args.shots = "1", "1,4,16"
        regimes = [r for r in regimes if r != "imagenet_like"]
    seeds = [int(s) for s in args.seeds.split(",")]
    labels = args.methods.split(",")
    out: dict = {"machine": machine(), "seeds": seeds, "methods": labels, "regimes": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(args.runs_dir or tmp)
        for regime in regimes:
            shots = [int(s) for s in (args.imagenet_shots if regime == "imagenet_like" else args.shots).split(",")]
            if regime in REGIMES:
                source = make_regime(regime, seed=0)
                figures = {split: geometry(source, split) for split in ("test", "val")}
                print(f"{regime} geometry (synthetic / real):")
                for name, value in figures["test"].items():
                    print(f"  {name:20s} {value:8.3f}  {REAL_FIGURES[regime][name]:8.3f}")
                real_val = REAL_VAL_ZERO_SHOT.get(regime)
                print(f"  {'val zero_shot_top1':20s} {figures['val']['zero_shot_top1']:8.3f}  "
                      + (f"{real_val:8.3f}" if real_val is not None else "       —"))
                out["regimes"].setdefault(regime, {})["geometry"] = figures
            result = run_regime(regime, labels, shots, seeds, runs_dir)
            out["regimes"].setdefault(regime, {}).update(result, shots=shots)
            print(markdown(regime, result, shots) + "\n", flush=True)
        records, _ = load_records(runs_dir, print)
    tables = [t for family in group_records(records) if (t := paired_table(family)) is not None]
    for table in tables:
        print(to_markdown(table))
    out["paired"] = [json.loads(to_json(t)) for t in tables]
    write_timed(args.out, out, started)


if __name__ == "__main__":
    main()
