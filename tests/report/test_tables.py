"""build_report tables on hand-made records: numbers, missing cells, and the four formats."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from stages.report import build_report


def _report(runs: Path, out: Path, **kwargs) -> dict[str, list[Path]]:
    messages: list[str] = []
    written = build_report(runs, out, plots=False, progress=messages.append, **kwargs)
    written["_messages"] = messages  # type: ignore[assignment]
    return written


def _json(out: Path, name: str) -> dict:
    return json.loads((out / "tables" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.usefixtures("small_grid")
def test_means_stds_and_average_by_hand(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _report(runs, out)
    table = _json(out, "acc__RN50__openai__cmm")
    rows = {row["Dataset"]: row for row in table["rows"]}
    dtd1 = rows["dtd"]["1 shot"]
    assert dtd1["mean"] == pytest.approx(53.0)                      # (50 + 52 + 57) / 3
    assert dtd1["std"] == pytest.approx(math.sqrt(26 / 3))          # population std
    assert rows["eurosat"]["1 shot"]["mean"] == pytest.approx(71.0)
    assert rows["eurosat"]["1 shot"]["std"] == pytest.approx(math.sqrt(2))
    average = rows["Average (2 datasets)"]["1 shot"]
    assert average["mean"] == pytest.approx(62.0)                   # per seed 60, 61, 65
    assert average["std"] == pytest.approx(math.sqrt(14 / 3))
    assert rows["dtd"]["16 shots"]["mean"] == pytest.approx(61.0)
    md = (out / "tables" / "acc__RN50__openai__cmm.md").read_text(encoding="utf-8")
    assert "| dtd | 53.00 ± 2.94 | 61.00 ± 0.82 |" in md
    assert "| Average (2 datasets) | 62.00 ± 2.16 |" in md


@pytest.mark.usefixtures("small_grid")
def test_missing_cells_stay_missing_and_are_not_averaged(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _report(runs, out)
    table = _json(out, "acc__RN50__openai__cmm")
    rows = {row["Dataset"]: row for row in table["rows"]}
    partial = rows["eurosat"]["16 shots"]
    assert partial["complete"] is False and partial["mean"] is None
    assert partial["values"] == {"1": 80.0, "2": 82.0}
    assert "2/3 seeds" in partial["note"]
    assert "missing" in rows["Average (2 datasets)"]["16 shots"]
    md = (out / "tables" / "acc__RN50__openai__cmm.md").read_text(encoding="utf-8")
    assert "| eurosat | 71.00 ± 1.41 | —[1] |" in md
    assert "[1] eurosat, 16 shots: 2/3 seeds" in md
    assert "81.00" not in md and "71.00 ± 1.41 | 81" not in md      # the partial mean is never shown
    assert not re.search(r"70\.50|70\.75", md)                      # nor any average that used it
    # the single-seed zero-shot group is complete on its own terms
    zs = {row["Dataset"]: row for row in _json(out, "acc__RN50__openai__zero_shot")["rows"]}
    assert zs["dtd"]["0 shots"]["mean"] == 40.0 and zs["Average (2 datasets)"]["0 shots"]["mean"] == 37.5


@pytest.mark.usefixtures("small_grid")
def test_csv_parses_with_numbers_and_blanks(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = _report(runs, out)
    assert len(written["csv"]) == len(written["md"]) == len(written["tex"]) == len(written["json"])
    with open(out / "tables" / "acc__RN50__openai__cmm.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by = {r["Dataset"]: r for r in rows}
    assert float(by["dtd"]["1 shot mean"]) == pytest.approx(53.0)
    assert float(by["dtd"]["1 shot std"]) == pytest.approx(math.sqrt(26 / 3), abs=1e-5)
    assert by["eurosat"]["16 shots mean"] == "" and by["Average (2 datasets)"]["16 shots mean"] == ""
    for path in written["csv"]:
        with open(path, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
        assert len({len(line) for line in lines}) == 1, path


def _tabulars(tex: str) -> list[tuple[str, list[str]]]:
    """(column spec, rows) of every tabular in a .tex table."""
    out = []
    for body in tex.split(r"\begin{tabular}")[1:]:
        spec = re.match(r"\{([lr]+)\}", body).group(1)
        body = body.split(r"\end{tabular}")[0]
        out.append((spec, [line for line in body.splitlines() if line.rstrip().endswith(r"\\")]))
    return out


@pytest.mark.usefixtures("small_grid")
def test_latex_is_wellformed_booktabs(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = _report(runs, out)
    for path in written["tex"]:
        tex = path.read_text(encoding="utf-8")
        assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1, path
        assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") >= 1, path
        assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == tex.count(r"\begin{tabular}")
        for spec, rows in _tabulars(tex):
            assert rows, path
            for row in rows:
                assert len(re.split(r"(?<!\\)&", row)) == len(spec), (path, row)
        assert not re.search(r"(?<!\\)_", tex), path                 # every underscore escaped
        assert "±" not in tex and "—" not in tex
    tex = (out / "tables" / "acc__RN50__openai__cmm.tex").read_text(encoding="utf-8")
    assert r"53.00\,{\scriptsize$\pm$2.94}" in tex                 # the papers' mean with a small std
    assert r"---\textsuperscript{1}" in tex


@pytest.mark.usefixtures("small_grid")
def test_main_table_has_methods_as_rows_and_datasets_as_columns(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _report(runs, out, published=False)
    table = _json(out, "main__RN50__openai__shots1")
    assert [c["name"] for c in table["columns"]] == ["Method", "dtd", "eurosat", "Average"]
    rows = {row["Method"]: row for row in table["rows"]}
    assert list(rows) == ["Zero-shot CLIP (0 shots)", "CMM"]         # display names, not keys
    assert rows["Zero-shot CLIP (0 shots)"]["dtd"]["mean"] == 40.0 and rows["CMM"]["dtd"]["mean"] == 53.0
    assert rows["CMM"]["Average"]["mean"] == pytest.approx(62.0)
    assert not (out / "tables" / "main__RN50__openai__shots0.json").exists()


@pytest.mark.usefixtures("small_grid")
def test_published_rows_only_for_matching_backbone(runs: Path, tmp_path: Path, write_record) -> None:
    for seed in (1, 2, 3):
        write_record("dtd", "ViT-B-32", "openai", "cmm", 16, seed, 70.0 + seed)
        write_record("dtd", "ViT-B-32", "openai", "tip_adapter", 16, seed, 65.0 + seed)
    out = tmp_path / "out"
    _report(runs, out)
    rn50 = _json(out, "main__RN50__openai__shots16")
    rows = {row["Method"]: row for row in rn50["rows"]}
    name = "published: Tip-Adapter-F [Tip-Adapter]"
    assert name in rows and "published: Tip-Adapter-F [APE]" in rows
    assert rows[name]["dtd"] == {"value": 66.55}
    assert rows[name]["Average"]["value"] == pytest.approx((66.55 + 84.54) / 2)
    assert not any(cell.get("best") for cell in rows[name].values() if isinstance(cell, dict))  # never bold
    # measured means are untouched by the published rows
    assert rows["CMM"]["dtd"]["mean"] == pytest.approx(61.0)
    assert any("exp.log" in note for note in rn50["notes"])
    vit = (out / "tables" / "main__ViT-B-32__openai__shots16.md").read_text(encoding="utf-8")
    assert "published" not in vit
    _report(runs, tmp_path / "plain", published=False)
    assert "published" not in (tmp_path / "plain" / "tables" / "main__RN50__openai__shots16.md").read_text()


def test_random_weight_runs_are_labelled(runs: Path, tmp_path: Path, write_record) -> None:
    for seed in (1, 2):
        write_record("dtd", "ViT-B-32", "none", "cmm", 1, seed, 10.0 + seed, hyperparameters={"lr": 0.1})
        write_record("dtd", "RN50", "openai", "cmm", 1, seed, 50.0 + seed)
    out = tmp_path / "out"
    written = _report(runs, out)
    label = "RANDOM WEIGHTS — not a CLIP result"
    for path in written["md"] + written["json"]:
        text = path.read_text(encoding="utf-8")
        if "__none" in path.name:
            assert label in text, path
        else:
            assert "RANDOM WEIGHTS" not in text, path
    assert any("hparams__ViT-B-32__none" in p.name for p in written["md"])
    tex = (out / "tables" / "acc__ViT-B-32__none__cmm.tex").read_text(encoding="utf-8")
    assert r"\caption{CMM: test top-1 (\%) --- ViT-B-32 (none) [RANDOM WEIGHTS --- not a CLIP result]}" in tex
    assert label in (out / "README.md").read_text(encoding="utf-8")


def test_shift_gap_and_hyperparameter_tables(runs: Path, tmp_path: Path, write_record) -> None:
    gap = {"before": {"centroid_gap": 0.8, "cos_own": 0.2, "cos_wrong": 0.1, "proto_acc": 40.0},
           "after": {"centroid_gap": 0.2, "cos_own": 0.6, "cos_wrong": 0.3, "proto_acc": 60.0}}
    for seed, lr in zip((1, 2, 3), (0.001, 0.001, 0.01)):
        metrics = {"test_top1": 60.0 + seed, "shift": {"imagenet_v2": 50.0 + seed, "imagenet_r": 40.0}}
        write_record("imagenet", "RN50", "openai", "cmm", 16, seed, 0.0, metrics=metrics, gap=gap,
                     hyperparameters={"lr": lr, "alpha": 1.0})
        write_record("imagenet", "RN50", "openai", "tip_adapter", 16, seed, 55.0,
                     gap={"before": gap["before"]})
    out = tmp_path / "out"
    _report(runs, out)
    shift = {r["Method"]: r for r in _json(out, "shift__RN50__openai")["rows"]}
    assert shift["cmm"]["Source top-1"]["mean"] == pytest.approx(62.0)
    assert shift["cmm"]["imagenet_v2"]["mean"] == pytest.approx(52.0)
    assert shift["cmm"]["Target average"]["mean"] == pytest.approx(46.0)   # per seed (51+40)/2 ...
    assert "tip_adapter" not in shift
    gap_rows = {r["Method"]: r for r in _json(out, "gap__RN50__openai")["rows"]}
    assert gap_rows["cmm"]["centroid_gap after"]["mean"] == pytest.approx(0.2)
    assert gap_rows["tip_adapter"]["centroid_gap before"]["mean"] == pytest.approx(0.8)
    assert gap_rows["tip_adapter"]["centroid_gap after"]["n"] == 0          # not recorded: shown as —
    hp = _json(out, "hparams__RN50__openai__cmm")["rows"][0]
    assert hp["alpha"] == "1"
    assert hp["lr"] == "0.001 (2/3; seed 1: 0.001, seed 2: 0.001, seed 3: 0.01)"
