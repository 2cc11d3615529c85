"""`pipeline report --methods / --exclude` choose what goes in (labels, method names, patterns; one line for a
name that matches nothing), and the index shows the package versions of the records, warning when they mix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli

V1 = {"pipeline": "0.1.0", "torch": "2.14.1", "numpy": "2.3.0"}
V2 = {"pipeline": "0.1.0", "torch": "2.15.0", "numpy": "2.3.0"}


@pytest.fixture
def grid(write_record) -> None:
    for label, base in (("zero_shot", 40), ("tip_adapter", 50), ("tip_adapter+aug", 51), ("cmm", 55),
                        ("cmm+no_triplet", 53), ("cmm+bias", 54)):
        method = label.split("+")[0]
        for seed in (1, 2):
            write_record("dtd", "RN50", "openai", method, 0 if method == "zero_shot" else 4, seed, base + seed,
                         method_label=label, versions=V1)


def report(runs: Path, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["report", "--runs-dir", str(runs), "--out", str(out), "--no-plots",
                                    "--no-published", "--format", "json", "--format", "md", *extra])


def labels_in(out: Path) -> set[str]:
    return {p.name[len("acc__RN50__openai__"):-len(".json")] for p in (out / "tables").glob("acc__*.json")}


def main_rows(out: Path) -> list[str]:
    table = json.loads((out / "tables" / "main__RN50__openai__shots4.json").read_text())
    return [row["Method"] for row in table["rows"]]


@pytest.mark.usefixtures("grid")
def test_sections_without_options(runs, tmp_path) -> None:
    result = report(runs, tmp_path / "all")
    assert result.exit_code == 0, result.output
    assert main_rows(tmp_path / "all") == ["Zero-shot CLIP (0 shots)", "Tip-Adapter", "CMM"]  # methods only
    ablations = json.loads((tmp_path / "all" / "tables" / "ablations__RN50__openai__shots4.json").read_text())
    assert [r["Method"] for r in ablations["rows"]] == ["CMM", "CMM (with bias)", "CMM (no triplet)"]
    variants = json.loads((tmp_path / "all" / "tables" / "variants__RN50__openai__shots4.json").read_text())
    assert [r["Method"] for r in variants["rows"]] == ["Tip-Adapter", "Tip-Adapter (augmented views)"]
    headline = json.loads((tmp_path / "all" / "tables" / "headline__RN50__openai.json").read_text())
    assert [r["Method"] for r in headline["rows"]] == ["Zero-shot CLIP (0 shots)", "Tip-Adapter", "CMM"]
    assert headline["rows"][2]["4 shots"]["best"] is True  # bold among the methods, never an ablation


def test_zero_shot_run_at_each_shot_count_is_named_plainly(runs, tmp_path, write_record) -> None:
    for k in (1, 4):
        for seed in (1, 2):
            write_record("dtd", "RN50", "openai", "zero_shot", k, seed, 40.0)
            write_record("dtd", "RN50", "openai", "cmm", k, seed, 50.0 + k)
    assert report(runs, tmp_path / "out").exit_code == 0
    headline = json.loads((tmp_path / "out" / "tables" / "headline__RN50__openai.json").read_text())
    assert [r["Method"] for r in headline["rows"]] == ["Zero-shot CLIP", "CMM"]


@pytest.mark.usefixtures("grid")
def test_methods_and_exclude(runs, tmp_path) -> None:
    result = report(runs, tmp_path / "a", "--methods", "cmm,zero_shot")  # a method name: it and its variants
    assert result.exit_code == 0, result.output
    assert labels_in(tmp_path / "a") == {"zero_shot", "cmm", "cmm+no_triplet", "cmm+bias"}
    result = report(runs, tmp_path / "b", "--methods", "cmm", "--methods", "tip_adapter+aug", "--exclude", "cmm+*")
    assert result.exit_code == 0, result.output
    assert labels_in(tmp_path / "b") == {"cmm", "tip_adapter+aug"}
    result = report(runs, tmp_path / "c", "--exclude", "cmm+no_triplet,tip_adapter+aug")
    assert labels_in(tmp_path / "c") == {"zero_shot", "tip_adapter", "cmm", "cmm+bias"}
    assert "Built from 8 run records" in (tmp_path / "c" / "README.md").read_text()


@pytest.mark.usefixtures("grid")
def test_unknown_name_is_one_line_naming_what_is_there(runs, tmp_path) -> None:
    result = report(runs, tmp_path / "out", "--methods", "cmm,tip_adaptr")
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: --methods: 'tip_adaptr' names no run here; labels present: cmm, cmm+bias, "
                           "cmm+no_triplet, tip_adapter, tip_adapter+aug, zero_shot")
    assert not (tmp_path / "out" / "README.md").exists()
    result = report(runs, tmp_path / "out", "--exclude", "*")
    assert result.exit_code == 1 and "leave no run to report" in result.output


@pytest.mark.usefixtures("grid")
def test_versions_in_the_index_and_a_warning_when_mixed(runs, tmp_path, write_record) -> None:
    result = report(runs, tmp_path / "same")
    assert "warning" not in result.output
    index = (tmp_path / "same" / "README.md").read_text().splitlines()
    at = index.index("## Versions")
    assert index[at + 2:at + 5] == ["Package versions the records were made with (from each record):", "",
                                    "- numpy 2.3.0, pipeline 0.1.0, torch 2.14.1: 12 records"]
    write_record("dtd", "RN50", "openai", "gda", 4, 1, 50.0, versions=V2)
    write_record("dtd", "RN50", "openai", "gda", 4, 2, 50.0)  # an old record: no versions kept
    result = report(runs, tmp_path / "mixed")
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: the records were made with 3 different sets of package versions (differing: "
                        "numpy, pipeline, torch); numbers from different sets may not compare: see Versions in the "
                        "index"]
    index = (tmp_path / "mixed" / "README.md").read_text().splitlines()
    at = index.index("## Versions")
    assert index[at + 4:at + 9] == ["- numpy 2.3.0, pipeline 0.1.0, torch 2.14.1: 12 records",
                                    "- numpy 2.3.0, pipeline 0.1.0, torch 2.15.0: 1 record",
                                    "- not recorded (a record written before versions were kept): 1 record", "",
                                    "**Warning:** " + warnings[0][len("warning: "):] + "."]
