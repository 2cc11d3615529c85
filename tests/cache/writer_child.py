"""A child process that writes a known cache slowly, so tests can kill it mid-way.

Usage: python writer_child.py PATH [DELAY_SECONDS]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from cache import CacheWriter

KEY = {"model": "toy", "weights": "none", "precision": "fp32"}
N_ROWS, DIM, BLOCK = 200, 16, 8


def expected_features() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N_ROWS, DIM)).astype(np.float32)


def write(path: str, delay: float) -> None:
    data = expected_features()
    with CacheWriter(path, KEY, attrs={"dataset": "toy"}, wait=30) as writer:
        writer.put("classes", ["a", "b"])
        writer.put("image/train/labels", np.arange(N_ROWS) % 2)
        writer.put("image/train/positions", np.arange(N_ROWS))
        array = writer.array("image/train/features", (N_ROWS, DIM), "float32", block_rows=BLOCK)
        for index, rows in array.blocks():
            array.write(index, data[rows])
            time.sleep(delay)
        writer.commit()


if __name__ == "__main__":
    write(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
