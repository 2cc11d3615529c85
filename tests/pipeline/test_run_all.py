"""run_all.sh: every option the README and the errors mention is accepted, values are checked (one line, exit 2),
and --help is text, not shell code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "run_all.sh"


def run_all(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)


def test_help_is_text_listing_every_option():
    result = run_all("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "set -euo" not in result.stdout and result.stdout.startswith("Usage: ./run_all.sh")
    for option in ("--dataset", "--data-root", "--model", "--pretrained", "--weights-tag", "--shots", "--seeds",
                   "--methods", "--aug-views", "--work-dir", "--device", "--tests"):
        assert option in result.stdout, option


@pytest.mark.parametrize("args, message", [
    (["--model"], "--model needs a value"),
    (["--model", "--pretrained", "none"], "--model needs a value"),
    (["--weights-tag"], "--weights-tag needs a value"),
    (["--shots", "1,x"], "--shots must be a comma-separated list of integers, got '1,x'"),
    (["--seeds", ""], "--seeds needs a value"),
    (["--aug-views", "-3"], "--aug-views must be a whole number, got '-3'"),
    (["--aug-views", "ten"], "--aug-views must be a whole number, got 'ten'"),
    (["--bogus"], "unknown option '--bogus'"),
])
def test_option_errors_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    result = run_all("--work-dir", str(tmp_path / "work"), *args)
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.splitlines() == [f"run_all.sh: {message} (see --help)"
                                                                  if "needs a value" in message or "unknown" in message
                                                                  else f"run_all.sh: {message}"]
    assert not (tmp_path / "work").exists()


def test_weights_tag_is_passed_to_extract(tmp_path):
    """The offline error tells users to pass --weights-tag; run_all.sh hands it to pipeline extract, whose own
    one-line error (the checkpoint file does not exist) is what the user sees."""
    import sys

    missing = tmp_path / "nowhere" / "weights.pt"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # this environment's pipeline
    result = run_all("--work-dir", str(tmp_path / "work"), "--pretrained", str(missing), "--weights-tag", "openai",
                     env={"RUN_ALL_SKIP_SETUP": "1", "PATH": path})
    assert result.returncode == 1, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: weights file not found: {missing}; pass an existing checkpoint file, a pretrained "
                      "tag or none"], result.stderr
    assert "unknown option" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "work" / "cache").exists()


def test_aug_views_add_augmented_runs_beside_the_plain_ones_for_each_dataset(tmp_path):
    """--dataset takes a list (one cache and run set each); --aug-views N fits the methods that train on images
    a second time with the views (+aug), beside their plain runs; zero-shot, which trains on none, only plain."""
    import json
    import sys

    from tests.conftest import TINY_MODEL_CONFIG
    from tests.extract.conftest import Miniatures

    for key in ("dtd", "eurosat"):
        Miniatures(tmp_path / "data").coop(key, per_split=2)
    work = tmp_path / "work"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = run_all("--dataset", "dtd,eurosat", "--data-root", str(tmp_path / "data"), "--model",
                     str(TINY_MODEL_CONFIG), "--pretrained", "none", "--methods", "zero_shot,cmm,tip_adapter",
                     "--shots", "1", "--seeds", "1", "--aug-views", "2", "--device", "cpu", "--work-dir", str(work),
                     env={"RUN_ALL_SKIP_SETUP": "1", "PATH": path})
    assert result.returncode == 0, result.stderr
    labels = sorted((json.loads(p.read_text())["dataset"], json.loads(p.read_text())["method_label"])
                    for p in (work / "runs").rglob("shots1_seed1.json"))
    assert labels == [(key, label) for key in ("dtd", "eurosat")
                      for label in ("cmm", "cmm+aug", "tip_adapter", "tip_adapter+aug", "zero_shot")]
    assert "zero_shot not fitted with --train-views aug" in result.stdout
    assert sorted(p.parent.name for p in (work / "cache").rglob("*.h5")) == ["dtd", "eurosat"]


def test_setup_installs_the_tested_versions():
    """run_all.sh installs with constraints.txt, which pins every package the project and its test extra pull in
    (read from this environment's metadata), so a new dependency cannot go unpinned."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    script = SCRIPT.read_text()
    assert "pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'" in script
    assert "constraints.txt -nt .venv/.installed" in script  # a new lock reinstalls
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    needed, todo = set(), [("cmm-pipeline", ("test",))]
    while todo:
        name, extras = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))
            dependency = canonicalize_name(requirement.name)
            if wanted and dependency not in needed:
                needed.add(dependency)
                todo.append((requirement.name, tuple(requirement.extras)))
    assert needed - set(pins) == set()
    assert {"torch", "torchvision", "open-clip-torch", "numpy", "scikit-learn", "h5py"} <= set(pins)
