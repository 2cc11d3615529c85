"""Plots: valid PNG and SVG, random-weight titles, published curves, gap picture, and life without them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import stages.report.build as build_module
from stages.report import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _svg_text(path: Path) -> str:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return " ".join(t for t in root.itertext())


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory, make_writer, projection_writer) -> dict[str, list[Path]]:
    """One report with plots, shared by the tests of this module (plotting is the slow part)."""
    tmp_path = tmp_path_factory.mktemp("plots")
    runs = tmp_path / "runs"
    write_record = make_writer(runs)
    for seed in (1, 2):
        for shots, base in ((1, 50.0), (4, 60.0)):
            path = write_record("dtd", "RN50", "openai", "cmm", shots, seed, base + seed)
            write_record("dtd", "ViT-B-32", "none", "cmm", shots, seed, 10.0 + seed)
        write_record("dtd", "RN50", "openai", "zero_shot", 0, seed, 40.0)
    projection_writer(path)  # RN50 cmm, 4 shots, seed 2
    return build_report(runs, tmp_path / "out", formats=("md",), progress=lambda _: None)


def test_plots_are_valid_png_and_svg(plotted: dict[str, list[Path]]) -> None:
    assert plotted["png"] and len(plotted["png"]) == len(plotted["svg"])
    for png in plotted["png"]:
        assert png.read_bytes()[:8] == PNG_MAGIC
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    for svg in plotted["svg"]:
        _svg_text(svg)


def test_curves_label_random_weights_and_published(plotted: dict[str, list[Path]]) -> None:
    svgs = {p.name: p for p in plotted["svg"]}
    rn50 = _svg_text(svgs["acc__RN50__openai__dtd.svg"])
    assert "Zero-shot CLIP" in rn50 and "zero_shot" not in rn50 and "RANDOM WEIGHTS" not in rn50
    assert "published" not in rn50                      # published curves have figures of their own
    for n, source in ((1, "APE repository"), (2, "Tip-Adapter repository")):
        published = _svg_text(svgs[f"acc__RN50__openai__dtd__published-{n}.svg"])
        assert f"published ({source})" in published and "CMM" in published
        assert "published: Tip-Adapter-F (RN50)" in published
    vit = _svg_text(svgs["acc__ViT-B-32__none__dtd.svg"])
    assert "RANDOM WEIGHTS — not a CLIP result" in vit and "published" not in vit


def test_gap_picture_from_npz(plotted: dict[str, list[Path]]) -> None:
    gap = [p for p in plotted["svg"] if p.name.startswith("gap__")]
    assert [p.name for p in gap] == ["gap__RN50__openai__dtd__cmm.svg"]
    text = _svg_text(gap[0])
    assert "before the map" in text and "after the map" in text


def test_index_lists_what_was_written(plotted: dict[str, list[Path]]) -> None:
    (index,) = plotted["index"]
    text = index.read_text(encoding="utf-8")
    for path in plotted["md"] + plotted["png"]:
        assert path.relative_to(index.parent).as_posix() in text


def test_tables_without_matplotlib(runs: Path, tmp_path: Path, write_record, monkeypatch) -> None:
    write_record("dtd", "RN50", "openai", "cmm", 1, 1, 50.0)
    monkeypatch.setattr(build_module, "have_matplotlib", lambda: False)
    messages: list[str] = []
    written = build_report(runs, tmp_path / "out", progress=messages.append)
    assert written["md"] and written["png"] == [] and written["svg"] == []
    assert any("matplotlib is not installed" in m for m in messages)


def test_projection_reader(tmp_path: Path, projection_writer) -> None:
    from stages.report.plot_gap import load_projection

    good = projection_writer(tmp_path / "shots1_seed1.json", n=12, classes=4)
    arrays = load_projection(good)
    assert arrays["proj_images_before"].shape == (12, 2) and arrays["proj_protos_after"].shape == (4, 2)
    plain = tmp_path / "plain.npz"
    np.savez(plain, W=np.zeros((2, 2)))
    assert load_projection(plain) is None                      # a method that maps nothing: no picture
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="cannot be read"):
        load_projection(corrupt)
    skewed = tmp_path / "skewed.npz"
    np.savez(skewed, **{**arrays, "proj_labels": np.zeros(5, int)})
    with pytest.raises(ValueError, match="inconsistent shapes"):
        load_projection(skewed)
