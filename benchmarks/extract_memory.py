"""Extraction memory: peak RSS of `pipeline extract` at 1x and 10x the number of images, fresh process each.

Features go to disk block by block, so memory must not grow with the dataset: only the listing (paths and
labels, tens of bytes per image) does. Each extraction runs as a child process; ``os.wait4`` returns its
resource usage (``ru_maxrss``: the largest peak of it and its DataLoader workers, which it waits for).

    .venv/bin/python benchmarks/extract_memory.py [--images 400] [--model tests/assets/tiny-test-clip.json]

The default model is the tiny test config: the question is how memory scales with the dataset, which the
model does not change, and it keeps the 10x run short. ``--model ViT-B-32`` measures the real one (slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from common import TINY_MODEL, make_images, table, write_result

TOLERANCE = 0.05  # the 10x peak may exceed the 1x peak by at most 5%


def peak_rss_mib(command: list[str]) -> tuple[float, int]:
    """Run ``command``; its peak resident set size in MiB (Linux reports KiB) and its exit status."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"extraction failed: {' '.join(command)}\n{child.stderr.read()}")
    return usage.ru_maxrss / 1024, status


@click.command()
@click.option("--images", default=400, show_default=True, help="Images at 1x (10x is ten times as many).")
@click.option("--model", default=str(TINY_MODEL), show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--work", default="/tmp/cmm-bench-memory", show_default=True, type=click.Path(path_type=Path))
def main(images: int, model: str, batch_size: int, work: Path) -> None:
    peaks: dict[int, float] = {}
    for n in (images, 10 * images):
        folder = make_images(work / f"images-{n}", n, size=(160, 120))
        command = [sys.executable, "-m", "pipeline", "-q", "extract", "--dataset", "folder", "--data-root",
                   str(folder), "--model", model, "--pretrained", "none", "--cache-dir", str(work / f"cache-{n}"),
                   "--batch-size", str(batch_size), "--device", "cpu", "--force"]
        peaks[n], _ = peak_rss_mib(command)
        print(f"{n} images: peak RSS {peaks[n]:.1f} MiB", flush=True)
    small, large = peaks[images], peaks[10 * images]
    figures = {
        "model": model, "batch_size": batch_size, "images_1x": images, "images_10x": 10 * images,
        "peak_rss_mib_1x": round(small, 1), "peak_rss_mib_10x": round(large, 1),
        "growth_mib": round(large - small, 1), "growth_ratio": round(large / small, 3),
        "target": f"10x peak <= {1 + TOLERANCE:.2f} x 1x peak", "target_met": large <= (1 + TOLERANCE) * small,
    }
    print(table([(k, v) for k, v in figures.items()]))
    print(f"written to {write_result('extract_memory', figures)}")


if __name__ == "__main__":
    main()
