"""LaTeX tables fit a page by the stated rule (stages/report/latex.py), checked on the written .tex without
compiling: every tabular's width, estimated from its own cells, is within the page at a scale of at least
MIN_SCALE; it is resized exactly when wider than the page; too wide a table is split into the fewest balanced
parts, each repeating the label columns. The issue's case: 20 run labels on 11 datasets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stages.report import build_report
from stages.report.latex import COLUMN_GAP_PT, MIN_SCALE, PT_PER_CHAR, SMALL_PT_PER_CHAR, TEXT_WIDTH_PT, layout
from stages.report.stats import Stat
from stages.report.table import Column, Table

DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
            "sun397", "dtd", "eurosat", "ucf101")
METHODS = ("zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "gda", "lp_pp", "cmm")
ABLATIONS = ("no_triplet", "frozen_prototypes", "no_fusion", "plain_map", "bias", "val_search",
             "frozen_prototypes+no_triplet", "tpl_imagenet7", "aug", "no_fusion+no_triplet")
VARIANTS = ("tip_adapter+aug", "tip_adapter_f+aug", "linear_probe+tpl_imagenet7")


def visible_width(cell: str) -> float:
    """A cell's width from its LaTeX: the \\scriptsize std at the small size, everything else at the normal."""
    small = "".join(re.findall(r"\{\\scriptsize\$\\pm\$([^}]*)\}", cell))
    text = re.sub(r"\\,\{\\scriptsize\$\\pm\$[^}]*\}", "", cell)
    text = re.sub(r"\\textbf\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\text(backslash|asciitilde|asciicircum|less|greater|bar)\{\}", "x", text)
    text = re.sub(r"\\textsuperscript\{(\d+)\}", r"\1", text).replace("$\\pm$", "±").replace("\\", "")
    return len(text) * PT_PER_CHAR + ((len(small) + 1) * SMALL_PT_PER_CHAR + 2.0 if small else 0.0)


def tabulars(tex: str) -> list[tuple[bool, list[list[str]]]]:
    """(resized, rows of cells) of every tabular of a .tex table."""
    out = []
    for chunk in tex.split(r"\end{tabular}")[:-1]:
        before, body = chunk.rsplit(r"\begin{tabular}", 1)
        rows = [re.split(r"(?<!\\)&", line[:-2].strip()) for line in body.splitlines()
                if line.endswith(r"\\") and not line.startswith("\\")]
        out.append((before.endswith(r"\resizebox{\linewidth}{!}{"), [[c.strip() for c in row] for row in rows]))
    return out


@pytest.fixture(scope="module")
def wide(tmp_path_factory, make_writer) -> Path:
    """A report of 20 run labels (7 methods, 10 ablations, 3 variants) on the 11 datasets at 16 shots."""
    root = tmp_path_factory.mktemp("wide")
    write = make_writer(root / "runs")
    labels = list(METHODS) + [f"cmm+{a}" for a in ABLATIONS] + list(VARIANTS)
    for d_index, dataset in enumerate(DATASETS):
        for m_index, label in enumerate(labels):
            method = label.split("+")[0]
            for seed in (1, 2, 3):
                write(dataset, "ViT-B-16", "openai", method, 0 if method == "zero_shot" else 16, seed,
                      40.0 + m_index + d_index + seed * 0.37, method_label=label,
                      gap={"before": {"centroid_gap": 0.8, "cos_own": 0.25, "cos_wrong": 0.2, "proto_acc": 40.0},
                           "after": {"centroid_gap": 0.3, "cos_own": 0.5, "cos_wrong": 0.4, "proto_acc": 60.0}}
                      if method == "cmm" else {})
    out = root / "out"
    build_report(root / "runs", out, formats=("tex", "json"), plots=False, progress=lambda _: None)
    return out


