"""Fit cost of CMM and the baselines on the same cached-like features, each including its val search.

    .venv/bin/python benchmarks/fit_cost.py                       # 10, 100, 1000 classes x 16 shots, D = 512
    .venv/bin/python benchmarks/fit_cost.py --classes 100 --methods cmm,zero_shot

Features come from ``make_clip_like`` (real CLIP caches cost the same: only shapes matter); the val split has
min(16, 4) = 4 shots per class as in CoOp. Writes benchmarks/results/fit_cost.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import machine  # benchmarks/common.py
from stages.fit.methods import make_estimator
from stages.fit.synthetic import make_clip_like

RESULTS = Path(__file__).parent / "results" / "fit_cost.json"


def time_fit(method: str, source, shots: int) -> tuple[float, float]:
    """(seconds of fit including the val search, test top-1) for one method."""
    X, y = source.image["train"]
    Xv, yv = source.image["val"]
    Xt, yt = source.image["test"]
    estimator = make_estimator(method, source.text["coop"], source.logit_scale, random_state=1)
    started = time.perf_counter()
    estimator.fit(X, y, Xv, yv)
    seconds = time.perf_counter() - started
    return seconds, float(estimator.score(Xt, yt) * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="10,100,1000")
    parser.add_argument("--methods", default="cmm,zero_shot,linear_probe,tip_adapter,tip_adapter_f")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    methods = args.methods.split(",")
    rows = []
    for n_classes in (int(c) for c in args.classes.split(",")):
        source = make_clip_like(n_classes=n_classes, dim=args.dim, train_per_class=args.shots,
                                val_per_class=min(args.shots, 4), test_per_class=5, seed=0)
        make_estimator("cmm", source.text["coop"], 100.0, random_state=1).fit(  # warm-up: imports, allocator
            source.image["train"][0][:8], source.image["train"][1][:8])
        for method in methods:
            seconds, top1 = time_fit(method, source, args.shots)
            rows.append({"classes": n_classes, "shots": args.shots, "dim": args.dim, "method": method,
                         "seconds": round(seconds, 3), "test_top1_synthetic": round(top1, 2)})
            print(f"{n_classes:5d} classes  {method:14s} {seconds:8.2f} s", flush=True)
    cmm = {r["classes"]: r["seconds"] for r in rows if r["method"] == "cmm"}
    for r in rows:
        if r["classes"] in cmm:
            r["ratio_to_cmm"] = round(r["seconds"] / cmm[r["classes"]], 2)
    print("\n| classes | method | seconds | x CMM |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['classes']} | {r['method']} | {r['seconds']:.2f} | {r.get('ratio_to_cmm', float('nan')):.1f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
