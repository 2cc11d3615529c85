"""Two real gloo ranks under torchrun build the same cache as one process; a killed rank resumes.

The single-process reference runs on two torch threads while torchrun's ranks run on one (OMP_NUM_THREADS=1),
as a user's single run and a torchrun of the same command would; every array of the two caches, image and
text features included, is compared bit for bit. (The text pass runs on one thread in both, see
``stages.extract.encode.encode_texts``: its products are summed in a thread-dependent order otherwise.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from cache import partial_path
from cache.merge import part_path
from stages.extract.run import extract
from tests.conftest import TINY_MODEL_CONFIG
from tests.extract.test_extract import request_for

ROOT = Path(__file__).resolve().parents[2]
BATCH = 4


def torchrun(split_file: Path, cache_dir: Path, *extra: str, module: str = "pipeline",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m <module> extract ...`` on the toy dataset, on CPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", module, "extract", "--dataset", "folder", "--data-root", str(split_file.parent / "images"),
               "--split-file", str(split_file), "--model", str(TINY_MODEL_CONFIG), "--pretrained", "none",
               "--cache-dir", str(cache_dir), "--batch-size", str(BATCH), "--device", "cpu", *extra]
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(command, env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def reference(split_file: Path, cache_dir: Path, threads: int | None = None, **overrides) -> Path:
    """The same extraction in this process, on ``threads`` torch threads (default: as this process is set)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return extract(request_for(split_file, cache_dir, batch_size=BATCH, **overrides),
                       progress=lambda _: None).path
    finally:
        torch.set_num_threads(before)


def datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by name (strings decoded)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        def take(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj.asstr()[()] if obj.dtype.kind == "O" else obj[()]
        f.visititems(take)
        out["<key>"] = np.array(sorted((k, str(v)) for k, v in f.attrs.items() if k.startswith("key")))
    return out


def assert_same_cache(merged: Path, single: Path) -> None:
    a, b = datasets(merged), datasets(single)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_two_gloo_ranks_build_the_single_process_cache(coop_dataset, tmp_path):
    done = torchrun(coop_dataset, tmp_path / "dist", "--aug-views", "1", "--templates", "coop,imagenet7")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[rank 1/2]" in done.stdout and "merged 2 parts; 51 image views encoded in all" in done.stdout
    single = reference(coop_dataset, tmp_path / "single", threads=2, aug_views=1,
                       template_sets=("coop", "imagenet7"))
    merged = tmp_path / "dist" / single.relative_to(tmp_path / "single")
    assert merged.exists()
    assert not list(merged.parent.glob("*.part*.partial"))  # the parts are gone once merged
    assert_same_cache(merged, single)
    assert datasets(merged)["image/test/features"].std() > 0  # real features, not zeros


def missing_rows(part: Path, rank: int, world: int) -> int:
    """Rows of the image blocks that ``rank`` owns and has not finished (features or bad flags) in ``part``."""
    rows = 0
    with h5py.File(part, "r") as f:
        for split in f["image"]:
            features = f[f"image/{split}/features"]
            flags = f[f"image/{split}/features__done"][()] & f[f"image/{split}/bad__done"][()]
            block_rows, n = int(features.attrs["block_rows"]), features.shape[0]
            for block in np.nonzero(flags == 0)[0]:
                if block % world == rank:
                    rows += min(n, (block + 1) * block_rows) - block * block_rows
    return rows


def test_a_killed_rank_leaves_a_resumable_part(coop_dataset, tmp_path):
    cache_dir = tmp_path / "dist"
    died = torchrun(coop_dataset, cache_dir, "--workers", "0", module="tests.extract.dying_rank",
                    env={"DIE_RANK": "1", "DIE_AFTER": "2"})
    assert died.returncode != 0
    single = reference(coop_dataset, tmp_path / "single")
    final = cache_dir / single.relative_to(tmp_path / "single")
    assert not final.exists()  # no cache is published while a part is missing
    part = partial_path(part_path(final, 1, 2))
    assert part.exists(), died.stdout + died.stderr
    left = missing_rows(part, 1, 2)
    assert left > 0  # rank 1 died half way: some of its blocks written, some not
    with h5py.File(part, "r") as f:
        written = sum(int(f[f"image/{s}/features__done"][()].sum()) for s in f["image"])
    assert written == 2

    again = torchrun(coop_dataset, cache_dir, "--workers", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"\[rank 1/2\] \S+part001-of-002: resuming", again.stdout), again.stdout
    assert f"[rank 1/2] {left} image views encoded by this rank" in again.stdout  # only what was missing
    assert_same_cache(final, single)
    assert not part.exists()

