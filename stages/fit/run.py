"""Stage two's loop: for every shots x seed x method, sample, fit on train (select on val), score on test.

The test split is read only after a run's estimator is fitted, for its final score; nothing is chosen on it.
Each run writes ``RUNS/<dataset>/<name>/<method_label>/shots<K>_seed<S>.json`` (``stages.shared.record``,
docs/records.md) and the fitted parameters beside it as ``.npz`` (no pickle). Existing records of the same
cache and subset source are skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from cache.lock import WriteLock
from stages.shared.errors import FitError, RecordError
from stages.fit.gap import gap_metrics, joint_projection
from stages.fit.estimator import numpy_threads, top1
from stages.fit.features import class_prototypes, l2_normalize
from stages.fit.methods import cmm_ablation_params, make_estimator, method_label
from stages.fit.metrics import accuracy_metrics
from stages.fit.persist import save_fitted
from stages.fit.source import FeatureSource
from stages.shared.naming import migration_hint
from stages.shared.record import (PARAMS_SUFFIX, TRAIN_VIEWS, RunRecord, older_run_folders, read_record,
                                  record_path, record_text, run_folder, write_record)
from stages.shared.safe_io import remove_stale_temps
from stages.shared.sampling import coop_sample, read_subset, subset_name


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


def usable_positions(source: FeatureSource, split: str) -> np.ndarray:
    """Positions of the split that have a feature."""
    return np.asarray(source.positions(split), dtype=np.int64)


def few_shot(source: FeatureSource, shots: int, seed: int, train_views: str, subsets_dir: Path | None) -> FewShot:
    """Sample (CoOp) or read the subset, then read its train and val features (never test)."""
    train_labels, val_labels = source.split_labels("train"), _val_labels(source)
    if subsets_dir is not None:
        subset = read_subset(Path(subsets_dir) / subset_name(shots, seed), len(train_labels), len(val_labels))
        origin = subset_origin(subsets_dir, shots, seed)
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
    if train_views != "plain":
        X_aug = source.aug_features(train)
        if X_aug is None:
            raise FitError(f"{source.dataset}: --train-views {train_views} needs augmented views in the cache; "
                           "extract them with pipeline extract --aug-views 10")
    return FewShot(train=train, val=val, X=source.features("train", train), y=train_labels[train],
                   X_val=source.features("val", val), y_val=val_labels[val], X_aug=X_aug, source=origin,
                   dropped=dropped)


def bad_positions(source: FeatureSource, split: str) -> np.ndarray:
    """Positions skipped as unreadable at extraction (``--skip-bad``); CoOp's draw keeps them, we drop them."""
    return np.asarray(source.bad_positions(split), dtype=np.int64)


def _val_labels(source: FeatureSource) -> np.ndarray:
    try:
        return source.split_labels("val")
    except Exception as err:  # noqa: BLE001 - the source names what is missing
        raise FitError(f"{source.dataset} has no val split to select hyper-parameters on ({err}); "
                       "extract it (pipeline extract --splits train,val,test)") from None


class LazyTestSplit:
    """Test features, read on first use (after the first fit), then kept for the remaining runs."""

    def __init__(self, source: FeatureSource) -> None:
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
        if len(parents) and parents.max() >= base_classes:
            raise FitError(f"{shifted.dataset}: parent class id {int(parents.max())} is outside the {base_classes} "
                           "classes the model was fitted on; extract it against the right parent dataset")
        return float((parents[logits[:, parents].argmax(1)] == parents[y]).mean() * 100.0)
    if len(shifted.classes) != base_classes:
        raise FitError(f"{shifted.dataset} has {len(shifted.classes)} classes and no mapping onto the "
                       f"{base_classes} classes the model was fitted on")
    return top1(logits, y)


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


def subset_origin(subsets_dir: Path | None, shots: int, seed: int) -> str:
    """Where a run's subset comes from, as kept in its record: ``coop`` or ``file:<name>@<sha256[:12]>``.

    Part of a record's identity: a record made from other subsets is refitted, never reused.
    """
    if subsets_dir is None:
        return "coop"
    path = Path(subsets_dir) / subset_name(shots, seed)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        digest = "missing"  # read_subset names the problem when the subset is read
    return f"file:{path.name}@{digest}"


def _existing(path: Path, key: str, origin: str = "coop") -> bool:
    """A valid record for this run exists, was fitted on the same cache content and from the same subsets."""
    if not path.is_file():
        return False
    try:
        record = read_record(path)
    except RecordError:
        return False
    return (record.cache.get("key") == key and record.subset.get("source") == origin
            and path.with_suffix(PARAMS_SUFFIX).is_file())


