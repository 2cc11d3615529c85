"""What every estimator (CMM and the baselines) shares: input checks, the thread policy, top-1 accuracy, and
predict / predict_proba from logits."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import ClassifierMixin

from stages.shared.errors import FitError
from stages.fit.features import class_prototypes, softmax


#: how an estimator turns the cached augmented views into training rows (``FitData.training_rows``)
ROW_POLICIES = ("shots_and_views", "views", "one_view", "shots")
#: an estimator's ``views`` parameter: the project's use of the views (``aug``) or its released code's
VIEW_USES = ("aug", "released")


@dataclass
class FitData:
    """Checked fit inputs: T0 (C, D), raw X (n, D) float32, y (n,) int64, optional val and views."""

    T0: np.ndarray
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_aug: np.ndarray | None

    @property
    def has_val(self) -> bool:
        """True when validation data were given (the only data hyper-parameters may be chosen on)."""
        return self.X_val is not None

    def training_rows(self, rows: str = "shots_and_views", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(raw features, labels) to train on; without views, the shots. With views (``X_aug``), by ``rows``:

        ``shots_and_views``: the shots, then each view as extra rows (the project's ``--train-views aug``);
        ``views``: each view as a sample, the plain shots left out (GDA's and ProKeR's released code);
        ``one_view``: one view per image, drawn with ``seed`` (LP++'s released code: one augmented pass);
        ``shots``: the shots only, the views ignored (the CLIP paper's linear probe).
        """
        if rows not in ROW_POLICIES:
            raise FitError(f"training rows must be one of {', '.join(ROW_POLICIES)}, got {rows!r}")
        if self.X_aug is None or rows == "shots":
            return self.X, self.y
        if rows == "views":
            return self.X_aug.reshape(-1, self.X.shape[1]), np.tile(self.y, len(self.X_aug))
        if rows == "one_view":
            pick = np.random.default_rng(seed).integers(len(self.X_aug), size=len(self.X))
            return self.X_aug[pick, np.arange(len(self.X))], self.y
        return (np.concatenate([self.X, self.X_aug.reshape(-1, self.X.shape[1])]),
                np.concatenate([self.y] * (1 + len(self.X_aug))))


def view_rows(name: str, views: str, released: str) -> str:
    """The ``FitData.training_rows`` policy of an estimator's ``views`` parameter: ``aug`` -> the shots and
    every view; ``released`` -> ``released``, what the method's released code trains on."""
    if views not in VIEW_USES:
        raise FitError(f"{name}: views must be one of {', '.join(VIEW_USES)}, got {views!r}")
    return "shots_and_views" if views == "aug" else released


def _check_labels(name: str, what: str, y: np.ndarray, n_rows: int, n_classes: int) -> None:
    if y.ndim != 1 or len(y) != n_rows:
        raise FitError(f"{name}: {what} labels have shape {y.shape}, expected ({n_rows},), one per feature row")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise FitError(f"{name}: {what} labels must be class indices in [0, {n_classes}), "
                       f"got values in [{y.min()}, {y.max()}]")


