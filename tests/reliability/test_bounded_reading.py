"""Third pass, bounded reading (issue 22, items 4, 5 and 8): crafted caches and fitted files, a FIFO given to
predict, a full disk under fit, Ctrl-C while a ``fit --jobs 2`` starts.

The crafted files go through every command that reads them in real child processes under a memory cap
(``RLIMIT_DATA``, as the fuzz child): ``cli_child.py`` runs info, fit, extract, predict and report through the
real CLI for all cases in one process, and the headline cases also run as their own ``pipeline`` process.
Each case asserts the exit code, the one error line, and that no file changed.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from tests.conftest import class_image, write_coop_dataset
from tests.fit.test_parallel import descendants, running
from tests.reliability import crafted_npz as npz
from tests.reliability.conftest import CLASSES
from tests.reliability.helpers import (CACHE_NAME, ROOT, assert_same_content, error_line, extract_args, run_cli,
                                       sha256, snapshot, spawn)
from tests.reliability.test_disk_full import limited

MEMORY_CAP = 2 * 1024**3
GIB3 = 3 * 1024**3


def capped() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its digest."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> SimpleNamespace:
    """A cache of the 3-class dataset, a CMM and a linear-probe run on it, and an image to classify."""
    root = tmp_path_factory.mktemp("bounded")
    split = write_coop_dataset(root / "small", CLASSES, {"train": 4, "val": 1, "test": 2})
    assert run_cli(*extract_args(split, root / "cache")).exit_code == 0
    cache = root / "cache" / CACHE_NAME
    fit = run_cli("fit", "--cache", str(cache), "--runs-dir", str(root / "runs"), "--shots", "1", "--seeds", "1",
                  "--method", "cmm,linear_probe")
    assert fit.exit_code == 0, fit.output
    class_image(1, 7).save(root / "x.png")
    (record,) = (root / "runs").rglob("cmm/shots1_seed1.json")
    return SimpleNamespace(root=root, split=split, cache=cache, runs=root / "runs", record=record,
                           image=root / "x.png")


def run_in_child(jobs: list[list[str]], work: Path) -> list[dict]:
    """Run each job through the real CLI in one capped child process (tests/reliability/cli_child.py)."""
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    child = subprocess.run([sys.executable, "-m", "tests.reliability.cli_child", str(work / "jobs.json")], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=900, preexec_fn=capped)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def predictions(output: str, image: Path) -> list[str]:
    """The lines of predict's output that classify ``image`` (log lines left out)."""
    found = [line for line in output.splitlines() if line.startswith(f"{image}: ")]
    assert found, output
    return found


def one_line(result: dict, code: int) -> str:
    """The one error line of a job that ended with ``code`` (no traceback, no escaped exception)."""
    assert result["exception"] is None and result["exit_code"] == code, result
    return error_line(result["output"])


# -- crafted caches (item 5) ------------------------------------------------------------------------------
def _replace(name: str, make):
    def damage(f: h5py.File, folder: Path) -> None:
        attrs = dict(f[name].attrs)
        del f[name]
        make(f, name, folder)
        if isinstance(f.get(name, getlink=True), h5py.HardLink):
            for key, value in attrs.items():
                f[name].attrs[key] = value
    return damage


def _virtual(f: h5py.File, name: str, folder: Path) -> None:
    layout = h5py.VirtualLayout(shape=(6, 32), dtype="f4")
    layout[:] = h5py.VirtualSource(str(folder / "missing.h5"), "x", shape=(6, 32))
    f.create_virtual_dataset(name, layout, fillvalue=0)


def _link_into_copy(f: h5py.File, name: str, folder: Path) -> None:
    shutil.copy(f.filename, folder / "other.h5")
    f[name] = h5py.ExternalLink(str(folder / "other.h5"), "/" + name)


def _soft_loop(f: h5py.File, name: str, folder: Path) -> None:
    f[name] = h5py.SoftLink("/text/coop/loop")
    f["text/coop/loop"] = h5py.SoftLink("/" + name)


def _some_chunks(f: h5py.File, name: str, folder: Path) -> None:
    f.create_dataset(name, shape=(6, 32), dtype="f4", chunks=(1, 32))[0] = 1.0


def _external_raw(f: h5py.File, name: str, folder: Path) -> None:
    (folder / "raw.bin").write_bytes(bytes(6 * 32 * 4))
    f.create_dataset(name, shape=(6, 32), dtype="f4", external=[(str(folder / "raw.bin"), 0, 6 * 32 * 4)])


