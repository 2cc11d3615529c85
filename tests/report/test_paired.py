"""CMM's paired differences against every other method: hand-checked means and intervals, missing triples, variants,
and the table in every format and in the report's index."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stages.report import build_report
from stages.report.groups import group_records
from stages.report.paired import hierarchical_bootstrap, paired_differences, paired_table
from stages.report.style import metric_value
from stages.shared.record import RunRecord


def record(method: str, dataset: str, shots: int, seed: int, top1: float, label: str = "") -> RunRecord:
    return RunRecord(dataset=dataset, model="RN50", weights="openai", method=method, shots=shots, seed=seed,
                     metrics={"test_top1": top1}, method_label=label or method)


def groups(records: list[RunRecord]) -> dict:
    (family,) = group_records(records)
    return {g.method_label: g for g in family.groups} | {"_family": family}


def two_methods(seeds: int) -> list[RunRecord]:
    """CMM ahead of GDA by 1, 2, 3 points on seeds 1, 2, 3 (repeated for more seeds), at 1 and 4 shots."""
    out = []
    for seed in range(1, seeds + 1):
        lead = 1 + (seed - 1) % 3
        for shots in (1, 4):
            out += [record("gda", "dtd", shots, seed, 60.0 + shots), record("cmm", "dtd", shots, seed, 60.0 + shots + lead)]
    return out


def test_mean_is_exact_and_the_interval_is_the_hand_computed_one():
    g = groups(two_methods(3))
    diffs = paired_differences(g["cmm"], g["gda"], metric_value("top1"))
    assert diffs == {("dtd", k, s): float(s) for k in (1, 4) for s in (1, 2, 3)}
    result = hierarchical_bootstrap(diffs)
    assert result.mean == 2.0 and result.n_triples == 6 and result.n_datasets == 1
    # three seeds drawn with replacement from leads {1, 2, 3}: all three 1s has probability 1/27 > 2.5%,
    # so the 2.5th and 97.5th percentiles of the resampled means are exactly 1 and 3
    assert (result.low, result.high) == (1.0, 3.0)


def test_interval_shrinks_with_more_seeds_and_keeps_the_mean():
    narrow = hierarchical_bootstrap(paired_differences(*(groups(two_methods(12))[m] for m in ("cmm", "gda")),
                                                       metric_value("top1")))
    assert narrow.mean == pytest.approx(2.0) and narrow.n_triples == 24
    assert 1.0 < narrow.low < 2.0 < narrow.high < 3.0
    # normal approximation: sd of the seed leads sqrt(2/3), over 12 seeds: 1.96 * 0.236 = 0.46
    assert narrow.high - narrow.low == pytest.approx(2 * 1.96 * (2 / 3) ** 0.5 / 12 ** 0.5, abs=0.12)


def test_datasets_are_the_outer_level():
    """Two datasets, no seed noise (+1 on one, +3 on the other): resampling the datasets gives [1, 3]; a bootstrap
    over the six triples alone would claim far more precision."""
    records = []
    for dataset, lead in (("dtd", 1.0), ("eurosat", 3.0)):
        for seed in (1, 2, 3):
            records += [record("gda", dataset, 2, seed, 50.0), record("cmm", dataset, 2, seed, 50.0 + lead)]
    g = groups(records)
    result = hierarchical_bootstrap(paired_differences(g["cmm"], g["gda"], metric_value("top1")))
    assert result.mean == 2.0 and result.n_datasets == 2
    assert (result.low, result.high) == (1.0, 3.0)


def test_triples_one_method_lacks_are_left_out():
    records = two_methods(3)
    records = [r for r in records if not (r.method == "gda" and r.seed == 3 and r.shots == 4)]  # gda lacks one
    records.append(record("cmm", "eurosat", 1, 1, 99.0))                                      # gda never ran it
    records.append(record("gda", "dtd", 16, 1, 10.0))                                        # cmm never ran it
    g = groups(records)
    diffs = paired_differences(g["cmm"], g["gda"], metric_value("top1"))
    assert sorted(diffs) == [("dtd", 1, 1), ("dtd", 1, 2), ("dtd", 1, 3), ("dtd", 4, 1), ("dtd", 4, 2)]
    assert hierarchical_bootstrap(diffs).mean == pytest.approx((1 + 2 + 3 + 1 + 2) / 5)


def test_a_metric_a_record_lacks_leaves_its_triple_out():
    g = groups(two_methods(3))
    diffs = paired_differences(g["cmm"], g["gda"], metric_value("top5"))
    assert diffs == {}


def test_bootstrap_is_reproducible_and_a_single_triple_has_no_interval():
    diffs = {("dtd", 1, s): float(s) ** 2 for s in (1, 2, 3)} | {("eurosat", 1, s): -float(s) for s in (1, 2)}
    assert hierarchical_bootstrap(diffs) == hierarchical_bootstrap(diffs)
    single = hierarchical_bootstrap({("dtd", 1, 1): 2.5})
    assert single.mean == 2.5 and single.low is None and single.high is None


def test_table_compares_cmm_with_every_other_group_including_its_variants():
    records = two_methods(3)
    for seed in (1, 2, 3):
        records.append(record("cmm", "dtd", 1, seed, 60.0, label="cmm+no_triplet"))
        records.append(record("zero_shot", "dtd", 1, seed, 58.0))
    table = paired_table(groups(records)["_family"])
    rows = [(r[0], r[1], r[2].value) for r in table.rows]
    assert rows == [("Zero-shot CLIP", "1 shot", pytest.approx(5.0)), ("Zero-shot CLIP", "all", pytest.approx(5.0)),
                    ("GDA", "1 shot", 2.0), ("GDA", "4 shots", 2.0), ("GDA", "all", 2.0),
                    ("CMM (no triplet)", "1 shot", pytest.approx(3.0)), ("CMM (no triplet)", "all", pytest.approx(3.0))]
    assert [r[5].value for r in table.rows] == [3, 3, 3, 3, 6, 3, 3]          # triples behind each mean


def test_no_table_without_cmm_or_without_a_second_method():
    assert paired_table(groups([record("gda", "dtd", 1, 1, 50.0), record("lp_pp", "dtd", 1, 1, 51.0)])["_family"]) is None
    assert paired_table(groups([record("cmm", "dtd", 1, 1, 50.0)])["_family"]) is None


def test_report_writes_the_table_in_every_format_and_the_index(write_record, runs: Path, tmp_path: Path):
    for seed, lead in zip((1, 2, 3), (1.0, 2.0, 3.0)):
        write_record("dtd", "RN50", "openai", "gda", 1, seed, 60.0)
        write_record("dtd", "RN50", "openai", "cmm", 1, seed, 60.0 + lead)
    out = tmp_path / "out"
    build_report(runs, out, plots=False, progress=lambda _: None)
    stem = out / "tables" / "paired__RN50__openai"
    doc = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert doc["meta"]["kind"] == "paired" and doc["meta"]["interval"]["resamples"] == 10_000
    gda_all = [row for row in doc["rows"] if row["Method"] == "GDA" and row["Shots"] == "all"][0]
    assert gda_all["Mean difference"] == {"value": 2.0} and gda_all["95% low"] == {"value": 1.0}
    assert gda_all["Triples"] == {"value": 3}
    rows = list(csv.DictReader(stem.with_suffix(".csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0]["Method"] == "GDA" and float(rows[0]["Mean difference"]) == 2.0
    assert "| GDA | 1 shot | 2.00 | 1.00 | 3.00 | 3 | 1 |" in stem.with_suffix(".md").read_text(encoding="utf-8")
    assert r"\caption{CMM against each method" in stem.with_suffix(".tex").read_text(encoding="utf-8")
    index = (out / "README.md").read_text(encoding="utf-8")
    assert "## CMM against each method (paired)" in index and "| GDA | all | 2.00 | 1.00 | 3.00 | 3 | 1 |" in index
