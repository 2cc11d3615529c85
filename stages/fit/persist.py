"""Fitted estimators to ``.npz`` and back, without pickle: loading a run never executes code.

An estimator is stored as its constructor parameters and its fitted attributes (names ending in ``_``):
arrays as ``param__<name>`` / ``fitted__<name>`` entries, everything else as JSON in ``__meta__``, with the
class name checked against a whitelist on load. Extra top-level arrays (the gap plot's ``proj_*``) ride along.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import FitError
from stages.fit.atomic import atomic_open

META = "__meta__"
FORMAT = "cmm-fitted/1"


def _registry() -> dict[str, type]:
    from stages.fit.methods import estimator_classes

    return {cls.__name__: cls for cls in estimator_classes()}


def _jsonable(value, where: str):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise FitError(f"cannot store {where} of type {type(value).__name__}: estimators keep arrays and JSON values only")


def save_fitted(estimator, path: Path, *, method: str, classes: list[str],
                extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``estimator`` (fitted) and ``extra`` arrays to ``path`` atomically (temporary file + rename)."""
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "method": method, "class": type(estimator).__name__, "classes": list(classes),
            "params": {}, "fitted": {}}
    for name, value in estimator.get_params(deep=False).items():
        if isinstance(value, np.ndarray):
            arrays[f"param__{name}"] = value
        else:
            meta["params"][name] = _jsonable(value, f"parameter {name}")
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.ndarray):
            arrays[f"fitted__{name}"] = value
        else:
            meta["fitted"][name] = _jsonable(value, f"fitted attribute {name}")
    arrays.update(extra or {})
    arrays[META] = np.array(json.dumps(meta))
    path = Path(path)
    with atomic_open(path) as handle:  # a temporary name unique to this process: safe under fit --jobs N
        np.savez_compressed(handle, **arrays)
    return path


@dataclass
class Fitted:
    """A loaded run: the estimator, its method name and the class names its outputs index."""

    estimator: object
    method: str
    classes: list[str]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.decision_function(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(X)

    def predict(self, X: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.estimator.predict(X)]


def load_fitted(path: Path) -> Fitted:
    """Load a ``.npz`` written by :func:`save_fitted` (or the ``.json`` record beside it)."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".npz")
    if not path.is_file():
        raise FitError(f"fitted parameters {path} not found; refit the run with pipeline fit --force")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop(META)))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise FitError(f"{path} is not a fitted run written by pipeline fit ({err}); refit it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FitError(f"{path} has an unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    registry = _registry()
    cls = registry.get(str(meta.get("class")))
    if cls is None:
        raise FitError(f"{path} names estimator {meta.get('class')!r}, which this version does not know")
    params = dict(meta["params"])
    params.update({k[len("param__"):]: v for k, v in arrays.items() if k.startswith("param__")})
    try:
        estimator = cls(**params)
    except TypeError as err:
        raise FitError(f"{path} does not match estimator {cls.__name__} of this version ({err}); refit it") from None
    for name, value in meta["fitted"].items():
        setattr(estimator, name, value)
    for name, value in arrays.items():
        if name.startswith("fitted__"):
            setattr(estimator, name[len("fitted__"):], value)
    return Fitted(estimator=estimator, method=str(meta["method"]), classes=[str(c) for c in meta["classes"]])
