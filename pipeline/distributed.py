"""Running stage one under ``torchrun``: one shard of blocks per rank, then rank 0 merges the parts.

Started as ``torchrun --nproc_per_node=N -m pipeline extract ...`` the environment carries RANK and
WORLD_SIZE; without them extraction runs in this process alone.
"""

from __future__ import annotations

import os
from typing import Callable

from stages.extract.run import ExtractRequest, ExtractResult, extract


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not under torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run_extract(request: ExtractRequest, progress: Callable[[str], None] = print) -> ExtractResult:
    rank, size = world()
    if size == 1:
        return extract(request, progress)
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() and request.device in ("auto", "cuda") else "gloo"
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        request.device = f"cuda:{local}"
    dist.init_process_group(backend)
    try:
        request.shard = (rank, size)
        result = extract(request, progress if rank == 0 else (lambda _: None))
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()