@dataclass
class Sweep:
    """What every (shots, seed) unit of a sweep shares; picklable, so that ``--jobs N`` workers get it once."""

    source: FeatureSource
    runs_dir: Path
    info: dict
    text: np.ndarray
    classes: list[str]
    template_set: str
    train_views: str
    subsets_dir: Path | None
    device: str
    force: bool
    skipped: dict[str, list[str]]
    versions: dict[str, str]
    test: LazyTestSplit
    shifts: dict[str, LazyTestSplit]


@dataclass(frozen=True)
class PlannedFit:
    """One (method variant, shots, seed) fit to do, where its record goes and the subset source it is made from."""

    method: str
    label: str
    shots: int
    seed: int
    path: Path
    origin: str
    ablation: tuple[str, ...] = ()  # CMM's ablations in this run (sorted names)


@dataclass
class UnitResult:
    """What a (shots, seed) unit did: its notices, one (fit, message, written) per run it finished, and its seconds."""

    notices: list[str]
    fits: list[tuple[PlannedFit, str, bool]]
    seconds: float = 0.0


def fit_runs(source: FeatureSource, *, methods: Sequence[str], shots: Sequence[int], seeds: Sequence[int],
             runs_dir: Path, template_set: str = "coop", train_views: str = "plain",
             ablations: Sequence[Mapping[str, bool]] | None = None, subsets_dir: Path | None = None,
             eval_sources: dict[str, FeatureSource] | None = None, force: bool = False,
             device: str = "cpu", jobs: int = 1, progress: Callable[[str], None] = print,
             summary: Callable[[str], None] | None = None) -> list[Path]:
    """Fit every (method, shots, seed) on ``source`` and write one record each; returns the record paths.

    ``ablations`` lists the CMM variants to fit in place of plain CMM, each its own run and label (one mapping
    of ablation flags each: ``[{"no_triplet": True}, {"no_triplet": True, "bias": True}]`` is two runs).
    ``jobs`` > 1 fits the (shots, seed) units in that many worker processes (stages/fit/parallel.py), with the
    same records as ``jobs=1``. Every record is written atomically as soon as its fit ends, so an interrupted
    sweep keeps what it finished and a rerun fits only the rest. ``progress`` gets one line per fit with the
    count done and an ETA; ``summary`` (default: ``progress``) one closing line counting the records that
    existed (skipped) and those fitted.
    """
    if train_views not in TRAIN_VIEWS:
        raise FitError(f"train views must be one of {', '.join(TRAIN_VIEWS)}, got {train_views!r}")
    if int(jobs) < 1:
        raise FitError(f"jobs must be at least 1, got {jobs}")
    info = source.describe()
    key = info["cache"]["key"]
    text = source.text_features(template_set)
    classes = list(source.classes)
    if len(classes) < 2:
        raise FitError(f"{source.dataset} has {len(classes)} class(es); classification needs at least 2: "
                       "check the split file's labels")
    if text.shape[0] != len(classes):
        raise FitError(f"{source.dataset}: {text.shape[0]} text prototypes for {len(classes)} classes")
    folder = run_folder(runs_dir, source.dataset, info["model"], info["weights"])
    for old in older_run_folders(folder, info["model"], info["weights"]):
        progress(f"note: {migration_hint(old, folder)} (else its runs are fitted again)")
    for name, other in (eval_sources or {}).items():
        theirs = other.describe()
        if (theirs["model"], theirs["weights"]) != (info["model"], info["weights"]):
            raise FitError(f"--eval-on {name}: its cache was encoded by {theirs['model']} ({theirs['weights']}), "
                           f"not {info['model']} ({info['weights']}); extract it with the same model and weights")
    sweep = Sweep(source=source, runs_dir=Path(runs_dir), info=info, text=text, classes=classes,
                  template_set=template_set, train_views=train_views, subsets_dir=subsets_dir,
                  device=device, force=force, skipped=_skipped(source), versions=versions(),
                  test=LazyTestSplit(source),
                  shifts={name: LazyTestSplit(other) for name, other in (eval_sources or {}).items()})
    variants = [(m, names) for m in methods for names in (_cmm_variants(ablations) if m == "cmm" else [()])]
    labels = {v: method_label(v[0], dict.fromkeys(v[1], True), template_set, train_views) for v in variants}
    plan = [PlannedFit(m, labels[m, names], int(k), int(s),
                       record_path(runs_dir, source.dataset, info["model"], info["weights"], labels[m, names], int(k),
                                   int(s)),
                       subset_origin(subsets_dir, int(k), int(s)), names)
            for k in shots for s in seeds for m, names in variants]
    if folder.is_dir():
        remove_stale_temps(folder)  # temporary files of a sweep that was killed mid-write
    units: dict[tuple[int, int], list[PlannedFit]] = {}
    for fit in plan:
        if force or not _existing(fit.path, key, fit.origin):
            units.setdefault((fit.shots, fit.seed), []).append(fit)
    # largest units first (their cost grows with the shots): the last round of --jobs is then short, not a
    # 16-shot unit that one worker fits while the others idle, and the ETA's first figures are upper bounds
    todo = sorted(units.values(), key=lambda unit: -unit[0].shots)
    workers = min(int(jobs), len(todo))
    meter = SweepProgress(len(plan), source.dataset, progress, [fit for unit in todo for fit in unit], workers)
    if workers <= 1:
        for unit in todo:
            result = fit_unit(sweep, unit, on_fit=meter.finished, on_notice=progress)
            meter.unit_finished(unit[0].shots, len(unit), result.seconds)
    else:
        from stages.fit.parallel import run_units

        progress(f"{sum(map(len, todo))} fit(s) in {workers} worker processes")
        for index, result in run_units(fit_unit, sweep, todo, workers):
            for notice in result.notices:
                progress(notice)
            meter.unit_finished(todo[index][0].shots, len(todo[index]), result.seconds)
            for fit, message, written in result.fits:
                meter.finished(fit, message, written)
    records = "record exists" if meter.existing == 1 else "records exist"
    counts = f"{meter.existing} {records}, skipped; {meter.fitted} fitted" if meter.existing else f"{meter.fitted} fitted"
    (summary or progress)(f"{counts} (under {folder})")
    return [fit.path for fit in plan]


