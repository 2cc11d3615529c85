"""Crafted records cannot inject anything into a report (issue 22, item 7), each through the real `pipeline report`
command: a name with a newline or a NUL is refused when read (one warning line naming the file and field), and
every renderer escapes what it writes (Markdown cells, CSV formulas, LaTeX specials, plot mathtext)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from stages.report.escape import FORMULA_START, csv_cell, latex_escape, markdown_text, one_line

TITLE = "Test top-1 (%) averaged over 1 dataset — RN50 (openai)"
PAIRED = "CMM against each method: mean paired difference in test top-1 (points) — RN50 (openai)"
HEADINGS = ["# Report", "## Headline", f"#### {TITLE}", "## Versions", "## Tables", "## Plots"]
HEADER = ["| Method | 1 shot |", "|:---|---:|"]
ZERO_SHOT = "| Zero-shot CLIP (0 shots) | 40.00 ± 1.00 |"
CMM = "| CMM | **60.00 ± 2.00** |"


@pytest.fixture
def base(write_record) -> None:
    """Zero-shot (0 shots) and CMM (1 shot), seeds 1 and 2, on dtd with RN50 (openai)."""
    for seed, delta in ((1, -1.0), (2, 1.0)):
        write_record("dtd", "RN50", "openai", "zero_shot", 0, seed, 40.0 + delta)
        write_record("dtd", "RN50", "openai", "cmm", 1, seed, 60.0 + 2 * delta)


def report(runs: Path, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["report", "--runs-dir", str(runs), "--out", str(out), "--no-published", *extra])


def readme(out: Path) -> list[str]:
    return (out / "README.md").read_text(encoding="utf-8").splitlines()


def headings(out: Path) -> list[str]:
    return [line for line in readme(out) if line.startswith("#")]


def headline_rows(out: Path) -> list[str]:
    """The rows of the headline table in the index (from its header to the blank line after it)."""
    lines = readme(out)
    start = lines.index(f"#### {TITLE}") + 2
    return lines[start:lines.index("", start)]


def assert_untouched(result: Result, out: Path, extra_rows: tuple[str, ...] = ()) -> None:
    """Exit 0 and the index exactly as for the base records (plus ``extra_rows`` in the headline)."""
    assert result.exit_code == 0, result.output
    assert headings(out) == HEADINGS
    assert headline_rows(out) == HEADER + [ZERO_SHOT, CMM, *extra_rows]


def no_nul_anywhere(out: Path) -> None:
    """No NUL byte in any text the report wrote (tables, index, SVG plots)."""
    for path in out.rglob("*"):
        if path.suffix in (".md", ".csv", ".json", ".tex", ".svg"):
            assert b"\x00" not in path.read_bytes(), path


def test_newline_in_model_is_refused_with_one_warning(runs, tmp_path, base, write_record) -> None:
    crafted = write_record("dtd", "RN50\n# Injected heading\n| Injected | 99.00 |", "openai", "cmm", 1, 3, 99.0)
    result = report(runs, tmp_path / "out", "--no-plots")
    assert_untouched(result, tmp_path / "out")
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(crafted.parent.name) in warnings[0] and '"model"' in warnings[0]
    assert not any(line.startswith(("# Injected", "| Injected")) for line in readme(tmp_path / "out"))


def test_newline_in_method_label_is_refused(runs, tmp_path, base, write_record) -> None:
    write_record("dtd", "RN50", "openai", "cmm", 1, 3, 99.0, method_label="cmm\n## Owned\n| Owned | 99.00 |")
    write_record("dtd", "RN50", "openai", "cmm", 1, 4, 99.0, method_label="cmm\u2028# Owned")  # a line separator
    result = report(runs, tmp_path / "out", "--no-plots")
    assert_untouched(result, tmp_path / "out")
    assert result.output.count('"method_label" must be a single-line string') == 2
    for path in (tmp_path / "out").rglob("*.md"):
        assert not any(line.startswith(("## Owned", "| Owned", "# Owned")) for line in path.read_text().splitlines())


def test_nul_bytes_never_reach_the_report(runs, tmp_path, base, write_record) -> None:
    write_record("dtd\x00x", "RN50", "openai", "cmm", 1, 3, 99.0)                            # a name: refused
    write_record("dtd", "RN50", "openai", "cmm", 1, 1, 60.0, method_label="cmm+nul",         # a value: escaped
                 hyperparameters={"alpha": "a\x00b\nc"}, versions={"torch": "2.14.1"})
    write_record("dtd", "RN50", "openai", "cmm", 1, 2, 60.0, method_label="cmm+nul", hyperparameters={"alpha": 1},
                 versions={"torch": "2.14.1"})
    result = report(runs, tmp_path / "out")                                                   # plots too
    assert result.exit_code == 0, result.output
    assert headings(tmp_path / "out") == ["# Report", "## Headline", f"#### {TITLE}",
                                          "## CMM against each method (paired)", f"#### {PAIRED}",
                                          "## CMM ablations", "#### CMM ablations: " + TITLE, "## Versions",
                                          "## Tables", "## Plots"]
    assert headline_rows(tmp_path / "out") == HEADER + [ZERO_SHOT, CMM]
    assert result.output.count("warning:") == 2  # the NUL name; the records mixing package versions
    no_nul_anywhere(tmp_path / "out")
    hparams = (tmp_path / "out" / "tables" / "hparams__RN50__openai__cmm+nul.md").read_text(encoding="utf-8")
    assert "seed 1: a\\\\x00b\\\\nc" in hparams  # shown as its escapes (the backslash escaped for Markdown)


def test_csv_cells_never_start_a_formula(runs, tmp_path, base, write_record) -> None:
    for seed in (1, 2):
        write_record("dtd", "RN50", "openai", "=HYPERLINK(\"http://x\",\"y\")", 1, seed, 50.0)
        write_record("@SUM(1+1)", "RN50", "openai", "cmm", 1, seed, 50.0)
        write_record("dtd", "RN50", "openai", "cmm", 1, seed, 60.0, method_label="cmm+-2+3",
                     hyperparameters={"+cmd": "-1+1", "lr": -0.5, "tab": "\tx"})
    result = report(runs, tmp_path / "out", "--no-plots")
    assert result.exit_code == 0, result.output
    assert headings(tmp_path / "out")[:3] == ["# Report", "## Headline", "#### Test top-1 (%) averaged over 2 "
                                              "datasets — RN50 (openai)"]
    seen = set()
    for path in (tmp_path / "out" / "tables").glob("*.csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    seen.add(cell)
                    assert not cell.startswith(FORMULA_START) or re.fullmatch(r"-?[0-9.e-]+", cell), (path, cell)
    assert {"'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(1+1) mean", "'+cmd", "'-1+1", "-0.5", "'\\tx"} <= seen


def test_markdown_and_latex_cells_are_escaped(runs, tmp_path, base, write_record) -> None:
    label = "cmm+a|b*c*`d`<x>[l](javascript:1)\\input{/etc/passwd}$\\frac{1$"
    for seed in (1, 2):
        write_record("dtd", "RN50", "openai", "cmm", 1, seed, 68.0 + seed, method_label=label)
    result = report(runs, tmp_path / "out")  # plots too: '$' must not be read as mathtext
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    ablations = (out / "tables" / "ablations__RN50__openai.md").read_text(encoding="utf-8").splitlines()
    rows = [line for line in ablations if line.startswith("|")]
    assert rows == ["| Method | 1 shot |", "|:---|---:|", "| CMM | 60.00 ± 2.00 |",
                    "| CMM (a\\|b\\*c\\*\\`d\\`\\<x\\>\\[l\\](javascript:1)\\\\input{/etc/passwd}$\\\\frac{1$) "
                    "| **69.50 ± 0.50** |"]
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 3 for row in rows)  # two cells in every row
    tex = (out / "tables" / "ablations__RN50__openai.tex").read_text(encoding="utf-8")
    assert r"\textbar{}" in tex and r"\textbackslash{}input\{/etc/passwd\}\$\textbackslash{}frac\{1\$" in tex
    assert "\\input" not in tex.replace(r"\textbackslash{}input", "")
    assert any(p.name.startswith("acc__") and "ablations" in p.name for p in out.rglob("*.svg"))


def test_escape_helpers() -> None:
    assert one_line("a\nb\x00c\u2028d\te\x1b[31m") == "a\\nb\\x00c\\u2028d\\te\\x1b[31m"
    assert markdown_text("x | *y* snake_case _lead") == "x \\| \\*y\\* snake_case \\_lead"
    assert [csv_cell(v) for v in ("=1", "+a", "-2+3", "@x", "\tx", "\rx", "-0.5", "1e-05", "ok")] == \
        ["'=1", "'+a", "'-2+3", "'@x", "'\\tx", "'\\rx", "-0.5", "1e-05", "ok"]
    assert latex_escape("50% & <b>|c~") == r"50\% \& \textless{}b\textgreater{}\textbar{}c\textasciitilde{}"
