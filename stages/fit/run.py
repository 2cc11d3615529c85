"""Stage two's loop: for every shots x seed x method, sample, fit on train (select on val), score on test.

The test split is read only after a run's estimator is fitted, for its final score; nothing is chosen on it.
Each run writes ``RUNS/<dataset>/<model>__<weights>/<method_label>/shots<K>_seed<S>.json`` (docs/records.md)
and the fitted parameters beside it as ``.npz`` (no pickle). Existing records of the same cache are skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from stages.errors import FitError
from stages.fit.gap import gap_metrics, joint_projection
from stages.fit.atomic import remove_stale_temps, write_text_atomic
from stages.fit.features import class_prototypes, l2_normalize
from stages.fit.methods import make_estimator, method_label
from stages.fit.persist import save_fitted
from stages.fit.sampling import coop_sample, read_subset, subset_name

SCHEMA = "cmm-run/1"
TRAIN_VIEWS = ("plain", "aug")


@dataclass
class FewShot:
    """The few-shot train and val data of one (shots, seed): positions into the split lists and features."""

    train: np.ndarray
    val: np.ndarray
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_aug: np.ndarray | None
    source: str
    dropped: list[str]


def usable_positions(source, split: str) -> np.ndarray:
    """Positions of the split that have a feature (all of them for sources without a notion of skipping)."""
    if hasattr(source, "positions"):
        return np.asarray(source.positions(split), dtype=np.int64)
    return np.arange(len(source.split_labels(split)), dtype=np.int64)


def few_shot(source, shots: int, seed: int, train_views: str, subsets_dir: Path | None) -> FewShot:
    """Sample (CoOp) or read the subset, then read its train and val features (never test)."""
    train_labels, val_labels = source.split_labels("train"), _val_labels(source)
    if subsets_dir is not None:
        subset = read_subset(Path(subsets_dir) / subset_name(shots, seed), len(train_labels), len(val_labels))
        origin = f"file:{subset_name(shots, seed)}"
    else:
        subset, origin = coop_sample(train_labels, val_labels, shots, seed), "coop"
    chosen, dropped = {}, []
    for split in ("train", "val"):
        wanted = np.asarray(subset[split], dtype=np.int64)
        unreadable = np.isin(wanted, bad_positions(source, split))
        dropped += [f"{split}:{int(p)}" for p in wanted[unreadable]]
        chosen[split] = wanted[~unreadable]
    train, val = chosen["train"], chosen["val"]
    X_aug = None
    if train_views == "aug":
        X_aug = source.aug_features(train)
        if X_aug is None:
            raise FitError(f"{source.dataset}: --train-views aug needs augmented views in the cache; "
                           "extract them with pipeline extract --aug-views 10")
    return FewShot(train=train, val=val, X=source.features("train", train), y=train_labels[train],
                   X_val=source.features("val", val), y_val=val_labels[val], X_aug=X_aug, source=origin,
                   dropped=dropped)


def bad_positions(source, split: str) -> np.ndarray:
    """Positions skipped as unreadable at extraction (``--skip-bad``); CoOp's draw keeps them, we drop them."""
    if hasattr(source, "bad_positions"):
        return np.asarray(source.bad_positions(split), dtype=np.int64)
    return np.zeros(0, dtype=np.int64)


def _val_labels(source) -> np.ndarray:
    try:
        return source.split_labels("val")
    except Exception as err:  # noqa: BLE001 - the source names what is missing
        raise FitError(f"{source.dataset} has no val split to select hyper-parameters on ({err}); "
                       "extract it (pipeline extract --splits train,val,test)") from None


class LazyTestSplit:
    """Test features, read on first use (after the first fit), then kept for the remaining runs."""

    def __init__(self, source) -> None:
        self.source = source
        self._data: tuple[np.ndarray, np.ndarray] | None = None

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        if self._data is None:
            positions = usable_positions(self.source, "test")
            labels = self.source.split_labels("test")[positions]
            self._data = (self.source.features("test", positions), labels)
        return self._data


