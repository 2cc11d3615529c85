"""Every CUDA path on a real GPU: extraction in every precision with both decoders, every fit method, predict,
and torchrun with one rank. Marked ``gpu`` and skipped without CUDA; ``pytest -m gpu`` runs them.

Tolerances are the float noise each path is expected to carry, against CPU fp32 with the Pillow decoder:
- fp32 on CUDA, same decoder: cosine >= 0.99999 (only the kernels' summation order differs);
- fp16 / amp: cosine >= 0.999; bf16 / amp_bf16 (8 mantissa bits): >= 0.99;
- the tensor decoder (nvjpeg's IDCT and chroma upsampling differ from libjpeg's by a level or two in some
  pixels): cosine >= 0.999 in fp32; the decisions (which files are unreadable) are identical;
- fitting on CUDA: test top-1 within 1 point of the CPU's (a couple of test images on the 300 of the regime)
  and predictions agreeing on >= 97% of the test images.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cache import FeatureCache
from tests.conftest import TINY_MODEL_CONFIG
from tests.reliability.helpers import CACHE_NAME, extract_args, run_cli

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ROOT = Path(__file__).resolve().parents[2]
PRECISION_COSINE = {"fp32": 0.99999, "fp16": 0.999, "amp": 0.999, "bf16": 0.99, "amp_bf16": 0.99}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The real-looking split of tests/extract/test_tensor_decode.py (photos in odd encodings, one truncated)."""
    from tests.extract.test_tensor_decode import write_odd_dataset

    return write_odd_dataset(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> FeatureCache:
    cache_dir = tmp_path_factory.mktemp("cpu")
    result = run_cli(*extract_args(photos, cache_dir, "--device", "cpu", "--decode", "pil", "--skip-bad"))
    assert result.exit_code == 0, result.output
    return FeatureCache(cache_dir / CACHE_NAME)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.mark.parametrize("decode", ["pil", "tensor"])
@pytest.mark.parametrize("precision", sorted(PRECISION_COSINE))
def test_extract_on_cuda_in_every_precision_with_both_decoders(photos, reference, tmp_path, precision, decode):
    result = run_cli(*extract_args(photos, tmp_path, "--device", "cuda", "--precision", precision,
                                   "--decode", decode, "--skip-bad", "--aug-views", "2"))
    assert result.exit_code == 0, result.output
    cache = FeatureCache(tmp_path / CACHE_NAME)
    bound = PRECISION_COSINE[precision] if decode == "pil" else min(PRECISION_COSINE[precision], 0.999)
    for split in ("train", "val", "test"):
        assert cache.skipped_paths(split) == reference.skipped_paths(split)
        found, expected = cache.features(split), reference.features(split)
        keep = np.linalg.norm(expected, axis=1) > 0  # skipped rows are zeros in both
        assert cosines(found[keep], expected[keep]).min() >= bound, (split, precision, decode)
    assert cache.key_fields.get("decode") == (None if decode == "pil" else "tensor-cuda")
    assert np.isfinite(cache.aug_features(np.arange(14))).all()


def test_tensor_augmented_views_follow_the_pil_views_on_cuda(photos, tmp_path):
    caches = {}
    for decode in ("pil", "tensor"):
        result = run_cli(*extract_args(photos, tmp_path / decode, "--device", "cuda", "--precision", "fp32",
                                       "--decode", decode, "--skip-bad", "--aug-views", "2"))
        assert result.exit_code == 0, result.output
        caches[decode] = FeatureCache(tmp_path / decode / CACHE_NAME)
    pil, tensor = (caches[d].aug_features(np.arange(14)).reshape(-1, 32) for d in ("pil", "tensor"))
    assert cosines(tensor, pil).min() >= 0.999  # the same crops and flips, nvjpeg's pixels


@pytest.fixture(scope="module")
def regime():
    from stages.fit.regimes import make_regime

    return make_regime("caltech_like", seed=0, test_per_class=5, n_classes=60)


def test_every_fit_method_on_cuda_matches_the_cpu(regime, tmp_path):
    from stages.fit.methods import METHODS
    from stages.fit.run import fit_runs
    from stages.shared.record import read_record

    runs = {}
    for device in ("cpu", "cuda"):
        paths = fit_runs(regime, methods=list(METHODS), shots=[4], seeds=[1], runs_dir=tmp_path / device,
                         device=device, progress=lambda _: None)
        runs[device] = {p.relative_to(tmp_path / device): read_record(p) for p in paths}
    assert runs["cpu"].keys() == runs["cuda"].keys() and len(runs["cpu"]) == len(METHODS)
    for name, cpu in runs["cpu"].items():
        gpu = runs["cuda"][name]
        assert abs(gpu.test_top1 - cpu.test_top1) <= 1.0, (name, cpu.test_top1, gpu.test_top1)


def test_fit_and_predict_through_the_cli_on_cuda(photos, tmp_path):
    cache_dir, runs = tmp_path / "cache", tmp_path / "runs"
    assert run_cli(*extract_args(photos, cache_dir, "--device", "cuda", "--skip-bad")).exit_code == 0
    common = ["--dataset", "folder", "--model", str(TINY_MODEL_CONFIG), "--pretrained", "none",
              "--cache-dir", str(cache_dir), "--runs-dir", str(runs), "--shots", "1", "--seeds", "1"]
    fitted = run_cli("fit", *common, "--device", "cuda", "--jobs", "1")  # the default methods
    assert fitted.exit_code == 0, fitted.output
    record = next(runs.rglob("cmm/shots1_seed1.json"))
    images = sorted((photos.parent / "images" / "test").glob("*.jpg"))[:4]
    rows = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.csv"
        result = run_cli("predict", *map(str, images), "--run", str(record), "--device", device, "--out", str(out))
        assert result.exit_code == 0, result.output
        rows[device] = list(csv.DictReader(out.open()))
    assert [r["class"] for r in rows["cuda"]] == [r["class"] for r in rows["cpu"]]
    assert np.allclose([float(r["probability"]) for r in rows["cuda"]],
                       [float(r["probability"]) for r in rows["cpu"]], atol=1e-3)


def test_torchrun_with_one_rank_on_the_gpu(photos, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "pipeline",
               *extract_args(photos, tmp_path / "ranked", "--device", "cuda", "--skip-bad", "--precision", "fp32")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = run_cli(*extract_args(photos, tmp_path / "single", "--device", "cuda", "--skip-bad",
                                   "--precision", "fp32"))
    assert single.exit_code == 0, single.output
    ranked, one = FeatureCache(tmp_path / "ranked" / CACHE_NAME), FeatureCache(tmp_path / "single" / CACHE_NAME)
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(ranked.features(split), one.features(split), rtol=1e-4, atol=1e-5)
    assert json.loads(json.dumps(ranked.key_fields)) == one.key_fields
