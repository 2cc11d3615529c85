"""Hand-made run records written into tmp_path, in the layout `pipeline fit` uses (docs/records.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from stages.shared.record import record_path

RecordWriter = Callable[..., Path]


def make_record(dataset: str, model: str, weights: str, method: str, shots: int, seed: int, top1: float,
                **extra: Any) -> dict[str, Any]:
    """A schema cmm-run/1 record; ``extra`` overrides or adds fields."""
    record = {
        "schema": "cmm-run/1", "dataset": dataset, "model": model, "weights": weights,
        "random_weights": weights == "none", "method": method, "method_label": method, "ablation": {},
        "shots": shots, "seed": seed, "template_set": "coop", "train_views": "plain",
        "metrics": {"test_top1": top1, "val_top1": top1 - 1.0},
        "hyperparameters": {}, "params_file": f"shots{shots}_seed{seed}.npz",
    }
    record.update(extra)
    return record


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def record_writer(runs: Path) -> RecordWriter:
    """write(dataset, model, weights, method, shots, seed, top1, **extra) -> path of the JSON under ``runs``."""

    def write(dataset: str, model: str, weights: str, method: str, shots: int, seed: int, top1: float,
              **extra: Any) -> Path:
        record = make_record(dataset, model, weights, method, shots, seed, top1, **extra)
        path = record_path(runs, dataset, model, weights, record["method_label"], shots, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_record(runs: Path) -> RecordWriter:
    return record_writer(runs)


@pytest.fixture(scope="session")
def make_writer() -> Callable[[Path], RecordWriter]:
    """record_writer itself, for fixtures wider than one test."""
    return record_writer


def write_projection(record_path: Path, n: int = 30, classes: int = 3, seed: int = 0) -> Path:
    """The .npz beside a CMM record, holding the projection arrays of the modality-gap plot."""
    rng = np.random.default_rng(seed)
    path = record_path.with_suffix(".npz")
    np.savez(path, W=np.zeros((4, 4), np.float32), prototypes=rng.normal(size=(classes, 4)),
             proj_images_before=rng.normal(size=(n, 2)) + 3.0, proj_images_after=rng.normal(size=(n, 2)),
             proj_labels=rng.integers(0, classes, n), proj_protos_before=rng.normal(size=(classes, 2)),
             proj_protos_after=rng.normal(size=(classes, 2)))
    return path


@pytest.fixture
def small_grid(write_record: RecordWriter) -> None:
    """CMM on RN50/openai: dtd complete at 1 and 16 shots, eurosat complete at 1 shot but missing seed 3
    at 16 shots; zero-shot at 0 shots (seed 1 only: deterministic). Expected numbers are in the tests."""
    for seed, top1 in zip((1, 2, 3), (50.0, 52.0, 57.0)):
        write_record("dtd", "RN50", "openai", "cmm", 1, seed, top1)
    for seed, top1 in zip((1, 2, 3), (70.0, 70.0, 73.0)):
        write_record("eurosat", "RN50", "openai", "cmm", 1, seed, top1)
    for seed, top1 in zip((1, 2, 3), (60.0, 61.0, 62.0)):
        write_record("dtd", "RN50", "openai", "cmm", 16, seed, top1)
    for seed, top1 in zip((1, 2), (80.0, 82.0)):
        write_record("eurosat", "RN50", "openai", "cmm", 16, seed, top1)
    write_record("dtd", "RN50", "openai", "zero_shot", 0, 1, 40.0)
    write_record("eurosat", "RN50", "openai", "zero_shot", 0, 1, 35.0)


@pytest.fixture(scope="session")
def projection_writer() -> Callable[..., Path]:
    """write_projection(record_path) -> the .npz written beside the record."""
    return write_projection
