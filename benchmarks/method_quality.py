"""Every method on the calibrated regimes, through ``fit_runs``: test top-1, mean and std over seeds.

    .venv/bin/python benchmarks/method_quality.py                                   # everything below
    .venv/bin/python benchmarks/method_quality.py --regimes imagenet_like --shots 1,2 \
        --out benchmarks/results/method_quality_imagenet.json                      # ImageNet-like, 1-2 shots

Regimes: the three of ``stages/fit/regimes.py`` calibrated to real CLIP ViT-B/32 geometry (Pets-25-like,
Caltech-64-like, ImageNet-1000-like; their figures are printed first) and the weak-zero-shot generator
``make_clip_like`` (50 classes, D = 256) used by the tests. ``fit_runs`` does what ``pipeline fit`` does:
CoOp's sampling (val = min(K, 4) per class), every choice on val, test read only to score. Writes
benchmarks/results/method_quality.json and prints Markdown tables (the ones in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine  # benchmarks/common.py
from stages.fit.regimes import REAL_FIGURES, REGIMES, geometry, make_regime
from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like

RESULTS = Path(__file__).parent / "results" / "method_quality.json"
METHODS = "cmm,cmm+val_search,zero_shot,linear_probe,tip_adapter,tip_adapter_f,gda,lp_pp"


def source_for(regime: str):
    """The features of one regime (data seed 0)."""
    if regime == "weak":
        return make_clip_like(n_classes=50, dim=256, train_per_class=20, val_per_class=8, test_per_class=30,
                              seed=0, dataset="weak")
    return make_regime(regime, seed=0)


def run_regime(regime: str, methods: list[str], shots: list[int], seeds: list[int], runs_dir: Path) -> dict:
    """{label: {shots: [test top-1 per seed]}} and seconds per label."""
    source = source_for(regime)
    scores: dict[str, dict[int, list[float]]] = {}
    seconds: dict[str, float] = {}
    for label in methods:
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
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON (default: %(default)s)")
    args = parser.parse_args()
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    out: dict = {"machine": machine(), "shots": shots, "seeds": seeds, "regimes": {}}
    for regime in args.regimes.split(","):
        if regime in REGIMES:
            figures = geometry(make_regime(regime, seed=0))
            print(f"{regime} geometry (synthetic / real):")
            for name, value in figures.items():
                print(f"  {name:20s} {value:8.3f}  {REAL_FIGURES[regime][name]:8.3f}")
            out["regimes"].setdefault(regime, {})["geometry"] = figures
        with tempfile.TemporaryDirectory() as runs_dir:
            result = run_regime(regime, methods, shots, seeds, Path(runs_dir))
        out["regimes"].setdefault(regime, {}).update(result)
        print(markdown(regime, result, shots) + "\n", flush=True)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
