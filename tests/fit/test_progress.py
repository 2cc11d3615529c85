"""The sweep's progress lines: an ETA near the truth from the first one on, also when --jobs workers report whole
units at once after their start-up (issue 21: a first ETA of 20 minutes for a sweep of 37 s)."""

from __future__ import annotations

import heapq
import re
from pathlib import Path

from stages.fit.run import PlannedFit, SweepProgress, fit_runs
from stages.fit.synthetic import make_clip_like

METHODS = 7


def _eta_seconds(line: str) -> float | None:
    found = re.search(r"ETA (?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", line)
    if found is None:
        return None
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def _simulated_sweep(workers: int, start_up: float, unit_seconds) -> list[tuple[float, float | None]]:
    """(true seconds left, ETA shown) for each progress line of a sweep of 5 shots x 3 seeds x 7 methods whose
    units cost ``unit_seconds(shots)`` in a worker, as fit_runs reports them (largest shots first)."""
    units = [(shots, seed) for shots in (16, 8, 4, 2, 1) for seed in (1, 2, 3)]
    fits = [PlannedFit(f"m{m}", f"m{m}", shots, seed, Path("x.json"), "coop") for shots, seed in units
            for m in range(METHODS)]
    lines: list[str] = []
    meter = SweepProgress(len(fits), "toy", lines.append, fits, workers)
    free = [start_up] * workers
    done = []
    for shots, seed in units:  # each unit goes to the worker free first
        start = heapq.heappop(free)
        heapq.heappush(free, start + unit_seconds(shots))
        done.append((start + unit_seconds(shots), shots, seed))
    end = max(t for t, _, _ in done)
    shown = []
    for when, shots, seed in sorted(done):
        meter.unit_finished(shots, METHODS, unit_seconds(shots))
        for fit in (f for f in fits if (f.shots, f.seed) == (shots, seed)):
            meter.finished(fit, "test 50.00%")
            shown.append((end - when, _eta_seconds(lines[-1])))
    return shown


def test_the_first_eta_of_a_parallel_sweep_is_near_the_truth():
    """Two workers, 5 s of start-up, units of 1.5 s + 0.1 s per shot: every ETA in the first half of the sweep
    is within a factor of 2.5 of the time actually left (from the first line on; the fallback to the cost of
    larger units makes the early figures upper bounds)."""
    shown = _simulated_sweep(workers=2, start_up=5.0, unit_seconds=lambda shots: 1.5 + 0.1 * shots)
    first_left, first_eta = shown[0]
    assert first_eta is not None
    total = first_left
    for left, eta in shown:
        if left >= total / 2:
            assert eta is not None and left / 2.5 <= eta <= left * 2.5, (left, eta)


def test_a_serial_sweep_shows_an_eta_once_its_first_unit_is_done(tmp_path):
    source = make_clip_like(n_classes=5, dim=16, train_per_class=6, val_per_class=2, test_per_class=4, seed=1)
    lines: list[str] = []
    fit_runs(source, runs_dir=tmp_path, methods=["zero_shot", "cmm"], shots=[1, 2], seeds=[1, 2], jobs=1,
             progress=lines.append)
    fitted = [line for line in lines if line.startswith("[")]
    assert len(fitted) == 8
    assert [line.split("]")[0] for line in fitted] == [f"[{i}/8" for i in range(1, 9)]
    assert "2-shot" in fitted[0] and "1-shot" in fitted[-1]  # largest shots first
    assert "ETA" not in fitted[0] and "ETA" not in fitted[1]  # the first unit measures the cost
    assert all(_eta_seconds(line) is not None for line in fitted[2:-1]) and "ETA" not in fitted[-1]
