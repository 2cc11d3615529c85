"""Shared by the benchmark scripts: the machine's description, generated images, and result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TINY_MODEL = ROOT / "tests" / "assets" / "tiny-test-clip.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: nothing to download


def machine() -> dict[str, object]:
    """Cores, CPU model, load, GPU (if any) and library versions: what a figure depends on."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "git": _git_head(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_images(folder: Path, n_images: int, n_classes: int = 10, size: tuple[int, int] = (500, 375)) -> Path:
    """``folder/<class>/<i>.jpg``: ``n_images`` photo-sized JPEGs (smooth colour fields plus noise); reused."""
    marker = folder / f".made-{n_images}-{n_classes}-{size[0]}x{size[1]}"
    if marker.exists():
        return folder
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
    for i in range(n_images):
        cls = folder / f"class_{i % n_classes:02d}"
        cls.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0.005, 0.05, 3)
        base = np.stack([np.sin(a * xx + i), np.cos(b * yy), np.sin(c * (xx + yy))], axis=-1) * 100 + 128
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(cls / f"{i:06d}.jpg", quality=90)
    marker.touch()
    return folder


def write_result(name: str, result: dict[str, object]) -> Path:
    """Save ``result`` (with the machine and the command line) as benchmarks/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def write_timed(path: str | Path, out: dict[str, object], started: float) -> None:
    """Save ``out`` as JSON at ``path`` with its minutes since ``started`` (perf_counter), and say so."""
    out["minutes"] = (time.perf_counter() - started) / 60
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path} ({out['minutes']:.1f} min)")


def table(rows: list[tuple[str, object]]) -> str:
    """A two-column text table."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


COMPETITOR = "while True:\n    pass\n"
CONDITIONS = ("quiet", "loaded")


@contextmanager
def condition(name: str) -> Iterator[None]:
    """``quiet``: nothing added; ``loaded``: one competing CPU-bound process (a busy loop) that is started
    before the block and killed after it, as a user's other job on a laptop or shared server would be."""
    if name not in CONDITIONS:
        raise SystemExit(f"unknown condition {name!r}; choose from {', '.join(CONDITIONS)}")
    hog = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if name == "loaded" else None
    try:
        if hog is not None:
            time.sleep(0.5)  # let it reach full speed
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def run_cells(script: str, conditions: str, jobs: str, passed: list[str], announce: bool = False,
              on_cell: Callable[[dict], None] | None = None) -> list[dict]:
    """Run ``script --cell J *passed`` in a fresh process for every condition x jobs; the JSON each prints last.

    The cell's own process is what a user's ``pipeline fit`` is: it pays its imports, and under ``loaded`` it
    shares the cores with one busy-loop process started and stopped around it (``condition``).
    """
    cells = []
    for name in conditions.split(","):
        for count in (int(j) for j in jobs.split(",")):
            if announce:
                print(f"-- {name}, jobs {count}", flush=True)
            with condition(name):
                done = subprocess.run([sys.executable, script, "--cell", str(count), *passed], stdout=subprocess.PIPE,
                                      stderr=None if announce else subprocess.PIPE, text=True, check=True)
            cells.append({"condition": name, "jobs": count, **json.loads(done.stdout.strip().splitlines()[-1])})
            if on_cell is not None:
                on_cell(cells[-1])
    return cells
