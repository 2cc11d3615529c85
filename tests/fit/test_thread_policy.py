"""The fit's thread policy: one thread for small passes, never more than usable or idle cores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from stages.fit import estimator
from stages.fit.estimator import SMALL_WORK, cpu_threads_for, free_cores, numpy_threads, threads_for
from stages.fit.parallel import usable_cores


@pytest.fixture(autouse=True)
def fresh_sample(monkeypatch):
    monkeypatch.setattr(estimator, "_last_sample", None)
    monkeypatch.setattr(estimator, "_last_reading", None)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_small_passes_run_on_one_thread_and_the_setting_is_restored():
    torch.set_num_threads(2)
    with cpu_threads_for(SMALL_WORK / 10, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_never_more_threads_than_usable_cores():
    torch.set_num_threads(usable_cores() + 6)
    assert 1 <= threads_for(1000 * SMALL_WORK, "cpu") <= usable_cores()
    with cpu_threads_for(1000 * SMALL_WORK, "cpu"):
        assert torch.get_num_threads() <= usable_cores()
    assert torch.get_num_threads() == usable_cores() + 6


def test_busy_cores_get_one_thread():
    """With every usable core kept busy by other processes, a large pass still gets one thread."""
    spin = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(usable_cores())]
    try:
        import time

        time.sleep(0.3)
        torch.set_num_threads(max(2, usable_cores()))
        assert free_cores() < usable_cores() - 0.5
        estimator._last_sample = estimator._last_reading = None
        assert threads_for(1000 * SMALL_WORK, "cpu") < max(2, usable_cores()) or usable_cores() == 1
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_other_devices_keep_the_configured_threads():
    torch.set_num_threads(2)
    assert threads_for(1.0, "cuda") == 2


def test_a_large_cmm_fit_gives_the_same_bits_on_one_and_on_two_threads(monkeypatch):
    """Why ``fit --jobs N`` (one thread per worker) writes the records of ``--jobs 1`` (several threads)."""
    from stages.fit.cmm import CMMClassifier
    from stages.fit.synthetic import make_clip_like

    source = make_clip_like(n_classes=100, dim=512, train_per_class=16, val_per_class=4, test_per_class=2, seed=0)
    (X, y), (Xv, yv), (Xt, _) = source.image["train"], source.image["val"], source.image["test"]
    monkeypatch.setattr(estimator, "free_cores", lambda: 2.0)  # as on an idle machine, whatever the load now
    logits, used = [], []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cmm = CMMClassifier(source.text["coop"], source.logit_scale, steps=24, grid={"lr": [1e-3]}, random_state=1)
        used.append(threads_for(20 * 256 * 512 * (512 + 100), "cpu"))  # what CMM asks for at this size
        cmm.fit(X, y, Xv, yv)
        logits.append(cmm.decision_function(Xt))
    assert used == [1, min(2, usable_cores())]
    np.testing.assert_array_equal(logits[0], logits[1])


def test_numpy_blas_follows_the_idle_cores_and_is_restored(monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy has no BLAS pool that threadpoolctl can see"
    torch.set_num_threads(2)
    monkeypatch.setattr(estimator, "free_cores", lambda: 0.0)  # every core busy with other processes
    with numpy_threads():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
    monkeypatch.setattr(estimator, "free_cores", lambda: float(usable_cores()))  # an idle machine
    with numpy_threads():
        assert set(blas_threads()) == {min(2, usable_cores())}
    torch.set_num_threads(1)  # as in a fit --jobs worker
    with numpy_threads():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_the_load_is_read_without_waiting_when_a_recent_reading_exists(monkeypatch):
    free_cores()  # the first reading waits one window
    estimator._last_sample = None  # as if the cached answer had expired
    slept = []
    monkeypatch.setattr(estimator.time, "sleep", slept.append)
    estimator._last_reading = (estimator._last_reading[0] - 0.5, *estimator._last_reading[1:])  # 0.5 s old
    assert 0.0 <= free_cores() <= usable_cores() and slept == []
