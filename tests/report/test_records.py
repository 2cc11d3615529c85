"""Reading records: invalid and duplicate files are skipped with a warning; no records is a user error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.shared.errors import ReportError, UserError
from stages.report import build_report
from stages.report.records import load_records


def test_invalid_records_are_skipped_with_a_warning(runs: Path, write_record) -> None:
    good = write_record("dtd", "RN50", "openai", "cmm", 1, 1, 50.0)
    broken = good.with_name("shots1_seed2.json")
    broken.write_text("{not json", encoding="utf-8")
    wrong = good.with_name("shots1_seed3.json")
    wrong.write_text(json.dumps({"schema": "cmm-run/1", "dataset": "dtd"}), encoding="utf-8")
    bad_acc = write_record("dtd", "RN50", "openai", "cmm", 2, 1, 50.0, metrics={"test_top1": "high"})
    messages: list[str] = []
    records, skipped = load_records(runs, messages.append)
    assert [r.path for r in records] == [good]
    assert set(skipped) == {broken, wrong, bad_acc}
    assert len(messages) == 3 and all("\n" not in m for m in messages)
    assert any(str(broken) in m and "not valid JSON" in m for m in messages)
    assert any(str(wrong) in m and '"model"' in m for m in messages)
    assert any(str(bad_acc) in m and "test_top1" in m for m in messages)


def test_duplicate_run_is_counted_once(runs: Path, write_record) -> None:
    first = write_record("dtd", "RN50", "openai", "cmm", 1, 1, 50.0)
    copy = runs / "backup" / first.name
    copy.parent.mkdir()
    copy.write_text(first.read_text(), encoding="utf-8")
    messages: list[str] = []
    records, skipped = load_records(runs, messages.append)
    assert len(records) == 1 and skipped == [copy] and "same run" in messages[0]


def test_no_records_is_a_one_line_user_error(runs: Path, tmp_path: Path) -> None:
    runs.mkdir()
    (runs / "shots1_seed1.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ReportError) as info:
        build_report(runs, tmp_path / "out", progress=lambda _: None)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "\n" not in message and str(runs) in message and "pipeline fit" in message
    with pytest.raises(ReportError, match="does not exist"):
        build_report(tmp_path / "nowhere", tmp_path / "out", progress=lambda _: None)


def test_unknown_format_is_refused(runs: Path, tmp_path: Path, write_record) -> None:
    write_record("dtd", "RN50", "openai", "cmm", 1, 1, 50.0)
    with pytest.raises(ReportError, match="'xls'"):
        build_report(runs, tmp_path / "out", formats=("md", "xls"), progress=lambda _: None)