def fit_unit(sweep: Sweep, unit: Sequence[PlannedFit],
             on_fit: Callable[[PlannedFit, str, bool], None] | None = None,
             on_notice: Callable[[str], None] | None = None) -> UnitResult:
    """Fit the methods of one (shots, seed): one subset and one feature read, shared by the methods.

    Each record is written (atomically, the .npz and .json as a pair under a lock) as soon as its fit ends.
    ``on_fit`` / ``on_notice`` report as it goes (the serial path); a worker process reports through the
    returned ``UnitResult`` instead.
    """
    started_unit = time.perf_counter()
    result = UnitResult([], [])
    k, seed = unit[0].shots, unit[0].seed
    source, classes, info = sweep.source, sweep.classes, sweep.info
    data = few_shot(source, k, seed, sweep.train_views, sweep.subsets_dir)
    short = short_classes(data.y, len(classes), k)
    if short:
        notice = (f"{source.dataset} {k}-shot seed {seed}: {len(short)} class(es) have fewer than {k} train "
                  f"images (e.g. {classes[short[0]]!r}); as CoOp does, all of their images are used")
        result.notices.append(notice)
        if on_notice is not None:
            on_notice(notice)
    for fit in unit:
        method, path = fit.method, fit.path
        estimator = make_estimator(method, sweep.text, source.logit_scale, random_state=seed,
                                   ablation=dict.fromkeys(fit.ablation, True), device=sweep.device,
                                   dataset=source.dataset, train_views=sweep.train_views)
        started = time.perf_counter()
        with numpy_threads():  # numpy's share of the fit; each method sets torch's threads for its own passes
            estimator.fit(data.X, data.y, data.X_val, data.y_val, data.X_aug)
        seconds = time.perf_counter() - started
        # -- everything above chose the model on train and val; the test split is read from here on --
        X_test, y_test = sweep.test.get()
        with numpy_threads():
            metrics = accuracy_metrics(estimator.decision_function(X_test), y_test, len(classes))
            shift = {name: shift_top1(estimator, len(classes), other) for name, other in sweep.shifts.items()}
            gap, projection = _gap(estimator, X_test, y_test, sweep.text)
        test_top1 = metrics["test_top1"]
        metrics["val_top1"] = getattr(estimator, "val_top1_", None)
        if shift:
            metrics["shift"] = shift
        record = RunRecord(
            dataset=source.dataset, model=info["model"], weights=info["weights"],
            random_weights=bool(info.get("random_weights", False)), method=method, method_label=fit.label,
            ablation=dict.fromkeys(fit.ablation, True),
            shots=k, seed=seed, template_set=sweep.template_set, train_views=sweep.train_views,
            metrics=metrics, hyperparameters=getattr(estimator, "hyperparameters_", {}),
            search=getattr(estimator, "search_", {}),
            subset={"source": data.source, "train": data.train.tolist(), "val": data.val.tolist(),
                    "dropped_unreadable": data.dropped},
            short_classes=[classes[c] for c in short],
            skipped_images=sweep.skipped,
            gap=gap, cache=info["cache"], versions=sweep.versions,
            timing={"fit_seconds": round(seconds, 4)}, params_file=path.with_suffix(PARAMS_SUFFIX).name,
            created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        text_record = record_text(record)  # before any file is written: a bad value leaves no orphan .npz
        with WriteLock(path, wait=None):  # the .npz and .json of one run are written as a pair
            if not sweep.force and _existing(path, info["cache"]["key"], fit.origin):
                message, written = f"written meanwhile by another process, kept ({path})", False
            else:
                save_fitted(estimator, path.with_suffix(PARAMS_SUFFIX), method=method, classes=classes,
                            extra=projection)
                write_record(path, record, text=text_record)
                val = "" if metrics["val_top1"] is None else f" (val {metrics['val_top1']:.1f}%)"
                extra = "".join(f", {name} {acc:.1f}%" for name, acc in shift.items())
                message, written = f"test {test_top1:.2f}%{val}{extra}, fit {seconds:.2f} s", True
        result.fits.append((fit, message, written))
        if on_fit is not None:
            on_fit(fit, message, written)
    result.seconds = time.perf_counter() - started_unit
    return result


class SweepProgress:
    """``[done/total]`` lines, with an ETA once a (shots, seed) unit has finished.

    A fit's cost grows with its shots and differs by method, and ``--jobs`` workers report a whole unit at once
    after their start-up, so an ETA from the first fit alone is far off (20 minutes for a sweep of 37 s: one
    worker's start-up and 16-shot unit, times every fit left). The ETA sums, over the fits still to do, the
    measured seconds per fit of the units of the same shots (else of the nearest larger shots measured: units
    run largest first, so that is an upper bound), shared among the workers.
    """

    def __init__(self, total: int, dataset: str, emit: Callable[[str], None], todo: Sequence[PlannedFit] = (),
                 workers: int = 1) -> None:
        """``total`` runs, of which ``todo`` are to fit (the others' records exist) by ``workers`` processes."""
        self.total, self.dataset, self.emit, self.workers = total, dataset, emit, max(1, int(workers))
        self.done = self.existing = total - len(todo)
        self.fitted = 0
        self.left = Counter(fit.shots for fit in todo)  # shots -> fits still to do
        self.cost: dict[int, tuple[float, int]] = {}    # shots -> (seconds, fits) of the finished units

    def unit_finished(self, shots: int, fits: int, seconds: float) -> None:
        """A unit of ``fits`` fits at ``shots`` took ``seconds`` (in its process)."""
        spent, count = self.cost.get(shots, (0.0, 0))
        self.cost[shots] = (spent + seconds, count + fits)

    def finished(self, fit: PlannedFit, message: str, written: bool = True) -> None:
        """A run fitted now (``written``), or found written meanwhile by another process."""
        self.done += 1
        self.left[fit.shots] = max(0, self.left[fit.shots] - 1)
        if written:
            self.fitted += 1
        else:
            self.existing += 1
        eta = self.eta()
        eta = f", ETA {_duration(eta)}" if eta is not None and self.done < self.total else ""
        self.emit(f"[{self.done}/{self.total}] {fit.label} {self.dataset} {fit.shots}-shot seed {fit.seed}: "
                  f"{message}{eta}")

    def eta(self) -> float | None:
        """Seconds the fits still to do should take, or None before a unit has finished."""
        if not self.cost:
            return None
        measured = sorted(self.cost)
        seconds = 0.0
        for shots, count in self.left.items():
            nearest = next((k for k in measured if k >= shots), measured[-1])
            spent, fits = self.cost[nearest]
            seconds += count * spent / fits
        return seconds / self.workers


def _cmm_variants(ablations: Sequence[Mapping[str, bool]] | None) -> list[tuple[str, ...]]:
    """The sorted ablation names of each CMM run asked for, once each; plain CMM (``()``) when none.

    Unknown or removed ablations are refused here, before any fit."""
    variants = [tuple(sorted(name for name, on in flags.items() if on)) for flags in (ablations or [{}])]
    for names in variants:
        cmm_ablation_params(dict.fromkeys(names, True))
    return list(dict.fromkeys(variants))


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _gap(estimator, X_test: np.ndarray, y_test: np.ndarray, text: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
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
    return gap, joint_projection(before, after, y_test, t0, learned)


def short_classes(y: np.ndarray, n_classes: int, shots: int) -> list[int]:
    """Classes with fewer than ``shots`` few-shot train images (CoOp keeps all of a short class's images)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    return [int(c) for c in np.flatnonzero(counts < shots)]


def _skipped(source: FeatureSource) -> dict[str, list[str]]:
    """Paths of images skipped as unreadable at extraction (``--skip-bad``), per split."""
    skipped = {split: source.skipped_paths(split) for split in source.splits}
    return {split: paths for split, paths in skipped.items() if paths}
