"""torchrun's environment read by pipeline.distributed: rank and world, backend, workers per rank."""

from __future__ import annotations

import os

import pytest

from pipeline.distributed import _backend, _workers_per_rank, world


def test_world_comes_from_torchrun_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world() == (0, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert world() == (3, 8)


@pytest.mark.parametrize(("device", "cuda", "expected"), [
    ("auto", True, "nccl"), ("cuda", True, "nccl"), ("cuda:1", True, "nccl"),
    ("cpu", True, "gloo"), ("auto", False, "gloo"), ("cuda", False, "gloo"),
])
def test_backend_is_nccl_only_for_gpu_ranks(device, cuda, expected):
    assert _backend(device, cuda) == expected


def test_workers_share_the_node_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert _workers_per_rank(4) == 7  # (32 - 4 rank processes) / 4
    assert _workers_per_rank(1) == 8  # capped
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _workers_per_rank(2) == 1  # never fewer than one
