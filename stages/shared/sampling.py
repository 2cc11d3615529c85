"""CoOp's few-shot sampler, reproduced exactly so that our subsets equal the published ones.

CoOp (Dassl ``generate_fewshot_dataset``): ``random.seed(seed)``; group the positions of the train list by
label in first-seen order; per label ``random.sample(positions, K)`` when the label has at least K items,
else keep them all; then the val list the same way with ``min(K, 4)`` shots, continuing the random state.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stages.shared.errors import DatasetError, FitError
from stages.shared.safe_io import JSONFileError, atomic_write, read_json

SAMPLER = "coop"
VAL_SHOTS_CAP = 4


def _group_by_label(labels: Sequence[int]) -> dict[int, list[int]]:
    """Positions of each label, labels in first-seen order (a dict keeps insertion order)."""
    groups: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        groups.setdefault(int(label), []).append(position)
    return groups


def _sample_per_label(rng: random.Random, labels: Sequence[int], shots: int) -> list[int]:
    """One pass of CoOp's per-label draw with the given random state."""
    chosen: list[int] = []
    for positions in _group_by_label(labels).values():
        chosen.extend(rng.sample(positions, shots) if len(positions) >= shots else positions)
    return chosen


def coop_sample(train_labels: Sequence[int], val_labels: Sequence[int], shots: int,
                seed: int) -> dict[str, list[int]]:
    """Few-shot train/val positions exactly as CoOp draws them for ``shots`` and ``seed``.

    Uses a private ``random.Random(seed)``, which yields the same sequence as ``random.seed(seed)``
    followed by module-level calls, without touching the global state.
    """
    if shots < 1:
        raise FitError(f"shots must be >= 1, got {shots}; use one of 1, 2, 4, 8, 16")
    rng = random.Random(seed)
    train = _sample_per_label(rng, list(train_labels), shots)
    val = _sample_per_label(rng, list(val_labels), min(shots, VAL_SHOTS_CAP))
    return {"train": train, "val": val}


def read_split_labels(split_json: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train_labels, val_labels) of a CoOp split file ``{"train": [[path, label, classname], ...], ...}``."""
    path = Path(split_json)
    if not path.is_file():
        raise DatasetError(f"split file {path} not found; download the CoOp split file into that folder")
    try:
        split = read_json(path)
        return tuple(np.array([_label(item[1]) for item in split[name]], dtype=np.int64)  # type: ignore[return-value]
                     for name in ("train", "val"))
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise DatasetError(f"split file {path} is not a CoOp split ({' '.join(str(err).split())[:200]}); "
                           f"expected {{'train': [[path, label, classname], ...], 'val': [...]}}") from None


def _label(value: object) -> int:
    """A class label from a split file: an integer in 0..2**31-1 (never a float truncated, never a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ValueError(f"label {str(value)[:40]!r} is not an integer in 0..2**31-1")
    return value


def positions_in(raw: object, split: str, size: int) -> list[int]:
    """A subset's positions of one split: a list of distinct integers in ``0..size-1``; raises ValueError."""
    if not isinstance(raw, list):
        raise ValueError(f"{split} must be a list of positions, got {type(raw).__name__}")
    for p in raw:
        if isinstance(p, bool) or not isinstance(p, int):
            raise ValueError(f"{split} position {str(p)[:40]!r} is not an integer")
        if not 0 <= p < size:
            raise ValueError(f"{split} position {p} is outside the split list (0..{size - 1}); "
                             "the subset was made for another split file")
    if len(set(raw)) != len(raw):
        raise ValueError(f"{split} positions repeat; a subset lists each item once")
    return list(raw)


def subset_name(shots: int, seed: int) -> str:
    """File name of one subset: ``shots{K}_seed{S}.json``."""
    return f"shots{shots}_seed{seed}.json"


def write_subsets(train_labels: Sequence[int], val_labels: Sequence[int], shots: Sequence[int],
                  seeds: Sequence[int], out_dir: Path) -> list[Path]:
    """Write one CoOp subset file per (shots, seed) so that others (and ``fit_runs``) reuse the exact positions."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k in shots:
        for s in seeds:
            subset = coop_sample(train_labels, val_labels, int(k), int(s))
            path = out / subset_name(int(k), int(s))
            atomic_write(path, json.dumps({**subset, "shots": int(k), "seed": int(s), "sampler": SAMPLER}))
            written.append(path)
    return written


def read_subset(path: Path, n_train: int, n_val: int) -> dict[str, list[int]]:
    """A subset file ``{"train": [...], "val": [...]}`` (positions), checked against the split sizes."""
    path = Path(path)
    if not path.is_file():
        raise FitError(f"subset file {path} not found; write it with pipeline subsets --out {path.parent}")
    try:
        subset = read_json(path)
    except JSONFileError as err:
        raise FitError(f"{path} is not a subset file: {err}; write it with pipeline subsets") from None
    if not isinstance(subset, dict) or "train" not in subset or "val" not in subset:
        raise FitError(f"{path} is not a subset file; expected {{'train': [positions], 'val': [positions]}}")
    try:
        out = {split: positions_in(subset[split], split, size) for split, size in (("train", n_train), ("val", n_val))}
    except ValueError as err:
        raise FitError(f"{path}: {err}") from None
    if not out["train"]:
        raise FitError(f"{path}: the train subset is empty")
    return out