def check_fit_inputs(name: str, prototypes: np.ndarray | None, X: np.ndarray, y: np.ndarray,
                     X_val: np.ndarray | None, y_val: np.ndarray | None,
                     X_aug: np.ndarray | None) -> FitData:
    """Validate shapes and labels once, so that each estimator fails with one clear line."""
    if prototypes is None:
        raise FitError(f"{name} needs prototypes= (C x D or C x L x D raw text features)")
    T0 = class_prototypes(prototypes)
    n_classes, dim = T0.shape
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or X.shape[1] != dim:
        raise FitError(f"{name}: image features have shape {X.shape}, text prototypes have D={dim}")
    if len(X) == 0:
        raise FitError(f"{name}: no training features; sample at least one shot per class")
    _check_labels(name, "train", y, len(X), n_classes)
    if (X_val is None) != (y_val is None):
        raise FitError(f"{name}: give both X_val and y_val, or neither")
    if X_val is not None:
        X_val = np.asarray(X_val, dtype=np.float32)
        y_val = np.asarray(y_val, dtype=np.int64)
        if X_val.ndim != 2 or X_val.shape[1] != dim:
            raise FitError(f"{name}: val features have shape {X_val.shape}, text prototypes have D={dim}")
        _check_labels(name, "val", y_val, len(X_val), n_classes)
        if len(X_val) == 0:
            X_val = y_val = None
    if X_aug is not None:
        X_aug = np.asarray(X_aug, dtype=np.float32)
        if X_aug.ndim != 3 or X_aug.shape[1:] != X.shape or len(X_aug) == 0:
            raise FitError(f"{name}: augmented views have shape {X_aug.shape}, expected (V, {len(X)}, {dim}) "
                           f"views of the train features; pass X_aug=None for plain training")
    return FitData(T0, X, y, X_val, y_val, X_aug)


#: below this many multiply-adds per pass (one loss evaluation, training step or val scoring), one CPU
#: thread: thread hand-offs cost ~1 ms each, and far more when the cores are shared (measured on 2 busy
#: cores: Tip-Adapter-F at 100 classes 1.9 s on one thread, 10.3 s on two).
SMALL_WORK = 1_000_000_000
#: how long the CPU counters are sampled to tell how many cores other processes keep busy, and how long
#: that answer is reused (a fit's grid points ask again and again within a second).
SAMPLE_SECONDS = 0.05
SAMPLE_REUSE_SECONDS = 1.0
#: the previous /proc/stat reading serves as the start of the next window up to this age (a sweep asks every
#: second or so, so it rarely has to wait for a fresh window).
READING_MAX_AGE = 5.0
_last_sample: tuple[float, float] | None = None  # (monotonic time, free cores)
_last_reading: tuple[float, dict, float] | None = None  # (monotonic time, per-CPU ticks, own CPU seconds)


@contextmanager
def cpu_threads_for(work: float, device: str) -> Iterator[None]:
    """Run a CPU problem on ``threads_for(work, device)`` torch threads (restored afterwards).

    Small tensors spend more time waking threads than computing (measured: a 160 x 10 cross-entropy takes
    0.3 ms on one thread, 1-4 ms on two), which made small fits 10-100 times slower.
    """
    previous = torch.get_num_threads()
    wanted = threads_for(work, device)
    change = torch.device(device).type == "cpu" and wanted != previous
    if change:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)


@contextmanager
def numpy_threads() -> Iterator[None]:
    """Run numpy's BLAS (scoring, gap measures, CMM's candidate logits, GDA) on ``idle_threads()`` threads.

    Left alone, OpenBLAS keeps one thread per core whatever the load, and under one competing process its
    threads wait for each other at every barrier (issue 14). No floor for small problems here: OpenBLAS
    already runs small products on one thread. Restored afterwards.
    """
    with _blas_pools().limit(limits=idle_threads()):
        yield


_BLAS_POOLS = None


def _blas_pools():
    """numpy's BLAS thread pools, found once per process (threadpoolctl: a dependency of scikit-learn)."""
    global _BLAS_POOLS
    if _BLAS_POOLS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_POOLS = ThreadpoolController().select(user_api="blas")
    return _BLAS_POOLS


def threads_for(work: float, device: str) -> int:
    """Intra-op threads for a CPU pass of ``work`` multiply-adds: several only where they pay off.

    One thread below ``SMALL_WORK``; above it, ``idle_threads()``. Thread counts do not change the
    results here (torch's CPU kernels split rows, not sums, across threads: checked bit for bit for CMM,
    Tip-Adapter-F and the linear probe at 200 classes).
    """
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    if work < SMALL_WORK:
        return 1
    return idle_threads()


