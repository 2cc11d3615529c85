"""The CLI face of stage one and of ``pipeline info``."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import TINY_MODEL_CONFIG


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def extract_args(split_file, cache_dir):
    return ["extract", "--dataset", "folder", "--data-root", str(split_file.parent / "images"), "--split-file",
            str(split_file), "--model", str(TINY_MODEL_CONFIG), "--pretrained", "none", "--cache-dir", str(cache_dir),
            "--batch-size", "8", "--workers", "0"]


def test_help_lists_the_commands():
    result = run("--help")
    for command in ("extract", "fit", "report", "info"):
        assert command in result.output


def test_extract_then_info(coop_dataset, tmp_path):
    result = run(*extract_args(coop_dataset, tmp_path))
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.glob("folder/*.h5")
    info = run("info", str(path))
    assert info.exit_code == 0
    assert "key:" in info.output and "image/train/features" in info.output
    assert "float32  18x32" in info.output and "text/coop/features" in info.output
    assert "complete: yes" in info.output and "RANDOM" in info.output
    assert f"name:    {path.stem}  " in info.output  # the cache file is named by its model x weights name
    again = run(*extract_args(coop_dataset, tmp_path))
    assert "nothing to encode" in again.output


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump (Debian hdf5-tools) not installed")
def test_h5dump_reads_the_cache(coop_dataset, tmp_path):
    run(*extract_args(coop_dataset, tmp_path))
    (path,) = tmp_path.glob("folder/*.h5")
    header = subprocess.run(["h5dump", "-H", str(path)], capture_output=True, text=True, check=True).stdout
    assert 'DATASET "features"' in header and "H5T_IEEE_F32LE" in header


def test_unknown_model_is_a_one_line_error(coop_dataset, tmp_path):
    args = extract_args(coop_dataset, tmp_path)
    args[args.index("--model") + 1] = "ViT-Nope-99"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "unknown open_clip model 'ViT-Nope-99'" in result.output
    assert not list(tmp_path.glob("folder/*"))


def test_offline_tag_fails_fast_with_a_fix(coop_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = extract_args(coop_dataset, tmp_path)
    args[args.index("--model") + 1] = "RN50"
    args[args.index("--pretrained") + 1] = "openai"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "--pretrained /path/to/weights.bin" in result.output
