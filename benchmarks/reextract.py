"""Wall time of ``pipeline extract`` when the cache is already complete (issue 21: 12 s with nothing to do).

Builds a small ImageFolder tree and a ViT-B-16 checkpoint file of random weights (the size of the real one, so
loading it costs what loading openai's does), extracts once, then times reruns of the same command, alternating
between project trees (``--tree``: this one, and e.g. an export of an older commit), and prints the median wall
and CPU seconds of each (saved as benchmarks/results/reextract.json). Run from anywhere:

    .venv/bin/python benchmarks/reextract.py --tree . --tree /tmp/before --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, make_images, write_result  # noqa: E402


def _timed(command: list[str], tree: Path, cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, its last output line) of one run of ``command`` from ``tree``."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(tree.resolve()))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, (done.stdout + done.stderr).strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, help="project tree to run (repeatable; default: this)")
    parser.add_argument("--runs", type=int, default=5, help="timed reruns per tree")
    parser.add_argument("--model", default="ViT-B-16")
    args = parser.parse_args()
    trees = args.tree or [ROOT]
    work = Path(tempfile.mkdtemp(prefix="reextract-"))
    images = make_images(work / "images", n_images=18, n_classes=3, size=(96, 96))
    import open_clip
    import torch

    checkpoint = work / "weights.pt"
    torch.save(open_clip.create_model(args.model, pretrained=None).state_dict(), checkpoint)
    command = [sys.executable, "-m", "pipeline", "extract", "--dataset", "folder", "--data-root", str(images),
               "--model", args.model, "--pretrained", str(checkpoint), "--weights-tag", "openai",
               "--cache-dir", str(work / "cache"), "--workers", "0"]
    _timed(command, trees[0], work)  # the first extraction, not timed
    figures: dict[str, dict[str, list[float]]] = {str(t.resolve()): {"wall": [], "cpu": []} for t in trees}
    for _ in range(args.runs):
        for tree in trees:  # alternating, so that load changes hit every tree alike
            wall, cpu, last = _timed(command, tree, work)
            assert "nothing to encode" in last, last
            figures[str(tree.resolve())]["wall"].append(wall)
            figures[str(tree.resolve())]["cpu"].append(cpu)
    result = {"model": args.model, "checkpoint_mb": round(checkpoint.stat().st_size / 2**20),
              "runs": args.runs, "trees": {tree: {k: round(statistics.median(v), 2) for k, v in f.items()}
                                           for tree, f in figures.items()}}
    for tree, f in result["trees"].items():
        print(f"{tree}: median wall {f['wall']:.2f} s, CPU {f['cpu']:.2f} s over {args.runs} reruns")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}; written to {write_result('reextract', result)}")


if __name__ == "__main__":
    main()
