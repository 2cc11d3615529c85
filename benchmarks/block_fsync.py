"""The cost of fsyncing each committed block of a cache write (issue 15, durability).

A block's rows are fsynced before its done flag is set, so that after a power loss the resume logic never
trusts a flag whose rows did not reach the disk. This writes the same cache (``--blocks`` blocks of
``--rows`` x ``--dim`` float16 rows, like ViT-B/32 features at the default batch size) with and without the
per-block fsync, alternating, and reports the median extra milliseconds per block next to the time one block
takes to encode at the CPU rate measured by ``extract_efficiency`` and at an assumed GPU rate.

    .venv/bin/python benchmarks/block_fsync.py [--blocks 64] [--rows 256] [--dim 512] [--rounds 5]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from common import table, write_result


def write_cache(path: Path, blocks: int, rows: int, dim: int, durable: bool) -> float:
    """Seconds to write and commit a cache of ``blocks`` blocks, fsyncing each block or not."""
    from cache import CacheWriter

    data = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    start = time.perf_counter()
    with CacheWriter(path, {"bench": "1"}) as writer:
        array = writer.array("image/train/features", (blocks * rows, dim), "float16", block_rows=rows)
        array.durable = durable
        for index, _ in array.blocks():
            array.write(index, data)
        writer.commit()
    return time.perf_counter() - start


@click.command()
@click.option("--blocks", default=64, show_default=True)
@click.option("--rows", default=256, show_default=True)
@click.option("--dim", default=512, show_default=True)
@click.option("--rounds", default=5, show_default=True)
def main(blocks: int, rows: int, dim: int, rounds: int) -> None:
    timings: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as folder:  # the project's disk, not a tmpfs
        for round_ in range(rounds):
            for durable in (False, True):
                path = Path(folder) / f"r{round_}_{int(durable)}.h5"
                timings[durable].append(write_cache(path, blocks, rows, dim, durable))
                path.unlink()
    extra_ms = statistics.median((d - p) / blocks * 1000 for d, p in zip(timings[True], timings[False]))
    cpu_block_s = rows / 13.0  # ViT-B/32 on this machine's 2 CPU cores: ~13 img/s (extract_efficiency.json)
    gpu_block_s = rows / 2000.0  # ASSUMED ~2000 img/s for a fast GPU in fp16 (not measured here)
    result = {
        "blocks": blocks, "rows": rows, "dim": dim, "rounds": rounds,
        "seconds_without_fsync": timings[False], "seconds_with_fsync": timings[True],
        "extra_ms_per_block": round(extra_ms, 3),
        "share_of_cpu_block_time": round(extra_ms / 1000 / cpu_block_s, 6),
        "share_of_gpu_block_time": round(extra_ms / 1000 / gpu_block_s, 6),
    }
    print(table([("median extra per block (ms)", f"{extra_ms:.2f}"),
                 ("share of a CPU block's encode time", f"{result['share_of_cpu_block_time']:.2%}"),
                 ("share of a GPU block's encode time", f"{result['share_of_gpu_block_time']:.2%}")]))
    print(f"wrote {write_result('block_fsync', result)}")


if __name__ == "__main__":
    main()
