"""Fitted estimators to ``.npz`` and back, without pickle: loading a run never executes code.

An estimator is stored as its constructor parameters and its fitted attributes (names ending in ``_``):
arrays as ``param__<name>`` / ``fitted__<name>`` entries, everything else as JSON in ``__meta__``, with the
class name checked against a whitelist on load. Extra top-level arrays (the gap plot's ``proj_*``) ride along
and are never read here. Loading reads only ``__meta__`` and the estimator's own arrays, each checked against
the largest array a fit on the run's cache can store before it is allocated (stages/shared/fitted_file.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from stages.shared.errors import FitError
from stages.shared.fitted_file import META, FittedFile, FittedFileError, read_meta
from stages.shared.safe_io import atomic_path

if TYPE_CHECKING:
    from cache import CacheReader

FORMAT = "cmm-fitted/1"
ARRAY_PREFIXES = ("param__", "fitted__")
TOTAL_FACTOR = 4  # CMM stores its text prototypes, a map and two more (C, D) arrays: under 2x their sum
AVERAGED_FITS = 2  # CMM's average keeps the maps and prototypes of its other fits (3 prior strengths - 1) stacked


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


@dataclass(frozen=True)
class FittedBounds:
    """The largest arrays a fit on one cache can store: C classes, D feature width, L templates in a set and
    N image rows in a split. Fitted arrays are text prototypes (C, L, D) and (C, D), training rows (N, D),
    maps (D, D) and per-class vectors, and a CMM average's further fits stacked (``AVERAGED_FITS`` maps and
    prototype sets); none has more than three axes, an axis longer than the largest of these sizes or more
    values than the largest of those arrays, and all of a file's together hold at most ``TOTAL_FACTOR`` times
    their sum."""

    classes: int
    dim: int
    templates: int
    rows: int

    @classmethod
    def of_cache(cls, cache: CacheReader) -> FittedBounds:
        """The bounds of a fit on ``cache``, from its array shapes alone."""
        sizes = {"classes": 1, "dim": 1, "templates": 1, "rows": 1}
        for name, shape, _ in cache.datasets():
            if name == "classes":
                sizes["classes"] = max(sizes["classes"], shape[0])
            elif name.startswith("image/") and name.endswith("/features") and len(shape) == 2:
                sizes["rows"], sizes["dim"] = max(sizes["rows"], shape[0]), max(sizes["dim"], shape[1])
            elif name.startswith("image/") and name.endswith("/aug_features") and len(shape) == 3:
                # training rows with views: the images and every view of them (ProKeR's, CMM's support)
                sizes["rows"], sizes["dim"] = max(sizes["rows"], (shape[0] + 1) * shape[1]), max(sizes["dim"], shape[2])
            elif name.startswith("text/") and name.endswith("/features") and len(shape) == 3:
                sizes["templates"], sizes["dim"] = max(sizes["templates"], shape[1]), max(sizes["dim"], shape[2])
        return cls(**sizes)

    def checker(self) -> Callable[[np.dtype, tuple[int, ...]], str | None]:
        """A check for each array header of one file, in turn: why it cannot be part of such a fit, or None.
        All the arrays together may hold at most ``TOTAL_FACTOR`` times the values of those largest arrays."""
        c, d, t, n = self.classes, self.dim, self.templates, self.rows
        longest, total = max(c, d, t, n), c * t * d + n * d + d * d + c * d
        most = max(c * t * d, n * d, AVERAGED_FITS * d * d, AVERAGED_FITS * c * d)
        left = [TOTAL_FACTOR * total]

        def problem(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
            if dtype.kind not in "biuf":
                return f"holds {dtype} values, not numbers"
            size = math.prod(shape)
            if len(shape) > 3 or any(axis > longest for axis in shape) or size > most or size > left[0]:
                return (f"has shape {shape}, more than a fit on its cache stores ({c} classes, {d} features, "
                        f"{t} templates, {n} images)")
            left[0] -= size
            return None
        return problem


def load_fitted(path: Path, bounds: FittedBounds | None = None) -> Fitted:
    """Load a ``.npz`` written by :func:`save_fitted` (or the ``.json`` record beside it).

    Reads only ``__meta__`` and the ``param__``/``fitted__`` arrays; with ``bounds`` (those of the run's
    cache) each array's header is checked against them before it is read, else only against the file's size.
    A malformed file is one line naming it.
    """
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".npz")
    if not path.exists():
        raise FitError(f"fitted parameters {path} not found; refit the run with pipeline fit --force")
    check = bounds.checker() if bounds is not None else None
    try:
        with FittedFile(path) as fitted:
            meta = read_meta(fitted)
            problem = _meta_problem(meta)
            if problem is None and bounds is not None and len(meta["classes"]) > bounds.classes:
                problem = f"{len(meta['classes'])} classes, more than the {bounds.classes} of its cache"
            if problem:
                raise FitError(f"{path} is not a fitted run written by pipeline fit ({problem}); refit it")
            arrays = {name: fitted.read(name, check) for name in fitted.names if name.startswith(ARRAY_PREFIXES)}
    except FittedFileError as err:
        raise FitError(f"{path} is not a fitted run written by pipeline fit ({err}); refit it") from None
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
