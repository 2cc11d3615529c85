"""Nothing in the working folder is imported: the README's commands run from a folder holding ``cache/``,
``stages/``, ``pipeline/`` and Python files named like the project's modules and its dependencies.

Every planted module writes a marker file when imported, so a test fails both when a command crashes on
the shadowing folder (the reported ``ImportError: cannot import name 'CacheReader' from 'cache'``) and
when code from the working folder runs silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL_CONFIG, write_coop_dataset
from tests.reliability.helpers import ROOT

PLANTED = ("stages.py", "numpy.py", "torch.py", "h5py.py", "multiprocessing.py",
           "stages/__init__.py", "pipeline/__init__.py")


def plant(folder: Path, modules: tuple[str, ...]) -> Path:
    """Write modules that leave a marker in ``folder/IMPORTED`` when imported; returns the marker path."""
    marker = folder / "IMPORTED"
    for name in modules:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")
    return marker


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)  # as a user runs it: the installed project, nothing else
    env.pop("PYTHONSAFEPATH", None)
    return subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return write_coop_dataset(root / "toy", ["red fox", "blue jay", "green frog"], {"train": 4, "val": 2, "test": 2})


def readme_commands(split_file: Path) -> list[list[str]]:
    """extract --cache-dir cache, fit with two worker processes, report: the README's sequence."""
    model = ["--dataset", "folder", "--model", str(TINY_MODEL_CONFIG), "--pretrained", "none", "--cache-dir", "cache"]
    return [
        ["extract", *model, "--data-root", str(split_file.parent / "images"), "--split-file", str(split_file),
         "--workers", "2", "--batch-size", "4"],
        ["fit", *model, "--runs-dir", "runs", "--shots", "1,2", "--seeds", "1", "--method", "cmm,zero_shot",
         "--jobs", "2"],
        ["report", "--runs-dir", "runs", "--out", "report"],
    ]


def installed_command() -> Path:
    command = Path(sys.executable).parent / "pipeline"
    if not command.exists():
        pytest.skip("the pipeline command is not installed beside this Python (pip install -e .)")
    return command


def test_the_pipeline_command_runs_from_a_folder_that_shadows_the_project(tmp_path, dataset):
    work = tmp_path / "work"
    marker = plant(work, PLANTED)
    for args in readme_commands(dataset):
        done = run([str(installed_command()), *args], cwd=work)
        assert done.returncode == 0, f"{args[0]}: {done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
    assert not marker.exists(), f"code from the working folder ran: {marker.read_text()}"
    assert len(list((work / "runs").rglob("shots*_seed1.json"))) == 4
    assert (work / "report" / "README.md").exists()


def test_python_dash_m_pipeline_drops_the_working_folder(tmp_path, dataset):
    """``python -m`` itself finds a ``pipeline/`` there (Python's rule), so only the rest is planted."""
    work = tmp_path / "work"
    marker = plant(work, tuple(name for name in PLANTED if not name.startswith("pipeline/")))
    for args in readme_commands(dataset):
        done = run([sys.executable, "-m", "pipeline", *args], cwd=work)
        assert done.returncode == 0, f"{args[0]}: {done.stderr[-3000:]}"
    assert not marker.exists(), f"code from the working folder ran: {marker.read_text()}"


def test_the_project_folder_itself_still_works_as_the_working_folder(tmp_path):
    """Run from the checkout, ``python -m pipeline`` keeps the checkout on its path (it is the project)."""
    done = run([sys.executable, "-m", "pipeline", "--version"], cwd=ROOT)
    assert done.returncode == 0, done.stderr
