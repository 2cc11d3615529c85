"""Run independent units of a fit sweep in worker processes, one torch thread each.

Workers start from a clean interpreter (``forkserver`` where the platform has it, else ``spawn``), never by a
plain ``fork`` of the parent, so no HDF5 handle, OpenMP pool or lock crosses into them; the cache reader opens
its file lazily in each worker. The shared context (feature source, text features, options) is sent once per
worker, the units one by one. Each worker watches the sweep's process and exits when it ends, however it ends
(a SIGKILL included): a worker's parent is the forkserver, not the sweep, so the kernel's parent-death signal
would not reach it, and an idle worker holds its own end of the task queue, so it would wait forever. With
the workers gone the forkserver sees its last client leave and exits too: a killed sweep leaves no process.

No child imports from the working folder: the forkserver, spawned workers and multiprocessing's resource
tracker start as ``python -c ...``, which puts the working folder first on ``sys.path``, so a ``cache/``
folder (as ``--cache-dir cache`` makes) or a ``stages.py``, ``numpy.py`` or ``torch.py`` there would be
imported, and run, in place of ours. They start with ``PYTHONSAFEPATH=1`` (Python 3.11+), which leaves it off.

Ctrl-C reaches every process of the terminal's group; the sweep alone reports it (exit 130, one line). The
workers are started with SIGINT held back in the sweep, so the forkserver and the workers inherit it blocked:
the forkserver's preload (torch, seconds) is never cut short with a traceback, and no worker is left half
started, failing to open the semaphores of a sweep that has already exited; a Ctrl-C meanwhile takes effect as
soon as the workers run. A running worker ends at once, silently, on SIGINT (records are written whole or not
at all), and the sweep ends any it did not reach. A sweep killed outright leaves its pool's semaphores to the
resource tracker, which removes them; its "leaked semaphore" warning, which names nothing the user can act on,
is silenced in the tracker alone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from stages.shared.errors import FitError

_CONTEXT: Any = None
_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"  # its "There appear to be N leaked semaphore objects"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_units(unit_fn: Callable[[Any, Any], Any], context: Any, units: Sequence[Any],
              jobs: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, unit_fn(context, units[index]))`` as each unit finishes, on ``jobs`` worker processes.

    ``unit_fn`` must be a module-level function (workers import it by name). When a unit raises, the units
    already running are let finish (their results are complete and already written by ``unit_fn``), the rest
    are cancelled and the error is raised here.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    mp_context = multiprocessing.get_context(method)
    if method == "forkserver":  # import once in the server, not in every worker (the first optimiser of a
        # process imports torch._dynamo: about 1.4 s per worker otherwise)
        mp_context.set_forkserver_preload(["torch", "torch._dynamo", unit_fn.__module__])
    with safe_child_path():
        yield from _run_pool(mp_context, unit_fn, context, units, jobs)


@contextlib.contextmanager
def safe_child_path() -> Iterator[None]:
    """Python interpreters started meanwhile leave the working folder off their import path, and the
    resource tracker says nothing of the semaphores of a killed sweep that it removes."""
    before = {name: os.environ.get(name) for name in ("PYTHONSAFEPATH", "PYTHONWARNINGS")}
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [before["PYTHONWARNINGS"], _QUIET_TRACKER]))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Ctrl-C held back meanwhile, then raised as KeyboardInterrupt: blocked in this thread, so the processes
    it starts inherit SIGINT blocked, and recorded if another thread of this process receives it."""
    pressed: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum)) if main else None
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one pending for this thread is recorded
        if main:  # (None: a handler not set from Python)
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
        if pressed:
            raise KeyboardInterrupt


def _run_pool(mp_context: Any, unit_fn: Callable[[Any, Any], Any], context: Any, units: Sequence[Any],
              jobs: int) -> Iterator[tuple[int, Any]]:
    try:  # starts the resource tracker, which unblocks SIGINT in the thread that starts it: before the block below
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp_context, initializer=_start_worker,
                                   initargs=(context, os.getpid()))
    except OSError as exc:  # its semaphores are files in /dev/shm: full, or past a file-size limit
        raise FitError(f"cannot start {jobs} fit worker processes: creating their semaphores in /dev/shm failed "
                       f"({exc.strerror or exc}); free space there, or use --jobs 1") from None
    try:
        with sigint_held():  # the forkserver and the workers start here, and inherit the block
            pending = {pool.submit(_run_unit, unit_fn, unit): index for index, unit in enumerate(units)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise FitError("a fit worker process died (out of memory or killed?); finished records are "
                                   "kept: rerun the same command to fit the rest, or use --jobs 1") from None
                yield index, result
    except KeyboardInterrupt:
        for worker in multiprocessing.active_children():  # those the Ctrl-C did not reach: started after it
            worker.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(context: Any, sweep_pid: int) -> None:
    """Worker set-up: keep the shared context, one intra-op torch thread, end with the sweep's process, and
    at once on Ctrl-C (SIGINT, blocked while the worker started, ends it silently; the sweep reports it)."""
    global _CONTEXT
    _CONTEXT = context
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with(sweep_pid)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # libraries loaded from now on
        os.environ[name] = "1"
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started: harmless
        pass
    try:  # numpy's BLAS (scoring, gap measures) was loaded before: limit its pool too
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def _run_unit(unit_fn: Callable[[Any, Any], Any], unit: Any) -> Any:
    return unit_fn(_CONTEXT, unit)


def _exit_with(pid: int) -> None:
    """End this process as soon as process ``pid`` ends: a daemon thread waits on a pidfd (Linux), else polls.

    Exiting mid-fit is safe: records are written whole or not at all (temporary names, then a rename).
    """
    if not _alive(pid):
        os._exit(1)
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll once a second
        handle = None

    def wait_then_exit() -> None:
        if handle is not None:
            select.select([handle], [], [])  # readable once the process has ended (a zombie counts as ended)
        else:
            while _alive(pid):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=wait_then_exit, name="exit-with-sweep", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True
