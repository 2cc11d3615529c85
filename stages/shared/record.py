"""The run record (docs/records.md): one JSON file per fit, written by fit, read by report and predict.

This module owns its schema version, its path layout, writing it (atomically) and reading it back with every
field checked against its declared type and bounds: a bad field is a one-line ``RecordError`` naming the
file and the field. Fields this version does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

from stages.shared.errors import RecordError
from stages.shared.naming import model_name, name_part
from stages.shared.safe_io import JSONFileError, atomic_write, read_json

SCHEMA = "cmm-run/1"
RECORD_GLOB = "shots*_seed*.json"
PARAMS_SUFFIX = ".npz"
TRAIN_VIEWS = ("plain", "aug", "released")


def run_folder(runs_dir: str | Path, dataset: str, model: str, weights: str) -> Path:
    """The folder of every run of a dataset x model x weights: ``RUNS/<dataset>/<name>``."""
    return Path(runs_dir) / name_part(dataset) / model_name(model, weights)


def record_path(runs_dir: str | Path, dataset: str, model: str, weights: str, method_label: str, shots: int,
                seed: int) -> Path:
    """Where fit writes a record: ``RUNS/<dataset>/<name>/<method_label>/shots<K>_seed<S>.json``."""
    return run_folder(runs_dir, dataset, model, weights) / name_part(method_label) / f"shots{shots}_seed{seed}.json"


def older_run_folders(folder: Path, model: str, weights: str) -> list[Path]:
    """Other folders beside ``folder`` holding runs of this model x weights: the naming of an older version."""
    found = []
    for other in sorted(p for p in folder.parent.glob("*") if p.is_dir() and p != folder):
        first = next(other.glob(f"*/{RECORD_GLOB}"), None)
        try:
            record = read_record(first) if first is not None else None
        except RecordError:
            continue
        if record is not None and (record.model, record.weights) == (model, weights):
            found.append(other)
    return found


@dataclass(frozen=True)
class RunRecord:
    """One fit: what was fitted on which cache, what was chosen on val, and its scores (docs/records.md)."""

    schema: ClassVar[str] = SCHEMA

    dataset: str
    model: str
    weights: str
    method: str
    shots: int
    seed: int
    metrics: dict[str, Any]
    method_label: str = ""
    random_weights: bool = False
    ablation: dict[str, bool] = field(default_factory=dict)
    template_set: str = "coop"
    train_views: str = "plain"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    subset: dict[str, Any] = field(default_factory=dict)
    short_classes: list[str] = field(default_factory=list)
    skipped_images: dict[str, list[str]] = field(default_factory=dict)
    gap: dict[str, dict[str, float]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    params_file: str | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.method_label:
            object.__setattr__(self, "method_label", self.method)

    # -- what readers use ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The short name of the model x weights (stages.shared.naming), as in cache and report files."""
        return model_name(self.model, self.weights)

    @property
    def test_top1(self) -> float:
        return float(self.metrics["test_top1"])

    @property
    def val_top1(self) -> float | None:
        value = self.metrics.get("val_top1")
        return None if value is None else float(value)

    @property
    def shift(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in (self.metrics.get("shift") or {}).items()}

    @property
    def params_path(self) -> Path | None:
        """The fitted parameters beside the record (None when the record names none or was not read from disk)."""
        if not self.params_file or self.path is None:
            return None
        return self.path.parent / Path(self.params_file).name

    @property
    def run_key(self) -> tuple[str, str, str, str, int, int]:
        """What makes a record unique: dataset, model, weights, method label, shots, seed."""
        return (self.dataset, self.model, self.weights, self.method_label, self.shots, self.seed)

    def layout_path(self, runs_dir: str | Path) -> Path:
        """Where fit writes this record under ``runs_dir``."""
        return record_path(runs_dir, self.dataset, self.model, self.weights, self.method_label, self.shots,
                           self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the record (``schema`` first, unknown fields kept)."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for spec in fields(self):
            if spec.name not in ("extra", "path"):
                out[spec.name] = getattr(self, spec.name)
        out.update(self.extra)
        return out


# -- writing --------------------------------------------------------------------------------------------
def record_text(record: RunRecord) -> str:
    """The record as strict JSON text; a non-finite number (a search log's or gap measure's NaN/Inf) is stored
    as null and numpy scalars as plain numbers, so any record a fit produces can be written and read back."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
            value = value.item()  # a numpy scalar (no numpy import here: the contracts load nothing heavy)
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        return value

    return json.dumps(clean(record.to_dict()), indent=2, allow_nan=False)


def write_record(path: str | Path, record: RunRecord, text: str | None = None) -> Path:
    """Write ``record`` to ``path`` atomically (stages.shared.safe_io: a unique temporary file in the same
    folder, fsync, ``os.replace``): a reader or a killed writer never sees half a record, two writers of one
    path never share a temporary. ``text``: the record's :func:`record_text`, when the caller built it first."""
    return atomic_write(path, record_text(record) if text is None else text)


# -- reading --------------------------------------------------------------------------------------------
def read_record(path: str | Path) -> RunRecord:
    """Read and validate one record file; a problem is a one-line RecordError naming the file and field."""
    path = Path(path)
    try:
        raw = read_json(path)  # bounded: size, nesting, huge or non-finite numbers are one-line errors
    except JSONFileError as exc:
        raise RecordError(path, f"cannot be read: {exc}") from None
    return parse_record(raw, path)


def parse_record(raw: Any, path: str | Path) -> RunRecord:
    """Validate one decoded record against the schema; every field is checked, unknown ones kept in ``extra``."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise RecordError(path, "does not hold a JSON object")
    if raw.get("schema") != SCHEMA:
        raise RecordError(path, f'"schema" is {raw.get("schema")!r}, expected {SCHEMA!r}')
    values: dict[str, Any] = {}
    for name, (check, required) in _FIELDS.items():
        if name not in raw or raw[name] is None and name != "params_file":
            if required:
                raise RecordError(path, f'"{name}" is missing')
            continue
        try:
            values[name] = check(raw[name])
        except _Bad as bad:
            where = f"{name}.{bad.where}" if bad.where else name
            raise RecordError(path, f'"{where}" must be {bad.what}, got {_show(bad.value)}') from None
    values.setdefault("random_weights", values["weights"] == "none")
    extra = {k: v for k, v in raw.items() if k not in _FIELDS and k != "schema"}
    return RunRecord(**values, extra=extra, path=path)


class _Bad(Exception):
    def __init__(self, what: str, value: Any, where: str = "") -> None:
        super().__init__(what)
        self.what, self.value, self.where = what, value, where


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("a string", value)
    return value


def single_line(text: str) -> bool:
    """True when ``text`` holds no control character (newline, CR, tab, NUL, ESC, ...) and no Unicode line or
    paragraph separator: a name that a report, a file listing or a terminal line can show as it is."""
    return not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _line(value: Any) -> str:
    """A string a report shows as a name: single-line and NUL-free (else it could add lines to a report)."""
    if not isinstance(value, str) or not single_line(value):
        raise _Bad("a single-line string (no newline, tab or other control character)", value)
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("a non-empty string", value)
    return _line(value)


def _keys(check: Callable[[Any], dict]) -> Callable[[Any], dict]:
    """``check``, then every key of the object it returns a single-line name (keys become report columns)."""
    def keyed(value: Any) -> dict:
        out = check(value)
        for key in out:
            if not single_line(key):
                raise _Bad("a single-line name (no newline, tab or other control character)", key)
        return out
    return keyed


def _integer(low: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
            raise _Bad("an integer" + ("" if low is None else f" >= {low}"), value)
        return value
    return check


def _number(low: float | None = None, high: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            bounds = "" if low is None else f" in [{low}, {high}]" if high is not None else f" >= {low}"
            raise _Bad("a finite number" + bounds, value)
        return value
    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false", value)
    return value


def _mapping(item: Callable[[Any], Any], what: str) -> Callable[[Any], dict]:
    def check(value: Any) -> dict:
        if not isinstance(value, dict):
            raise _Bad(f"an object of {what}", value)
        out = {}
        for key, element in value.items():
            try:
                out[str(key)] = item(element)
            except _Bad as bad:
                raise _Bad(bad.what, bad.value, f"{key}.{bad.where}" if bad.where else str(key)) from None
        return out
    return check


def _list(item: Callable[[Any], Any], what: str) -> Callable[[Any], list]:
    def check(value: Any) -> list:
        if not isinstance(value, list):
            raise _Bad(f"a list of {what}", value)
        for element in value:
            try:
                item(element)
            except _Bad:
                raise _Bad(f"a list of {what}", element) from None
        return list(value)
    return check


def _object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _Bad("an object", value)
    return dict(value)


_PERCENT = _number(0.0, 100.0)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _metrics(value: Any) -> dict:
    """test_top1 (required) and val_top1 in percent, shift {dataset: percent}; any other metric a number, null,
    a list of numbers or an object of numbers (so metrics added later read without a schema change)."""
    if not isinstance(value, dict):
        raise _Bad("an object", value)
    if "test_top1" not in value:
        raise _Bad("a finite number in [0.0, 100.0]", None, "test_top1")
    out = dict(value)
    for key, element in value.items():
        try:
            if key == "test_top1":
                out[key] = _PERCENT(element)
            elif key == "shift":
                out[key] = _keys(_mapping(_PERCENT, "percentages"))(element)
            elif isinstance(element, dict):
                out[key] = _mapping(_optional(_number()), "numbers")(element)
            elif isinstance(element, list):
                out[key] = _list(_number(), "finite numbers")(element)
            elif key == "val_top1" or element is not None:
                out[key] = _optional(_PERCENT if key == "val_top1" else _number())(element)
        except _Bad as bad:
            raise _Bad(bad.what, bad.value, f"{key}.{bad.where}" if bad.where else key) from None
    return out


def _subset(value: Any) -> dict:
    out = _object(value)
    for split in ("train", "val"):
        if split in out:
            try:
                _list(_integer(0), "positions >= 0")(out[split])
            except _Bad as bad:
                raise _Bad(bad.what, bad.value, split) from None
    return out


def _cache(value: Any) -> dict:
    out = _object(value)
    for key in ("path", "key"):
        if key in out and out[key] is not None and not isinstance(out[key], str):
            raise _Bad("a string", out[key], key)
    return out


def _params_file(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or Path(value).name != value:
        raise _Bad("a file name beside the record (no folder)", value)
    return value


def _train_views(value: Any) -> str:
    if value not in TRAIN_VIEWS:
        raise _Bad(" or ".join(TRAIN_VIEWS), value)
    return value


_FIELDS: dict[str, tuple[Callable[[Any], Any], bool]] = {  # name -> (check, required)
    "dataset": (_name, True),
    "model": (_name, True),
    "weights": (_name, True),
    "method": (_name, True),
    "shots": (_integer(0), True),
    "seed": (_integer(), True),
    "metrics": (_metrics, True),
    "method_label": (_line, False),
    "random_weights": (_boolean, False),
    "ablation": (_mapping(_boolean, "true/false flags"), False),
    "template_set": (_name, False),
    "train_views": (_train_views, False),
    "hyperparameters": (_keys(_object), False),
    "search": (_object, False),
    "subset": (_subset, False),
    "short_classes": (_list(_string, "class names"), False),
    "skipped_images": (_mapping(_list(_string, "paths"), "path lists"), False),
    "gap": (_mapping(_mapping(_number(), "finite numbers"), "measures"), False),
    "cache": (_cache, False),
    "versions": (_keys(_mapping(_line, "single-line strings")), False),
    "timing": (_mapping(_number(0.0), "seconds"), False),
    "params_file": (_params_file, False),
    "created": (_string, False),
}
