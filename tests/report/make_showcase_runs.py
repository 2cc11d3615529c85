"""Not a test: the run records of the report showcase (issue 21's closing note), through the real fit code.

DTD-like synthetic CLIP features (stages/fit/synthetic.py: 47 classes, 20/4/36 train/val/test images per class,
zero-shot about 40 % with one template, 58 % with seven; DTD with ViT-B/32 is about 44 %), then 7 methods, 10 CMM
ablations and 3 baseline variants (20 run labels) at shots 1-16, seeds 1-3 (300 records, about 18 minutes on
2 busy cores). Then: ``pipeline report --runs-dir RUNS_DIR --out REPORT_DIR``.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tests.report.make_showcase_runs RUNS_DIR
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like

SWEEPS = [
    dict(methods=["zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "gda", "lp_pp", "cmm"]),
    *[dict(methods=["cmm"], ablations=[{name: True for name in ablation.split("+")}])
      for ablation in ("no_triplet", "frozen_prototypes", "no_fusion", "no_prior", "bias", "val_search",
                       "frozen_prototypes+no_triplet", "no_fusion+no_triplet")],
    dict(methods=["cmm", "linear_probe"], template_set="imagenet7"),
    dict(methods=["cmm", "tip_adapter", "tip_adapter_f"], train_views="aug"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    source = make_clip_like(n_classes=47, dim=512, train_per_class=20, val_per_class=4, test_per_class=36,
                            n_templates=7, aug_views=4, semantic=0.6, image_only=0.7, seed=7)
    text = source.text["coop"]
    source = replace(source, dataset="dtd", model="ViT-B-32", weights="dtd-like-synthetic",
                     text={"coop": text[:, :1], "imagenet7": text}, cache_key="dtd-like-synthetic-v2",
                     classes=[f"texture {c}" for c in range(47)])
    for sweep in SWEEPS:
        started = time.monotonic()
        fit_runs(source, shots=[int(k) for k in args.shots.split(",")], seeds=[int(s) for s in args.seeds.split(",")],
                 runs_dir=args.runs, jobs=2, progress=lambda _: None, **sweep)
        print(sweep, f"{time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