def _text_as_dataset(f: h5py.File, folder: Path) -> None:
    del f["text"]
    f["text"] = np.zeros(3)


CRAFTED_CACHES = {  # case: (damage, what the one line says)
    "75 GiB labels, no data": (_replace("image/train/labels", lambda f, n, d: f.create_dataset(n, (10**10,), "i8")),
                               "image/train/labels declares 74.5 GiB of values (shape 10000000000) but the file"),
    "48 GiB features, no data": (_replace("image/test/features", lambda f, n, d: f.create_dataset(n, (6, 2**31), "f4")),
                                 "image/test/features declares 48.0 GiB"),
    "9 GiB progress mask, no data": (_replace("image/train/features__done",
                                              lambda f, n, d: f.create_dataset(n, (10**10,), "u1")),
                                     "image/train/features__done declares 9.3 GiB"),
    "external link to a missing file": (_replace("text/coop/features", lambda f, n, d: f.__setitem__(
        n, h5py.ExternalLink("missing.h5", "/x"))), "text/coop/features is an external link"),
    "external link into another cache": (_replace("image/test/features", _link_into_copy),
                                         "image/test/features is an external link"),
    "soft link loop": (_replace("text/coop/features", _soft_loop), "is a soft link"),
    "hard link loop": (lambda f, d: f.__setitem__("image/train/loop", f["image"]),
                       "image/train/loop is a second name of image"),
    "group where the labels belong": (_replace("image/train/labels", lambda f, n, d: f.create_group(n)),
                                      "image/train/labels is a group where this tool keeps an array"),
    "dataset where the text group belongs": (_text_as_dataset, "text is a dataset where this tool keeps a group"),
    "string features": (_replace("image/test/features", lambda f, n, d: f.create_dataset(
        n, data=np.full((6, 32), "x", dtype=object), dtype=h5py.string_dtype())), "holds 8-byte string values"),
    "compound features": (_replace("image/test/features", lambda f, n, d: f.create_dataset(
        n, (6, 32), np.dtype([("a", "f4"), ("b", "f4")]))), "holds 8-byte compound values"),
    "virtual dataset, missing source": (_replace("image/test/features", _virtual), "is a virtual dataset"),
    "chunks never written": (_replace("image/test/features", _some_chunks), "has 1 of its 6 chunks written"),
    "values in an external file": (_replace("image/test/features", _external_raw),
                                   "keeps its values in an external file"),
}


@pytest.fixture(scope="module")
def crafted_caches(built, tmp_path_factory) -> dict[str, SimpleNamespace]:
    """Each crafted cache in its own folder, with a run record that names it; then every command on each (one
    capped child process, the real CLI) and ``pipeline info`` as its own capped process."""
    work = tmp_path_factory.mktemp("crafted_caches")
    cases, jobs = {}, []
    for index, (case, (damage, _)) in enumerate(CRAFTED_CACHES.items()):
        folder = work / f"case{index:02d}"
        cache = folder / "cache" / CACHE_NAME
        cache.parent.mkdir(parents=True)
        shutil.copy(built.cache, cache)
        with h5py.File(cache, "r+") as f:
            damage(f, folder)
        record = folder / "runs" / built.record.relative_to(built.runs)
        record.parent.mkdir(parents=True)
        text = json.loads(built.record.read_text())
        record.write_text(json.dumps({**text, "cache": {**text["cache"], "path": str(cache)}}))
        shutil.copy(built.record.with_suffix(".npz"), record.with_suffix(".npz"))
        cases[case] = SimpleNamespace(folder=folder, cache=cache, before=files(folder), first=len(jobs))
        jobs += [["info", str(cache)],
                 ["fit", "--cache", str(cache), "--runs-dir", str(folder / "new_runs"), "--shots", "1", "--seeds",
                  "1", "--method", "zero_shot"],
                 extract_args(built.split, folder / "cache"),
                 ["predict", str(built.image), "--run", str(record)]]
    info = {case: spawn(["info", str(c.cache)], preexec_fn=capped) for case, c in cases.items()}
    results = run_in_child(jobs, work)
    for case, c in cases.items():
        out, err = info[case].communicate(timeout=120)
        c.info = (info[case].returncode, out + err)
        c.commands = dict(zip(("info", "fit", "extract", "predict"), results[c.first:c.first + 4]))
        c.after = files(c.folder)
    return cases


