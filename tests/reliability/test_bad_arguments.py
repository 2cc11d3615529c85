"""Bad arguments: usage errors exit 2 and write nothing; unknown names are one clear line and write nothing."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import error_line, extract_args, run_cli


@pytest.mark.parametrize("args, message", [
    (["subsets", "--shots", "0"], "every value must be >= 1"),
    (["subsets", "--shots", "1,two"], "not a comma-separated list of integers"),
    (["subsets", "--seeds", "1.5"], "not a comma-separated list of integers"),
    (["fit", "--seeds", "a,b"], "not a comma-separated list of integers"),
    (["fit", "--shots", "-1"], "every value must be >= 1"),
    (["fit", "--method", "foo"], "unknown method 'foo'"),
    (["fit", "--method", "zero_shot", "--ablation", "no_triplet"], "--ablation applies to CMM"),
    (["fit", "--ablation", "nope"], "Invalid value for '--ablation'"),
])
def test_fit_and_subsets_usage_errors_exit_2(small_dataset, tmp_path, args, message):
    out = tmp_path / "out"
    place = ["--split-file", str(small_dataset), "--out", str(out)] if args[0] == "subsets" else [
        "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(out)]
    result = run_cli(args[0], *place, *args[1:])
    assert result.exit_code == 2, result.output
    assert message in error_line(result.output) and "Usage:" not in result.output  # one line, not click's three
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("change, message", [
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["--aug-views", "-1"], "Invalid value for '--aug-views'"),
    (["--subset-shots", "0"], "every value must be >= 1"),
    (["--subset-seeds", "x"], "not a comma-separated list of integers"),
    (["--precision", "fp64"], "Invalid value for '--precision'"),
    (["--store-dtype", "int8"], "Invalid value for '--store-dtype'"),
])
def test_extract_usage_errors_exit_2(small_dataset, tmp_path, change, message):
    result = run_cli(*extract_args(small_dataset, tmp_path / "cache"), *change)
    assert result.exit_code == 2, result.output
    assert message in error_line(result.output) and "Usage:" not in result.output
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--dataset", "imagenet_9000", "imagenet_9000"),
    ("--model", "ViT-Nope-99", "unknown open_clip model 'ViT-Nope-99'"),
])
def test_unknown_dataset_or_model_is_one_line_and_writes_nothing(small_dataset, tmp_path, option, value, message):
    args = extract_args(small_dataset, tmp_path / "cache")
    args[args.index(option) + 1] = value
    result = run_cli(*args)
    assert result.exit_code == 2, result.output  # a usage error, checked before anything is opened
    assert message in result.output
    assert not (tmp_path / "cache").exists()


def test_unknown_command_and_help_keep_their_exit_codes():
    unknown = run_cli("nosuch")
    assert unknown.exit_code == 2 and "No such command 'nosuch'" in error_line(unknown.output)
    assert run_cli("--help").exit_code == 0 and run_cli("--version").exit_code == 0
