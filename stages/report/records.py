"""Reading run records (docs/records.md): find them, validate them, skip the bad ones with a warning."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cache.safe_io import JSONFileError, read_json

SCHEMA = "cmm-run/1"
RECORD_GLOB = "shots*_seed*.json"


@dataclass(frozen=True)
class RunRecord:
    """The fields of one run record that the report uses; ``raw`` keeps the whole record."""

    path: Path
    dataset: str
    model: str
    weights: str
    random_weights: bool
    method: str
    method_label: str
    shots: int
    seed: int
    test_top1: float
    shift: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    gap: dict[str, dict[str, float]] = field(default_factory=dict)
    params_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def run_key(self) -> tuple[str, str, str, str, int, int]:
        """What makes a record unique: dataset, model, weights, method label, shots, seed."""
        return (self.dataset, self.model, self.weights, self.method_label, self.shots, self.seed)


class InvalidRecord(ValueError):
    """A record file that is not valid JSON or does not follow the schema; the message names the field."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidRecord(f'"{key}" must be {what}, got {value!r}')
    return value


def _numbers(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(_is_number(v) for v in raw.values()):
        raise InvalidRecord(f'"{where}" must map names to finite numbers')
    return {str(k): float(v) for k, v in raw.items()}


def parse_record(raw: Any, path: Path) -> RunRecord:
    """Validate one decoded record against schema cmm-run/1 and keep what the report needs."""
    if not isinstance(raw, dict):
        raise InvalidRecord("the file does not hold a JSON object")
    if raw.get("schema") != SCHEMA:
        raise InvalidRecord(f'"schema" is {raw.get("schema")!r}, expected {SCHEMA!r}')
    text = (str,)
    dataset = _require(raw, "dataset", text, "a string")
    model = _require(raw, "model", text, "a string")
    weights = _require(raw, "weights", text, "a string")
    method = _require(raw, "method", text, "a string")
    label = raw.get("method_label") or method
    if not isinstance(label, str):
        raise InvalidRecord(f'"method_label" must be a string, got {label!r}')
    shots = _require(raw, "shots", int, "an integer")
    seed = _require(raw, "seed", int, "an integer")
    if shots < 0:
        raise InvalidRecord(f'"shots" must be >= 0, got {shots}')
    metrics = raw.get("metrics")
    if not isinstance(metrics, dict) or not _is_number(metrics.get("test_top1")) or not 0 <= metrics["test_top1"] <= 100:
        raise InvalidRecord('"metrics.test_top1" must be a percentage (a number in 0..100)')
    random_weights = raw.get("random_weights", weights == "none")
    if not isinstance(random_weights, bool):
        raise InvalidRecord(f'"random_weights" must be true or false, got {random_weights!r}')
    hyper = raw.get("hyperparameters") or {}
    if not isinstance(hyper, dict):
        raise InvalidRecord('"hyperparameters" must be an object')
    gap_raw = raw.get("gap") or {}
    if not isinstance(gap_raw, dict):
        raise InvalidRecord('"gap" must be an object')
    gap = {str(side): _numbers(values, f"gap.{side}") for side, values in gap_raw.items()}
    params_file = raw.get("params_file")
    params_path = path.parent / Path(params_file).name if isinstance(params_file, str) and params_file else None
    return RunRecord(
        path=path, dataset=dataset, model=model, weights=weights, random_weights=random_weights,
        method=method, method_label=label, shots=shots, seed=seed,
        test_top1=float(metrics["test_top1"]), shift=_numbers(metrics.get("shift"), "metrics.shift"),
        hyperparameters=dict(hyper), gap=gap, params_path=params_path, raw=raw,
    )


def read_record(path: Path) -> RunRecord:
    """Read and validate one record file; raises InvalidRecord with the reason."""
    try:
        raw = read_json(path)
    except JSONFileError as exc:
        raise InvalidRecord(str(exc)) from None
    return parse_record(raw, path)


def canonical_path(runs_dir: Path, record: RunRecord) -> Path:
    """Where `pipeline fit` writes this record: RUNS/<dataset>/<model>__<weights>/<label>/shots<K>_seed<S>.json."""
    return (runs_dir / record.dataset / f"{record.model}__{record.weights}" / record.method_label
            / f"shots{record.shots}_seed{record.seed}.json")


def load_records(runs_dir: Path, warn: Callable[[str], None]) -> tuple[list[RunRecord], list[Path]]:
    """Every valid record under ``runs_dir`` (sorted by path) and the paths skipped with a warning.

    A second record of the same dataset x model x weights x method label x shots x seed (a copy elsewhere
    in the tree) is skipped too, so that no run is counted twice; the one at its layout path is kept.
    """
    valid: dict[tuple, list[RunRecord]] = {}
    skipped: list[Path] = []
    for path in sorted(runs_dir.rglob(RECORD_GLOB)):
        if not path.is_file():
            continue
        try:
            record = read_record(path)
        except InvalidRecord as exc:
            warn(f"warning: skipped run record {path}: {exc}")
            skipped.append(path)
            continue
        valid.setdefault(record.run_key, []).append(record)
    records: list[RunRecord] = []
    for same in valid.values():
        same.sort(key=lambda r: (r.path != canonical_path(runs_dir, r), str(r.path)))
        records.append(same[0])
        for other in same[1:]:
            warn(f"warning: skipped run record {other.path}: same run as {same[0].path}")
            skipped.append(other.path)
    return sorted(records, key=lambda r: str(r.path)), skipped