@pytest.mark.parametrize("case", list(CRAFTED_CACHES))
def test_crafted_cache_is_one_line_in_every_command(crafted_caches, case):
    crafted, message = crafted_caches[case], CRAFTED_CACHES[case][1]
    code, output = crafted.info  # its own process: `pipeline info` said "complete: yes" to several of these
    assert code == 1, output
    assert message in error_line(output) and str(crafted.cache) in error_line(output)
    for command, result in crafted.commands.items():
        line = one_line(result, 1)
        assert message in line and str(crafted.cache) in line, (command, line)
        assert "--force" in line, line  # how to recover: rebuild
    assert crafted.after == crafted.before  # nothing written, nothing changed (no new runs, no lock, no partial)


def test_a_crafted_unfinished_write_is_discarded_not_resumed(built, tmp_path):
    """extract's resume: a ``.partial`` holding an external link is not read (nor followed); the extraction
    starts over and gives the cache a fresh run gives."""
    from cache import partial_path

    cache = tmp_path / "cache" / CACHE_NAME
    cache.parent.mkdir(parents=True)
    shutil.copy(built.cache, partial_path(cache))
    with h5py.File(partial_path(cache), "r+") as f:
        _replace("image/train/features", _link_into_copy)(f, tmp_path)
        f["image/train/features__done"][...] = 0  # as if killed before the train features were written
    result = run_cli(*extract_args(built.split, tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert "discarding unreadable unfinished write" in result.output and "is an external link" in result.output
    assert_same_content(snapshot(cache), snapshot(built.cache))


def test_a_cache_repacked_with_chunks_and_compression_still_reads(built, tmp_path):
    """The storage checks refuse missing data, not other storage: a gzip-chunked copy (as h5repack makes) reads
    the same as the original, and its gzip-compressed progress masks pass the inflation bound."""
    from cache import FeatureCache

    repacked = tmp_path / "repacked.h5"
    with h5py.File(built.cache, "r") as source, h5py.File(repacked, "w") as target:
        target.attrs.update(dict(source.attrs))

        def copy(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                made = target.create_dataset(name, data=data, dtype=obj.dtype, compression="gzip",
                                             chunks=True if data.ndim else None)
                made.attrs.update(dict(obj.attrs))
        source.visititems(copy)
    original, copy_ = FeatureCache(built.cache), FeatureCache(repacked)
    assert copy_.classes == original.classes
    for split in original.splits:
        np.testing.assert_array_equal(copy_.features(split), original.features(split))
    np.testing.assert_array_equal(copy_.text_features("coop"), original.text_features("coop"))
    info = run_cli("info", str(repacked))
    assert info.exit_code == 0 and "complete: yes" in info.output, info.output


# -- crafted fitted files (item 4) --------------------------------------------------------------------------
def _members(*changes):
    """A fitted file built from the CMM run's, with (name, member or None) changes applied in turn."""
    def make(source: Path, target: Path) -> None:
        members = npz.members_of(source)
        for name, member in changes:
            members = [m for m in members if m.name != name] + ([member] if member is not None else [])
        npz.write_npz(target, members)
    return make


def _rewritten(transform):
    """The CMM run's arrays written back by NumPy after ``transform`` (legitimate variants)."""
    def make(source: Path, target: Path) -> None:
        with np.load(source, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        transform(arrays, target)
    return make


def _fortran(arrays: dict, target: Path) -> None:
    np.savez(target, **{**arrays, "fitted__W_": np.asfortranarray(arrays["fitted__W_"])})


def _truncated(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])


def _lying_deflate(source: Path, target: Path) -> None:
    """A header and an archive entry that agree on 3 GiB, from ~40 bytes of deflated data."""
    head = npz.npy("f4", (24576, 32768))
    member = npz.deflated("fitted__W_", head + bytes(4096))
    member.size = len(head) + GIB3
    _members(("fitted__W_", member))(source, target)


POINTS = 20_000_000
HUGE_W = npz.stored("fitted__W_", npz.npy("f4", (10**6, 10**5), bytes(64)))  # declares 372.5 GiB, holds 64 bytes
HUGE_LABELS = npz.stored("proj_labels", npz.npy("i8", (5 * 10**10,), bytes(48)))
PICKLED_W = npz.stored("fitted__W_", npz.npy("O", (2,), b"x"))
ENCRYPTED_W = npz.Member("fitted__W_", b"", 0, 0, flags=1)
CRAFTED_NPZ = {  # case: (make, (predict's exit code, its line), report: None = gap plot drawn, else the warning)
    "20M projection points in 0.5 MB": (
        _members(("proj_images_before", npz.zero_bomb("proj_images_before", "f4", (POINTS, 2))),
                 ("proj_images_after", npz.zero_bomb("proj_images_after", "f4", (POINTS, 2))),
                 ("proj_labels", npz.zero_bomb("proj_labels", "i8", (POINTS,)))),
        (0, None), "'proj_images_before': is float32(20000000, 2), expected (n, 2) floats with n <= 600"),
    "3 GiB deflate bomb in an unused member": (
        _members(("unused", npz.zero_bomb("unused", "u1", (GIB3,)))), (0, None), None),
    "3 GiB deflate bomb as the map": (
        _members(("fitted__W_", npz.zero_bomb("fitted__W_", "f4", (24576, 32768)))),
        (1, "'fitted__W_': has shape (24576, 32768), more than a fit on its cache stores (3 classes, 32 features, "
            "1 templates, 12 images)"), None),
    "header declaring 373 GiB": (
        _members(("fitted__W_", HUGE_W)), (1, "'fitted__W_' declares 372.5 GiB of values but the archive holds 64 "
                                              "bytes"), None),
    "projection header declaring 373 GiB": (
        _members(("proj_labels", HUGE_LABELS)), (0, None), "'proj_labels' declares 372.5 GiB of values but the archive "
                                                           "holds 48 bytes"),
    "deflated member claiming 3 GiB": (_lying_deflate, (1, "more than deflate can expand"), None),
    "pickled objects as the map": (
        _members(("fitted__W_", PICKLED_W)), (1, "'fitted__W_': holds pickled Python objects, which are never loaded"),
        None),
    "encrypted member": (
        _members(("fitted__W_", ENCRYPTED_W)), (1, "member 'fitted__W_' is encrypted"),
        "member 'fitted__W_' is encrypted"),
    "truncated file": (_truncated, (1, "cannot be read as an .npz archive"), "cannot be read as an .npz archive"),
    "NaN in the projection": (
        _rewritten(lambda a, t: np.savez(t, **{**a, "proj_protos_after": a["proj_protos_after"] * np.nan})),
        (0, None), "'proj_protos_after' holds NaN/Inf"),
    "valid: the map in Fortran order": (_rewritten(_fortran), (0, None), None),
    "valid: deflated by np.savez_compressed": (_rewritten(lambda a, t: np.savez_compressed(t, **a)), (0, None), None),
}


@pytest.fixture(scope="module")
def crafted_fitted(built, tmp_path_factory) -> dict[str, SimpleNamespace]:
    """Each crafted .npz beside a copy of the CMM record, then predict and report on each in one capped child."""
    work = tmp_path_factory.mktemp("crafted_npz")
    cases, jobs = {}, [["predict", str(built.image), "--run", str(built.record)]]
    for index, (case, (make, _, _)) in enumerate(CRAFTED_NPZ.items()):
        runs = work / f"case{index:02d}" / "runs"
        shutil.copytree(built.runs, runs)
        record = runs / built.record.relative_to(built.runs)
        make(built.record.with_suffix(".npz"), record.with_suffix(".npz"))
        cases[case] = SimpleNamespace(runs=runs, record=record, out=runs.parent / "report", before=files(runs),
                                      first=len(jobs))
        jobs += [["predict", str(built.image), "--run", str(record)],
                 ["report", "--runs-dir", str(runs), "--out", str(runs.parent / "report")]]
    results = run_in_child(jobs, work)
    for case in cases.values():
        case.predict, case.report = results[case.first:case.first + 2]
        case.valid_predict = results[0]
        case.after = files(case.runs)
    return cases


@pytest.mark.parametrize("case", list(CRAFTED_NPZ))
def test_crafted_fitted_file_is_read_with_bounded_work(built, crafted_fitted, case):
    crafted, image = crafted_fitted[case], built.image
    (code, message), warning = CRAFTED_NPZ[case][1:]
    if code == 0:  # what predict needs is intact: the same predictions as from the run as fitted
        assert crafted.predict["exit_code"] == 0 and crafted.predict["exception"] is None, crafted.predict
        assert predictions(crafted.predict["output"], image) == predictions(crafted.valid_predict["output"], image)
    else:
        line = one_line(crafted.predict, code)
        assert message in line and str(crafted.record.with_suffix(".npz")) in line and "refit" in line, line
    report = crafted.report  # the report reads only the projection (and __meta__) for the gap plot
    assert report["exit_code"] == 0 and report["exception"] is None, report
    gap = list((crafted.out / "plots").glob("gap__*.svg"))
    if warning is None:
        assert len(gap) == 1 and gap[0].stat().st_size < 1_000_000
    else:
        assert not gap
        (said,) = [line for line in report["output"].splitlines() if "no gap plot" in line]
        assert warning in said and str(crafted.record.with_suffix(".npz")) in said, said
    assert crafted.after == crafted.before  # the runs folder is unchanged


def test_deflate_bomb_and_20m_points_in_real_processes_under_a_memory_cap(built, crafted_fitted):
    """The two headline cases as their own ``pipeline`` processes: predict past a 3 GiB bomb in a member it
    does not need, and a report over 20M projection points, each under a 2 GiB data-segment cap."""
    bomb = crafted_fitted["3 GiB deflate bomb in an unused member"]
    points = crafted_fitted["20M projection points in 0.5 MB"]
    predict = spawn(["predict", str(built.image), "--run", str(bomb.record)], preexec_fn=capped)
    out_dir = points.runs.parent / "report_process"
    report = spawn(["report", "--runs-dir", str(points.runs), "--out", str(out_dir)], preexec_fn=capped)
    try:
        out, err = predict.communicate(timeout=300)
        assert predict.returncode == 0 and "Traceback" not in err, err
        assert predictions(out, built.image) == predictions(bomb.valid_predict["output"], built.image)
        _, err = report.communicate(timeout=120)  # 20M points took over 15 minutes to plot
        assert report.returncode == 0 and "Traceback" not in err, err  # (its warning is checked above; -q hides it)
    finally:
        predict.kill()
        report.kill()
    assert (out_dir / "README.md").is_file() and not list((out_dir / "plots").glob("gap__*"))


# -- item 8 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["image", "run record"])
def test_predict_on_a_fifo_is_one_line_not_a_hang(built, tmp_path, target):
    fifo = tmp_path / ("pipe.png" if target == "image" else "pipe.json")
    os.mkfifo(fifo)
    image, record = (fifo, built.record) if target == "image" else (built.image, fifo)
    child = spawn(["predict", str(image), "--run", str(record)])
    try:
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 2, err
    assert f"'{fifo}' is not a regular file" in error_line(err)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_fit_on_a_full_disk_names_the_file(built, tmp_path, jobs):
    """A write that fails (file-size limit 0, as a full disk) on fit's first file names it: the run's lock file
    in one process (os.write's error carries no path), the pool's semaphores in /dev/shm with --jobs 2."""
    runs = tmp_path / "runs"
    child = spawn(["fit", "--cache", str(built.cache), "--runs-dir", str(runs), "--shots", "1,2", "--seeds", "1",
                   "--method", "zero_shot", "--jobs", jobs], preexec_fn=limited(0))
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    line = error_line(err)
    if jobs == "1":
        assert re.search(r"/zero_shot/shots[12]_seed1\.json\.lock: File too large", line), line
    else:
        assert "semaphores in /dev/shm failed (File too large); free space there, or use --jobs 1" in line, line
    assert not [p for p in runs.rglob("*") if p.is_file()]


def _forkserver_importing_torch(pid: int) -> bool:
    """Whether the forkserver of ``pid`` (a child) has loaded libtorch: it imports torch (and torch._dynamo)
    for seconds more. (A signal before its interpreter installs its handlers would end it silently.)"""
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                return "libtorch" in Path(f"/proc/{child}/maps").read_text()
    except OSError:
        pass
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the forkserver through /proc")
@pytest.mark.parametrize("moment", ["while the forkserver imports torch", "while the workers fit"])
def test_ctrl_c_during_fit_jobs_2_is_one_line_and_exit_130(built, tmp_path, moment):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while ``fit --jobs 2`` starts its
    workers or runs them: exit 130, the one "interrupted" line, no traceback, no process left, whole records."""
    runs = tmp_path / "runs"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-m", "pipeline", "-q", "fit", "--cache", str(built.cache), "--runs-dir",
                              str(runs), "--shots", "1,2,4", "--seeds", "1,2,3", "--method", "cmm,linear_probe",
                              "--jobs", "2"], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (_forkserver_importing_torch(child.pid) if moment.startswith("while the forkserver")
               else list(runs.rglob("*.json"))):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.01)
    below = descendants(child.pid)
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted; the records already written are kept" in error_line(err)
    assert err.strip().count("\n") == 0, err  # nothing else: no traceback of the forkserver or a worker
    deadline = time.monotonic() + 10
    while running(below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(below)
    for record in runs.rglob("*.json"):
        assert json.loads(record.read_text())["metrics"] and record.with_suffix(".npz").is_file()
