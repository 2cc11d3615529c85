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