def idle_threads() -> int:
    """As many threads as torch is configured for, but never more than the cores this process may use (its
    affinity mask) nor more than are idle now: a thread that shares its core with another busy process is
    descheduled for whole time slices, and every other thread waits for it at each barrier, which made fits
    5-10x slower under one competing job (issue 14). Inside ``fit --jobs N`` workers torch is set to one
    thread, so this always answers 1 there."""
    configured = torch.get_num_threads()
    if configured <= 1:
        return 1
    from stages.fit.parallel import usable_cores

    cap = min(configured, usable_cores())
    if cap <= 1:
        return 1
    return max(1, min(cap, int(free_cores() + 0.5)))


def free_cores() -> float:
    """Cores of this process's affinity mask not kept busy by OTHER processes, over the recent past.

    Read from /proc/stat (Linux): the CPU time since the previous reading when that is between
    ``SAMPLE_SECONDS`` and ``READING_MAX_AGE`` old (no waiting), else over a fresh ``SAMPLE_SECONDS`` window.
    Where /proc/stat cannot be read, every usable core counts as free.
    """
    global _last_sample, _last_reading
    now = time.monotonic()
    if _last_sample is not None and now - _last_sample[0] < SAMPLE_REUSE_SECONDS:
        return _last_sample[1]
    from stages.fit.parallel import usable_cores

    cores = usable_cores()
    try:
        cpus = sorted(os.sched_getaffinity(0))
        reading = (now, _cpu_times(cpus), _own_cpu_seconds())
        base = _last_reading
        if base is None or set(base[1]) != set(cpus) or not SAMPLE_SECONDS <= now - base[0] <= READING_MAX_AGE:
            time.sleep(SAMPLE_SECONDS)
            base, reading = reading, (time.monotonic(), _cpu_times(cpus), _own_cpu_seconds())
    except (OSError, AttributeError, ValueError):
        return float(cores)
    (_, before, own_before), (_, after, own_after) = base, reading
    busy = 0.0
    for cpu in cpus:
        (busy_a, total_a), (busy_b, total_b) = before[cpu], after[cpu]
        if total_b > total_a:
            busy += (busy_b - busy_a) / (total_b - total_a)
    ticks = os.sysconf("SC_CLK_TCK")
    window = max(1e-9, sum(after[c][1] - before[c][1] for c in cpus) / max(1, len(cpus)) / ticks)
    own = (own_after - own_before) / window
    free = max(0.0, min(float(cores), cores - max(0.0, busy - own)))
    _last_sample, _last_reading = (now, free), reading
    return free


def _cpu_times(cpus: list[int]) -> dict[int, tuple[int, int]]:
    """(busy ticks, all ticks) per CPU from /proc/stat."""
    wanted, out = {f"cpu{c}": c for c in cpus}, {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name in wanted:
                ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                idle = ticks[3] + ticks[4]
                out[wanted[name]] = (sum(ticks) - idle, sum(ticks))
    if set(out) != set(cpus):
        raise ValueError("CPUs missing from /proc/stat")
    return out


def _own_cpu_seconds() -> float:
    """CPU seconds used by this process so far (all its threads)."""
    times = os.times()
    return times.user + times.system


def top1(logits: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Top-1 accuracy in percent of (n, C) logits (numpy or torch) against labels: what every search maximises."""
    if isinstance(logits, torch.Tensor):
        return float((logits.argmax(1) == torch.as_tensor(y, device=logits.device)).double().mean()) * 100.0
    return float(np.mean(np.asarray(logits).argmax(1) == np.asarray(y))) * 100.0


class LogitsClassifierMixin(ClassifierMixin):
    """predict / predict_proba on top of a subclass's ``decision_function`` (logits)."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax of the logits."""
        return softmax(np.asarray(self.decision_function(X), dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class index with the highest logit."""
        return self.classes_[np.asarray(self.decision_function(X)).argmax(1)]
