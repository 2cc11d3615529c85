"""Publication-ready report: display names, one fixed colour per method in every report, titles without
machine paths, the best result in bold (Markdown and LaTeX), the headline table atop the index, --metric,
and an average plot that names the methods it cannot show."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stages.shared.errors import ReportError
from stages.report import build_report
from stages.report.style import display_name, series_style, short_model

LOCAL_MODEL = "local-dir:/home/someone/models/my-vit"
LOCAL_WEIGHTS = "local-dir:my-vit@0123456789ab"


def _svg(path: Path) -> tuple[str, str]:
    """(all text of the SVG, the raw file): text for titles and labels, raw for colours."""
    raw = path.read_text(encoding="utf-8")
    return " ".join(ET.fromstring(raw).itertext()), raw


def _write_grid(write_record, methods: dict[str, float], datasets=("dtd", "eurosat"), model="ViT-B-16",
                weights="openai", seeds=(1, 2), shots=(1, 4), extra=None) -> None:
    for d_index, dataset in enumerate(datasets):
        for label, base in methods.items():
            method = label.split("+")[0]
            for k in ([0] if method == "zero_shot" else shots):
                for seed in seeds:
                    top1 = base + 2 * k + seed + d_index
                    metrics = {"test_top1": top1, "test_top5": top1 + 20, "test_mean_per_class": top1 - 5}
                    write_record(dataset, model, weights, method, k, seed, top1, method_label=label,
                                 metrics=metrics, **(extra or {}))


def test_display_names():
    assert display_name("tip_adapter_f") == "Tip-Adapter-F"
    assert display_name("cmm+no_triplet") == "CMM (no triplet)"
    assert display_name("gda") == "GDA" and display_name("lp_pp") == "LP++"
    assert display_name("tip_adapter+tpl_imagenet7+aug") == "Tip-Adapter (imagenet7 templates, augmented views)"
    assert display_name("my_method+x") == "my_method (x)"  # unknown parts shown as they are


def test_styles_are_fixed_by_label_not_by_order():
    assert series_style("cmm").colour == "#d62728" and series_style("linear_probe").colour == "#1f77b4"
    labels = ["cmm", "zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "clap", "gda", "lp_pp"]
    assert len({series_style(m).colour for m in labels}) == len(labels)  # every method its own colour
    variant = series_style("cmm+no_triplet")
    assert variant == series_style("cmm+no_triplet") and variant.colour not in {series_style(m).colour for m in labels}


def test_short_model_strips_paths():
    assert short_model(LOCAL_MODEL) == "my-vit"
    assert short_model("/data/configs/tiny-clip.json") == "tiny-clip"
    assert short_model("hf-hub:laion/CLIP-ViT-B-32") == "laion/CLIP-ViT-B-32"
    assert short_model("ViT-B-32") == "ViT-B-32"


def test_same_method_same_colour_in_two_reports(tmp_path, make_writer):
    """Report A has linear probe and CMM; report B has zero-shot, Tip-Adapter, Tip-Adapter-F and CMM. CMM is
    drawn in its own red in both (by order of appearance it would be the 2nd colour in A, the 4th in B)."""
    _write_grid(make_writer(tmp_path / "a"), {"linear_probe": 50, "cmm": 55})
    _write_grid(make_writer(tmp_path / "b"), {"zero_shot": 40, "tip_adapter": 48, "tip_adapter_f": 52, "cmm": 55})
    plots = {}
    for name in ("a", "b"):
        written = build_report(tmp_path / name, tmp_path / f"out_{name}", formats=("md",), published=False,
                               progress=lambda _: None)
        plots[name] = {p.name: p for p in written["svg"]}
    cmm = series_style("cmm").colour
    for name in ("a", "b"):
        _, raw = _svg(plots[name]["acc__ViT-B-16__openai__dtd.svg"])
        assert f"stroke: {cmm}" in raw
    _, raw_a = _svg(plots["a"]["acc__ViT-B-16__openai__dtd.svg"])
    _, raw_b = _svg(plots["b"]["acc__ViT-B-16__openai__dtd.svg"])
    assert f"stroke: {series_style('linear_probe').colour}" in raw_a
    assert f"stroke: {series_style('linear_probe').colour}" not in raw_b  # colours are not handed out in order
    assert f"stroke: {series_style('tip_adapter_f').colour}" in raw_b


def test_titles_carry_the_short_model_name_not_its_path(tmp_path, make_writer, projection_writer):
    write = make_writer(tmp_path / "runs")
    _write_grid(write, {"zero_shot": 40, "cmm": 55}, model=LOCAL_MODEL, weights=LOCAL_WEIGHTS)
    record = next((tmp_path / "runs").rglob("cmm/shots4_seed1.json"))
    projection_writer(record)
    written = build_report(tmp_path / "runs", tmp_path / "out", formats=("md", "tex", "json"), published=False,
                           progress=lambda _: None)
    assert any(p.name.startswith("gap__") for p in written["svg"])
    for svg in written["svg"]:
        text, _ = _svg(svg)
        assert "my-vit" in text and "/home/someone" not in text, svg.name
    for path in written["md"] + written["tex"]:
        text = path.read_text(encoding="utf-8")
        title = text.splitlines()[0] if path.suffix == ".md" else re.search(r"\\caption\{(.*)\}", text).group(1)
        assert "/home/someone" not in title and "my-vit" in title, path.name
    meta = json.loads(next(p for p in written["json"] if p.name.startswith("acc__")).read_text())["meta"]
    assert meta["model"] == LOCAL_MODEL  # the full id stays in the machine-readable meta


def test_best_result_in_bold_in_markdown_latex_and_json(tmp_path, make_writer):
    _write_grid(make_writer(tmp_path / "runs"), {"zero_shot": 40, "tip_adapter": 48, "cmm": 55})
    out = tmp_path / "out"
    build_report(tmp_path / "runs", out, plots=False, published=False, progress=lambda _: None)
    md = (out / "tables" / "main__ViT-B-16__openai__shots4.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["Method"] == "| Method | dtd | eurosat | Average |"
    # at 4 shots: zero-shot 41.5 / 42.5, Tip-Adapter 57.5 / 58.5, CMM 64.5 / 65.5 (means over seeds 1, 2)
    assert rows["CMM"] == "| CMM | **64.50 ± 0.50** | **65.50 ± 0.50** | **65.00 ± 0.50** |"
    assert "**" not in rows["Tip-Adapter"] and "**" not in rows["Zero-shot CLIP (0 shots)"]
    tex = (out / "tables" / "main__ViT-B-16__openai__shots4.tex").read_text(encoding="utf-8")
    assert r"\textbf{64.50}\,{\scriptsize$\pm$0.50}" in tex and tex.count(r"\textbf{") == 3  # dtd, eurosat, Average
    table = json.loads((out / "tables" / "main__ViT-B-16__openai__shots4.json").read_text())
    cmm = next(row for row in table["rows"] if row["Method"] == "CMM")
    assert [cmm[c].get("best") for c in ("dtd", "eurosat", "Average")] == [True, True, True]
    assert not any(isinstance(cell, dict) and cell.get("best")
                   for row in table["rows"] if row["Method"] != "CMM" for cell in row.values())


def test_headline_table_tops_the_index(tmp_path, make_writer):
    write = make_writer(tmp_path / "runs")
    _write_grid(write, {"zero_shot": 40, "linear_probe": 50, "cmm": 55})
    _write_grid(write, {"cmm+no_triplet": 53}, datasets=("dtd",))  # an ablation run on one dataset only
    out = tmp_path / "out"
    build_report(tmp_path / "runs", out, plots=False, published=False, progress=lambda _: None)
    index = (out / "README.md").read_text(encoding="utf-8")
    headline = index.index("## Headline")
    assert headline < index.index("## Tables")
    section = index[headline:index.index("Conventions:")]
    assert "Test top-1 (%) averaged over 2 datasets — ViT-B-16 (openai)" in section
    assert "| Method | 1 shot | 4 shots |" in section
    # CMM at 4 shots: dtd 64.5, eurosat 65.5 -> 65.00; per-seed averages 64.5 and 65.5 -> std 0.50
    assert "| CMM | **59.00 ± 0.50** | **65.00 ± 0.50** |" in section
    assert "| Linear probe | 54.00 ± 0.50 | 60.00 ± 0.50 |" in section
    assert "| Zero-shot CLIP (0 shots) | 42.00 ± 0.50 | 42.00 ± 0.50 |" in section
    assert "| CMM (no triplet) | — | — |" in section and "CMM (no triplet): not run on eurosat" in section
    assert (out / "tables" / "headline__ViT-B-16__openai.md").exists()


def test_metric_option_picks_what_tables_show(tmp_path, make_writer):
    _write_grid(make_writer(tmp_path / "runs"), {"zero_shot": 40, "cmm": 55})
    for metric, label, offset in (("top5", "top-5", 20), ("mean_per_class", "mean per-class accuracy", -5)):
        out = tmp_path / metric
        build_report(tmp_path / "runs", out, plots=False, progress=lambda _: None, metric=metric)
        table = json.loads((out / "tables" / "acc__ViT-B-16__openai__cmm.json").read_text())
        assert table["title"].startswith(f"CMM: test {label} (%)") and table["meta"]["metric"] == metric
        dtd = next(row for row in table["rows"] if row["Dataset"] == "dtd")
        assert dtd["1 shot"]["mean"] == pytest.approx(55 + 2 + 1.5 + offset)
        main = (out / "tables" / "main__ViT-B-16__openai__shots1.md").read_text()
        assert "published" not in main  # published numbers are top-1 only
    with pytest.raises(ReportError, match="unknown metric 'top3'"):
        build_report(tmp_path / "runs", tmp_path / "bad", plots=False, metric="top3", progress=lambda _: None)


def test_a_record_without_the_metric_shows_missing_not_zero(tmp_path, make_writer):
    write = make_writer(tmp_path / "runs")
    for seed in (1, 2):  # an older record: top-1 only
        write("dtd", "RN50", "openai", "cmm", 1, seed, 50.0 + seed)
    out = tmp_path / "out"
    build_report(tmp_path / "runs", out, plots=False, published=False, metric="top5", progress=lambda _: None)
    table = json.loads((out / "tables" / "acc__RN50__openai__cmm.json").read_text())
    dtd = next(row for row in table["rows"] if row["Dataset"] == "dtd")
    assert dtd["1 shot"]["n"] == 0 and dtd["1 shot"]["mean"] is None


def test_average_plot_names_the_methods_it_cannot_show(tmp_path, make_writer):
    write = make_writer(tmp_path / "runs")
    _write_grid(write, {"zero_shot": 40, "cmm": 55})
    _write_grid(write, {"cmm+no_triplet": 53}, datasets=("dtd",))
    written = build_report(tmp_path / "runs", tmp_path / "out", formats=("md",), published=False,
                           progress=lambda _: None)
    svgs = {p.name: p for p in written["svg"]}
    average, _ = _svg(svgs["acc__ViT-B-16__openai__average__ablations.svg"])
    assert "not shown (not run on every dataset with every seed): CMM (no triplet)" in average
    assert "average over 2 datasets, CMM ablations" in average
    grid, _ = _svg(svgs["acc__ViT-B-16__openai__grid__ablations.svg"])
    assert "CMM (no triplet)" in grid and "dtd" in grid and "eurosat" in grid
    methods, _ = _svg(svgs["acc__ViT-B-16__openai__average.svg"])
    assert "CMM (no triplet)" not in methods and "CMM" in methods  # the methods figure: defaults only


def test_bands_can_be_switched_off(tmp_path, make_writer):
    _write_grid(make_writer(tmp_path / "runs"), {"cmm": 55}, datasets=("dtd",))
    sizes = {}
    for bands in (True, False):
        written = build_report(tmp_path / "runs", tmp_path / f"out{bands}", formats=("md",), published=False,
                               bands=bands, progress=lambda _: None)
        _, raw = _svg(next(p for p in written["svg"] if p.name == "acc__ViT-B-16__openai__dtd.svg"))
        sizes[bands] = raw.count("PolyCollection") + raw.count("fill-opacity: 0.08")
    assert sizes[True] > 0 and sizes[False] == 0


def test_files_of_an_earlier_report_are_named_not_deleted(tmp_path, make_writer):
    """A second report into the same folder with fewer methods: the first one's tables stay (they may be a
    user's), and one note says how many the index does not list."""
    _write_grid(make_writer(tmp_path / "runs"), {"zero_shot": 40, "tip_adapter": 48, "cmm": 55})
    out, notes = tmp_path / "out", []
    build_report(tmp_path / "runs", out, plots=False, published=False, progress=notes.append)
    assert not [n for n in notes if n.startswith("note:")]
    old = out / "tables" / "acc__ViT-B-16__openai__tip_adapter.md"
    assert old.exists()
    build_report(tmp_path / "runs", out, plots=False, published=False, progress=notes.append, methods=["cmm"])
    (note,) = [n for n in notes if n.startswith("note:")]
    assert old.exists() and "tip_adapter" in note and str(out) in note and "not this report's" in note
    assert "acc__ViT-B-16__openai__tip_adapter" not in (out / "README.md").read_text(encoding="utf-8")
