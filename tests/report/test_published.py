"""The packaged published numbers and backbone matching."""

from __future__ import annotations

import csv
from importlib import resources

from stages.report.published import backbone_key, load_published, matching, parse_published


def test_packaged_csv_keeps_its_source_column() -> None:
    text = resources.files("stages.report").joinpath("data", "published_rn50_fewshot_top1.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert rows and set(rows[0]) == {"method", "backbone", "dataset", "shots", "top1", "source"}
    assert all(r["source"] for r in rows)


def test_series_are_split_by_source() -> None:
    series = {(s.method, s.short_source): s for s in load_published()}
    tip = series[("Tip-Adapter-F", "Tip-Adapter repository")]
    assert tip.at("dtd", 16) == 66.55 and tip.backbone == "RN50"
    assert series[("Tip-Adapter-F", "APE repository")].at("dtd", 16) == 66.61
    zero = series[("Zero-shot CLIP", "Tip-Adapter repository")]
    assert zero.zero_shot_only and zero.at("dtd", 16) == zero.at("dtd", 0) == 42.20


def test_backbone_matching() -> None:
    assert backbone_key("RN50") == backbone_key("RN50-quickgelu") == "RN50"
    assert backbone_key("ViT-B-32") == backbone_key("ViT-B/32")
    assert backbone_key("RN50") != backbone_key("RN101")
    series = load_published()
    assert matching(series, "RN50") and matching(series, "RN50-quickgelu")
    assert matching(series, "ViT-B-32") == [] and matching(series, "RN101") == []


def test_comment_lines_are_ignored() -> None:
    text = "# source: somewhere\nmethod,backbone,dataset,shots,top1,source\r\nX,ViT-B/16,dtd,4,50.5,paper\r\n"
    (only,) = parse_published(text)
    assert only.top1 == {("dtd", 4): 50.5} and matching([only], "ViT-B-16") == [only]
