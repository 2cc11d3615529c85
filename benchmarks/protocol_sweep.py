"""The whole few-shot protocol from cache: 11 dataset-sized feature sets x shots 1-16 x seeds 1-3 x CMM.

    .venv/bin/python benchmarks/protocol_sweep.py            # everything, as pipeline fit runs it
    .venv/bin/python benchmarks/protocol_sweep.py --datasets dtd,eurosat --shots 16

Each set has the class count and test size of the real benchmark (protocol.md) and D = 512 features from
``make_clip_like``; ``fit_runs`` does exactly what ``pipeline fit --method cmm`` does (sampling, val search,
test scoring, gap measures, records). Writes benchmarks/results/protocol_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import machine  # benchmarks/common.py
from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like

# (classes, test images) of the 11 benchmarks
SIZES = {"caltech101": (100, 2465), "dtd": (47, 1692), "eurosat": (10, 8100), "fgvc_aircraft": (100, 3333),
         "food101": (101, 30300), "imagenet": (1000, 50000), "oxford_flowers": (102, 2463),
         "oxford_pets": (37, 3669), "stanford_cars": (196, 8041), "sun397": (397, 19850), "ucf101": (101, 3783)}
RESULTS = Path(__file__).parent / "results" / "protocol_sweep.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(SIZES))
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, total = [], 0.0
    with tempfile.TemporaryDirectory() as runs_dir:
        for name in args.datasets.split(","):
            classes, test = SIZES[name]
            source = make_clip_like(n_classes=classes, dim=512, train_per_class=max(shots), val_per_class=4,
                                    test_per_class=max(1, test // classes), seed=0, dataset=name)
            started = time.perf_counter()
            fit_runs(source, methods=["cmm"], shots=shots, seeds=seeds, runs_dir=Path(runs_dir),
                     progress=lambda _: None)
            seconds = time.perf_counter() - started
            total += seconds
            rows.append({"dataset": name, "classes": classes, "runs": len(shots) * len(seeds),
                         "seconds": round(seconds, 1)})
            print(f"{name:15s} {classes:5d} classes  {len(shots) * len(seeds)} runs  {seconds:7.1f} s", flush=True)
    print(f"\ntotal: {total / 60:.1f} min for {sum(r['runs'] for r in rows)} CMM fits")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "rows": rows, "total_minutes": round(total / 60, 2)},
                                  indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
