"""Running stage one under ``torchrun``: one shard of blocks per rank, then rank 0 merges the parts.

Started as ``torchrun --nproc_per_node=N -m pipeline extract ...`` the environment carries RANK and
WORLD_SIZE; without them extraction runs in this process alone. See docs/scale.md for multi-node use.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Callable, Sequence

from stages.extract.run import ExtractRequest, ExtractResult, check_datasets, extract

# Ranks meet at a barrier before the merge. After a crash the ranks resume unequal shares, so one may
# wait for another for hours; torchrun tears the group down at once if a rank dies, so a long wait is safe.
BARRIER_TIMEOUT = timedelta(hours=12)


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not under torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run_extract(requests: Sequence[ExtractRequest], progress: Callable[[str], None] = print) -> list[ExtractResult]:
    """Extract each of ``requests`` in turn, here or as this rank's shard of a torchrun job (merged by rank 0).

    Requests for the same model build it once.
    """
    if len(requests) > 1:
        check_datasets(requests)
    rank, size = world()
    models: dict = {}
    if size == 1:
        return [extract(request, progress, models) for request in requests]
    import torch
    import torch.distributed as dist

    backend = _backend(requests[0].device, torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    for request in requests:
        if backend == "nccl":
            request.device = f"cuda:{local_rank}"
        if request.workers is None:
            request.workers = _workers_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", size)))
        request.shard = (rank, size)
    dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
    try:
        return [extract(request, lambda message: progress(f"[rank {rank}/{size}] {message}"), models)
                for request in requests]
    finally:
        dist.destroy_process_group()


def _backend(device: str, cuda_available: bool) -> str:
    """nccl when this rank runs on a GPU, gloo on CPU."""
    on_gpu = device == "auto" or device.startswith("cuda")
    return "nccl" if cuda_available and on_gpu else "gloo"


def _workers_per_rank(ranks_on_node: int) -> int:
    """DataLoader workers per rank: the node's cores shared by its ranks (at least 1, at most 8)."""
    cores = os.cpu_count() or 2
    return min(8, max(1, (cores - ranks_on_node) // ranks_on_node))