def test_every_tabular_fits_the_page_by_the_rule(wide: Path) -> None:
    for path in sorted((wide / "tables").glob("*.tex")):
        tex = path.read_text(encoding="utf-8")
        parts = tabulars(tex)
        assert parts, path
        for resized, rows in parts:
            widths = [max(visible_width(row[j]) for row in rows) + COLUMN_GAP_PT for j in range(len(rows[0]))]
            natural = sum(widths)
            assert natural <= TEXT_WIDTH_PT / MIN_SCALE or len(rows[0]) <= 2, (path.name, natural)
            assert resized == (natural > TEXT_WIDTH_PT), (path.name, natural, resized)
        if len(parts) > 1:
            assert r"\usepackage{graphicx}" in tex or not any(r for r, _ in parts)


def test_main_table_is_methods_only_and_split_in_balanced_parts(wide: Path) -> None:
    tex = (wide / "tables" / "main__ViT-B-16__openai__shots16.tex").read_text(encoding="utf-8")
    parts = tabulars(tex)
    headers = [rows[0] for _, rows in parts]
    assert all(header[0] == "Method" for header in headers)               # the label column in every part
    columns = [c for header in headers for c in header[1:]]
    assert columns == [d.replace("_", r"\_") for d in DATASETS] + ["Average"]  # every dataset once, in order
    sizes = [len(header) - 1 for header in headers]
    assert len(parts) >= 2 and max(sizes) - min(sizes) <= 1               # balanced
    names = [row[0] for row in parts[0][1][1:]]
    assert names == ["Zero-shot CLIP (0 shots)", "Linear probe", "Tip-Adapter", "Tip-Adapter-F", "GDA", "LP++",
                     "CMM"]                                                # methods only: no ablation, no variant
    # fewer parts would not fit: the split is the fewest that does
    table_widths = [sum(max(visible_width(r[j]) for r in rows) + COLUMN_GAP_PT for j in range(1, len(rows[0])))
                    for _, rows in parts]
    label = max(visible_width(r[0]) for r in parts[0][1]) + COLUMN_GAP_PT
    assert label + sum(table_widths) > TEXT_WIDTH_PT / MIN_SCALE


def test_ablation_and_variant_tables_beside_cmm(wide: Path) -> None:
    ablations = (wide / "tables" / "ablations__ViT-B-16__openai__shots16.tex").read_text(encoding="utf-8")
    rows = [row[0] for row in tabulars(ablations)[0][1][1:]]
    assert rows[0] == "CMM" and len(rows) == 11 and all(r.startswith("CMM (") for r in rows[1:])
    assert ablations.split(r"\begin{tabular}")[1].split("CMM &")[1].split("\n")[1] == r"\midrule"  # CMM, a rule
    variants = (wide / "tables" / "variants__ViT-B-16__openai__shots16.tex").read_text(encoding="utf-8")
    rows = [row[0] for row in tabulars(variants)[0][1][1:]]
    assert rows == ["Linear probe", "Linear probe (imagenet7 templates)", "Tip-Adapter",
                    "Tip-Adapter (augmented views)", "Tip-Adapter-F", "Tip-Adapter-F (augmented views)"]


def _table(n_results: int, digits: int = 2) -> Table:
    stat = Stat({1: 71.234, 2: 72.5}, (1, 2))
    return Table("t", "t", [Column("Method", "text")] + [Column(f"d{j}", digits=digits) for j in range(n_results)],
                 rows=[["Tip-Adapter-F", *([stat] * n_results)]])


def test_layout_rule_natural_resized_split() -> None:
    one = layout(_table(3))
    assert len(one) == 1 and not one[0].resized and one[0].scale == 1.0
    mid = layout(_table(7))
    assert len(mid) == 1 and mid[0].resized and MIN_SCALE <= mid[0].scale < 1.0
    split = layout(_table(20))
    assert len(split) == 3 and [len(p.columns) - 1 for p in split] == [7, 7, 6]
    assert all(p.columns[0] == 0 and p.scale >= MIN_SCALE for p in split)
    assert len(layout(_table(14))) == 2  # two parts fit, so not three
