"""The CLI, not the cache, says how to fix a bad cache, in the words of the command that met it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cache.errors import CacheMismatchError, CacheMissingError
from pipeline.cli import cli
from pipeline.hints import hint


def test_a_corrupt_cache_names_the_extract_command_outside_extract(tmp_path: Path) -> None:
    broken = tmp_path / "x.h5"
    broken.write_bytes(b"not hdf5")
    for args in (["fit", "--cache", str(broken), "--runs-dir", str(tmp_path / "runs"), "--method", "zero_shot"],
                 ["info", str(broken)]):
        result = CliRunner().invoke(cli, args)
        [line] = result.output.strip().splitlines()
        assert result.exit_code == 1 and "not an HDF5 file" in line, line
        assert line.endswith("rebuild it with pipeline extract --force"), line  # fit's own --force means refit


def test_each_remedy_in_the_words_of_the_command() -> None:
    stale = CacheMismatchError("x.h5 was built for different inputs (store_dtype: ...)")
    assert hint(stale, "extract") == "pass --force to rebuild it"
    assert hint(stale, "fit") == "rebuild it with pipeline extract --force"
    missing = CacheMissingError("x.h5 has no template set 'imagenet7'", what="template_set", name="imagenet7")
    assert hint(missing, "fit") == "extract it with pipeline extract --templates imagenet7"
    assert hint(CacheMissingError("no cache file at x.h5"), "fit") == "run pipeline extract first"
    assert hint(ValueError("not ours"), "fit") is None
