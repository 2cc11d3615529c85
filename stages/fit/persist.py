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

from stages.shared.safe_io import atomic_path
from stages.shared.errors import FitError

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
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a unique temporary name: concurrent fits
        np.savez(handle, **arrays)  # not deflated: float features shrink by ~8% for 20x the write time
    return path


def _meta_problem(meta: object) -> str | None:
    """What is wrong with a ``__meta__`` entry (types and bounds of every field load_fitted uses), or None."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        return f"unknown format {str(found)[:60]!r}"
    if not isinstance(meta.get("method"), str) or not isinstance(meta.get("class"), str):
        return "method and class must be strings"
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "classes must be a non-empty list of names"
    for part in ("params", "fitted"):
        value = meta.get(part)
        if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
            return f"{part} must map attribute names to values"
    if any(not name.endswith("_") or name.startswith("_") for name in meta["fitted"]):
        return "fitted attributes must end in '_'"
    return None


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

    def top_k(self, X: np.ndarray, k: int, source: Path | str = "the fitted run") -> list[list[tuple[str, float]]]:
        """Per row of ``X``: the ``k`` most probable classes with their probabilities, best first.

        A crafted or mismatched ``.npz`` (``source``) that gives no valid probabilities is refused in one line.
        """
        try:
            probabilities = np.asarray(self.predict_proba(X))
        except (ValueError, IndexError, TypeError, RuntimeError, AttributeError) as exc:
            raise FitError(f"{source} does not fit these features "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); refit the run") from None
        if probabilities.shape != (len(X), len(self.classes)) or not np.isfinite(probabilities).all():
            raise FitError(f"{source} gives no valid probabilities for its {len(self.classes)} classes; refit the run")
        rows = []
        for p in probabilities:
            order = np.argsort(-p)[:k]
            rows.append([(self.classes[i], float(p[i])) for i in order])
        return rows


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
    except (OSError, ValueError, KeyError, RecursionError, EOFError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())[:200]
        raise FitError(f"{path} is not a fitted run written by pipeline fit ({reason}); refit it") from None
    problem = _meta_problem(meta)
    if problem:
        raise FitError(f"{path} is not a fitted run written by pipeline fit ({problem}); refit it")
    registry = _registry()
    cls = registry.get(str(meta.get("class")))
    if cls is None:
        raise FitError(f"{path} names estimator {str(meta.get('class'))[:80]!r}, which this version does not know")
    params = dict(meta["params"])
    params.update({k[len("param__"):]: v for k, v in arrays.items() if k.startswith("param__")})
    try:
        estimator = cls(**params)
    except (TypeError, ValueError) as err:
        raise FitError(f"{path} does not match estimator {cls.__name__} of this version ({err}); refit it") from None
    for name, value in meta["fitted"].items():
        setattr(estimator, name, value)
    for name, value in arrays.items():
        if name.startswith("fitted__"):
            attr = name[len("fitted__"):]
            if not attr.isidentifier() or attr.startswith("_") or not attr.endswith("_"):
                raise FitError(f"{path}: {name[:80]!r} is not a fitted attribute name; refit the run")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise FitError(f"{path}: fitted array {attr} holds NaN/Inf; refit the run")
            setattr(estimator, attr, value)
    return Fitted(estimator=estimator, method=str(meta["method"]), classes=[str(c) for c in meta["classes"]])
