"""Bad datasets through ``pipeline extract``: each is one clear error before any encoding, and nothing is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability.helpers import error_line, extract_args, run_cli


def edit_split(split_file: Path, change) -> None:
    data = json.loads(split_file.read_text())
    change(data)
    split_file.write_text(json.dumps(data))


def symlink_out(split_file: Path) -> None:
    outside = split_file.parent.parent / "outside.png"
    outside.write_bytes((split_file.parent / "images" / "red_fox" / "train_000.png").read_bytes())
    link = split_file.parent / "images" / "red_fox" / "link.png"
    os.symlink(outside, link)
    edit_split(split_file, lambda d: d["test"].append(["red_fox/link.png", 0, "red fox"]))


CASES = {
    "missing file": (lambda f: (f.parent / "images" / "blue_jay" / "test_001.png").unlink(),
                     "missing file"),
    "malformed json": (lambda f: f.write_text(f.read_text()[:-7]), "malformed split file"),
    "label out of range": (lambda f: edit_split(f, lambda d: d["val"][0].__setitem__(1, 7)), "out of range"),
    "name disagrees with label": (lambda f: edit_split(f, lambda d: d["val"][0].__setitem__(2, "blue jay")),
                                  "does not match label"),
    "duplicate": (lambda f: edit_split(f, lambda d: d["test"].append(d["test"][0])), "listed twice"),
    "dotdot": (lambda f: edit_split(f, lambda d: d["test"].append(["../split_custom.json", 0, "red fox"])),
               "would leave the image folder"),
    "absolute": (lambda f: edit_split(f, lambda d: d["test"].append([str(f), 0, "red fox"])), "is absolute"),
    "symlink out": (symlink_out, "outside the image folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_dataset_fails_before_encoding(small_dataset, tmp_path, case):
    damage, message = CASES[case]
    damage(small_dataset)
    result = run_cli(*extract_args(small_dataset, tmp_path / "cache"))
    assert result.exit_code == 1
    line = error_line(result.output)
    assert message in line, line
    assert "encoded" not in result.output
    assert not (tmp_path / "cache").exists()  # no cache, no partial file, no lock file
