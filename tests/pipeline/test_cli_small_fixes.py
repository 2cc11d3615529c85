"""Issue 21's smaller CLI fixes: `pipeline` alone shows its help, a model folder without local-dir: and a fit with
the wrong --model get a hint, and a re-extract with nothing to do builds no model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL_CONFIG, write_coop_dataset
from tests.reliability.helpers import error_line, extract_args, run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """3 classes, train 4 / val 1 / test 2 per class; returns the split file."""
    return write_coop_dataset(tmp_path / "small", ["red fox", "blue jay", "green frog"],
                              {"train": 4, "val": 1, "test": 2})


def test_pipeline_alone_prints_its_help_laid_out():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "pipeline"], env=env, text=True, capture_output=True, timeout=120)
    assert result.returncode == 2  # as click does for a group called without a command
    lines = result.stderr.splitlines()
    assert lines[0] == "Usage: pipeline [OPTIONS] COMMAND [ARGS]..." and not result.stderr.startswith("error")
    assert len(lines) > 20 and any(line.strip().startswith("extract") for line in lines)


def test_a_model_folder_without_local_dir_is_told_how_to_pass_it(small_dataset, tmp_path):
    folder = tmp_path / "my-clip"
    folder.mkdir()
    args = extract_args(small_dataset, tmp_path / "cache")
    args[args.index("--model") + 1] = str(folder)
    result = run_cli(*args)
    assert result.exit_code == 2
    line = error_line(result.output)
    assert "unknown open_clip model" in line and f"--model local-dir:{folder}" in line
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def extracted(small_dataset, tmp_path) -> Path:
    result = run_cli("-q", *extract_args(small_dataset, tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output  # load_model's warning: the model was built
    return tmp_path / "cache"


def test_fit_with_another_model_names_the_caches_that_are_there(extracted, tmp_path):
    result = run_cli("fit", "--dataset", "folder", "--model", "ViT-B-32", "--pretrained", "openai", "--cache-dir",
                     str(extracted), "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1
    line = error_line(result.output)
    assert f"no cache file at {extracted / 'folder' / 'ViT-B-32__openai.h5'}" in line
    assert f"tiny-test-clip__none.h5 (--model {TINY_MODEL_CONFIG} --pretrained none)" in line
    assert line.endswith("run pipeline extract first")
    other = run_cli("fit", "--dataset", "dtd", "--model", "ViT-B-32", "--cache-dir", str(extracted), "--runs-dir",
                    str(tmp_path / "runs"))
    assert "has caches of other datasets only: folder" in error_line(other.output)


def test_a_re_extract_with_nothing_to_do_builds_no_model(small_dataset, extracted):
    again = run_cli("-q", *extract_args(small_dataset, extracted))
    assert again.exit_code == 0, again.output
    assert again.output.strip().endswith("already complete for this request; nothing to encode "
                                         "(pass --force to rebuild)")
    assert "RANDOM weights" not in again.output  # load_model never ran
    more = run_cli("-q", *extract_args(small_dataset, extracted, "--templates", "coop,imagenet7"))
    assert more.exit_code == 0 and "RANDOM weights" in more.output and "21 prompts (imagenet7)" in more.output