def shift_top1(estimator, base_classes: int, shifted: LazyTestSplit) -> float:
    """Top-1 on another dataset's test split; a 200-class subset (ImageNet-A/R) scores only its classes."""
    X, y = shifted.get()
    shifted = shifted.source
    logits = estimator.decision_function(X)
    parents = shifted.parent_class_ids
    if parents is not None:
        parents = np.asarray(parents, dtype=np.int64)
        return float((parents[logits[:, parents].argmax(1)] == parents[y]).mean() * 100.0)
    if len(shifted.classes) != base_classes:
        raise FitError(f"{shifted.dataset} has {len(shifted.classes)} classes and no mapping onto the "
                       f"{base_classes} classes the model was fitted on")
    return float((logits.argmax(1) == y).mean() * 100.0)


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on (read from metadata: no heavy imports)."""
    out = {}
    for key, dist in (("pipeline", "cmm-pipeline"), ("torch", "torch"), ("open_clip", "open_clip_torch"),
                      ("numpy", "numpy"), ("sklearn", "scikit-learn"), ("h5py", "h5py")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def _write_json(path: Path, record: dict) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, allow_nan=False))


def _existing(path: Path, key: str) -> bool:
    """A record for this run exists and was fitted on the same cache content."""
    try:
        record = json.loads(path.read_text())
        return record.get("schema") == SCHEMA and record["cache"]["key"] == key and path.with_suffix(".npz").is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


@dataclass
class Sweep:
    """What every (shots, seed) unit of a sweep shares; picklable, so that ``--jobs N`` workers get it once."""

    source: object
    info: dict
    text: np.ndarray
    classes: list[str]
    template_set: str
    train_views: str
    ablation: dict[str, bool] | None
    subsets_dir: Path | None
    device: str
    skipped: dict[str, list[str]]
    versions: dict[str, str]
    test: LazyTestSplit
    shifts: dict[str, LazyTestSplit]


@dataclass(frozen=True)
class PlannedFit:
    """One (method, shots, seed) fit to do and where its record goes."""

    method: str
    label: str
    shots: int
    seed: int
    path: Path


@dataclass
class UnitResult:
    """What a (shots, seed) unit did: its notices, then one (fit, message, seconds) per record written."""

    notices: list[str]
    fits: list[tuple[PlannedFit, str, float]]


def fit_runs(source, *, methods: Sequence[str], shots: Sequence[int], seeds: Sequence[int], runs_dir: Path,
             template_set: str = "coop", train_views: str = "plain", ablation: dict[str, bool] | None = None,
             subsets_dir: Path | None = None, eval_sources: dict | None = None, force: bool = False,
             device: str = "cpu", jobs: int = 1, progress: Callable[[str], None] = print) -> list[Path]:
    """Fit every (method, shots, seed) on ``source`` and write one record each; returns the record paths.

    ``jobs`` > 1 fits the (shots, seed) units in that many worker processes (stages/fit/parallel.py), with the
    same records as ``jobs=1``. Every record is written atomically as soon as its fit ends, so an interrupted
    sweep keeps what it finished and a rerun fits only the rest.
    """
    if train_views not in TRAIN_VIEWS:
        raise FitError(f"train views must be one of {', '.join(TRAIN_VIEWS)}, got {train_views!r}")
    if int(jobs) < 1:
        raise FitError(f"jobs must be at least 1, got {jobs}")
    info = source.describe()
    key = info["cache"]["key"]
    text = source.text_features(template_set)
    classes = list(source.classes)
    if text.shape[0] != len(classes):
        raise FitError(f"{source.dataset}: {text.shape[0]} text prototypes for {len(classes)} classes")
    folder = Path(runs_dir) / _safe(source.dataset) / f"{_safe(info['model'])}__{_safe(info['weights'])}"
    for name, other in (eval_sources or {}).items():
        theirs = other.describe()
        if (theirs["model"], theirs["weights"]) != (info["model"], info["weights"]):
            raise FitError(f"--eval-on {name}: its cache was encoded by {theirs['model']} ({theirs['weights']}), "
                           f"not {info['model']} ({info['weights']}); extract it with the same model and weights")
    sweep = Sweep(source=source, info=info, text=text, classes=classes, template_set=template_set,
                  train_views=train_views, ablation=ablation, subsets_dir=subsets_dir, device=device,
                  skipped=_skipped(source), versions=versions(), test=LazyTestSplit(source),
                  shifts={name: LazyTestSplit(other) for name, other in (eval_sources or {}).items()})
    labels = {m: method_label(m, ablation if m == "cmm" else None, template_set, train_views) for m in methods}
    plan = [PlannedFit(m, labels[m], int(k), int(s), folder / labels[m] / f"shots{k}_seed{s}.json")
            for k in shots for s in seeds for m in methods]
    if folder.is_dir():
        remove_stale_temps(folder)  # temporary files of a sweep that was killed mid-write
    meter = SweepProgress(len(plan), source.dataset, progress)
    units: dict[tuple[int, int], list[PlannedFit]] = {}
    for fit in plan:
        if not force and _existing(fit.path, key):
            meter.skipped(f"{fit.label} {source.dataset} {fit.shots}-shot seed {fit.seed}: exists, skipped ({fit.path})")
        else:
            units.setdefault((fit.shots, fit.seed), []).append(fit)
    todo = list(units.values())
    workers = min(int(jobs), len(todo))
    if workers <= 1:
        for unit in todo:
            fit_unit(sweep, unit, on_fit=meter.fitted, on_notice=progress)
    else:
        from stages.fit.parallel import run_units

        progress(f"{sum(map(len, todo))} fit(s) in {workers} worker processes")
        for _, result in run_units(fit_unit, sweep, todo, workers):
            for notice in result.notices:
                progress(notice)
            for fit, message, _seconds in result.fits:
                meter.fitted(fit, message)
    return [fit.path for fit in plan]


def fit_unit(sweep: Sweep, unit: Sequence[PlannedFit], on_fit: Callable[[PlannedFit, str], None] | None = None,
             on_notice: Callable[[str], None] | None = None) -> UnitResult:
    """Fit the methods of one (shots, seed): one subset and one feature read, shared by the methods.

    Each record is written (atomically) as soon as its fit ends. ``on_fit`` / ``on_notice`` report as it goes
    (the serial path); a worker process reports through the returned ``UnitResult`` instead.
    """
    result = UnitResult([], [])
    k, seed = unit[0].shots, unit[0].seed
    source, classes, ablation = sweep.source, sweep.classes, sweep.ablation
    data = few_shot(source, k, seed, sweep.train_views, sweep.subsets_dir)
    short = short_classes(data.y, len(classes), k)
    if short:
        notice = (f"{source.dataset} {k}-shot seed {seed}: {len(short)} class(es) have fewer than {k} train "
                  f"images (e.g. {classes[short[0]]!r}); as CoOp does, all of their images are used")
        result.notices.append(notice)
        if on_notice is not None:
            on_notice(notice)
    for fit in unit:
        method, path, info = fit.method, fit.path, sweep.info
        estimator = make_estimator(method, sweep.text, source.logit_scale, random_state=seed,
                                   ablation=ablation if method == "cmm" else None, device=sweep.device)
        started = time.perf_counter()
        estimator.fit(data.X, data.y, data.X_val, data.y_val, data.X_aug)
        seconds = time.perf_counter() - started
        # -- everything above chose the model on train and val; the test split is read from here on --
        X_test, y_test = sweep.test.get()
        test_top1 = float(estimator.score(X_test, y_test) * 100.0)
        metrics = {"test_top1": test_top1, "val_top1": getattr(estimator, "val_top1_", None)}
        shift = {name: shift_top1(estimator, len(classes), other) for name, other in sweep.shifts.items()}
        if shift:
            metrics["shift"] = shift
        gap, projection = _gap(estimator, X_test, y_test, sweep.text, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_fitted(estimator, path.with_suffix(".npz"), method=method, classes=classes, extra=projection)
        record = {
            "schema": SCHEMA, "dataset": source.dataset, "model": info["model"], "weights": info["weights"],
            "random_weights": bool(info.get("random_weights", False)), "method": method, "method_label": fit.label,
            "ablation": {k_: v for k_, v in (ablation or {}).items() if v} if method == "cmm" else {},
            "shots": k, "seed": seed, "template_set": sweep.template_set, "train_views": sweep.train_views,
            "metrics": metrics, "hyperparameters": getattr(estimator, "hyperparameters_", {}),
            "search": getattr(estimator, "search_", {}),
            "subset": {"source": data.source, "train": data.train.tolist(), "val": data.val.tolist(),
                       "dropped_unreadable": data.dropped},
            "short_classes": [classes[c] for c in short],
            "skipped_images": sweep.skipped,
            "gap": gap, "cache": info["cache"], "versions": sweep.versions,
            "timing": {"fit_seconds": round(seconds, 4)}, "params_file": path.with_suffix(".npz").name,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        _write_json(path, record)
        val = "" if metrics["val_top1"] is None else f" (val {metrics['val_top1']:.1f}%)"
        extra = "".join(f", {name} {acc:.1f}%" for name, acc in shift.items())
        message = f"test {test_top1:.2f}%{val}{extra}, fit {seconds:.2f} s"
        result.fits.append((fit, message, seconds))
        if on_fit is not None:
            on_fit(fit, message)
    return result


class SweepProgress:
    """``[done/total]`` lines with an ETA from the fits finished so far in this process's sweep."""

    def __init__(self, total: int, dataset: str, emit: Callable[[str], None]) -> None:
        self.total, self.dataset, self.emit = total, dataset, emit
        self.done = self.fitted_count = 0
        self.started = time.perf_counter()

    def skipped(self, message: str) -> None:
        """A run whose record already exists."""
        self.done += 1
        self.emit(f"[{self.done}/{self.total}] {message}")

    def fitted(self, fit: PlannedFit, message: str) -> None:
        """A run fitted and written now."""
        self.done += 1
        self.fitted_count += 1
        elapsed = time.perf_counter() - self.started
        left = self.total - self.done
        eta = f", ETA {_duration(elapsed / self.fitted_count * left)}" if left else ""
        self.emit(f"[{self.done}/{self.total}] {fit.label} {self.dataset} {fit.shots}-shot seed {fit.seed}: {message}{eta}")


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _gap(estimator, X_test: np.ndarray, y_test: np.ndarray, text: np.ndarray,
         seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """For methods that map features (CMM): gap measures before and after the map, and the 2-D projection."""
    if not hasattr(estimator, "transform"):
        return {}, {}
    t0 = class_prototypes(text)
    before = l2_normalize(X_test)
    gap = {"before": gap_metrics(before, y_test, t0)}
    after = estimator.transform(X_test)
    gap["after"] = gap_metrics(after, y_test, t0)
    learned = getattr(estimator, "prototypes_", t0)
    gap["after"]["learned_proto_acc"] = float((np.argmax(after @ learned.T, 1) == y_test).mean() * 100.0)
    return gap, joint_projection(before, after, y_test, t0, learned, seed=seed)


def short_classes(y: np.ndarray, n_classes: int, shots: int) -> list[int]:
    """Classes with fewer than ``shots`` few-shot train images (CoOp keeps all of a short class's images)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    return [int(c) for c in np.flatnonzero(counts < shots)]


def _skipped(source) -> dict[str, list[str]]:
    """Paths of images skipped as unreadable at extraction (``--skip-bad``), per split."""
    if not hasattr(source, "skipped_paths"):
        return {}
    skipped = {split: source.skipped_paths(split) for split in getattr(source, "splits", ())}
    return {split: paths for split, paths in skipped.items() if paths}


def _safe(name: str) -> str:
    """A dataset, model or weights id as ONE folder name (hf-hub:org/repo -> hf-hub_org_repo; never ``..``)."""
    safe = "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in str(name))
    return safe if safe.strip(".") else safe.replace(".", "_") or "_"
