"""Cell statistics: population std, incomplete cells, seed-wise averages."""

from __future__ import annotations

import math

from stages.report.stats import Missing, Stat, Value, average_stat, average_values


def test_stat_mean_and_population_std() -> None:
    stat = Stat(values={1: 50.0, 2: 52.0, 3: 57.0}, expected=(1, 2, 3))
    assert stat.complete
    assert stat.mean == 53.0
    assert math.isclose(stat.std, math.sqrt((9 + 1 + 16) / 3))  # ddof=0, by hand


def test_incomplete_stat_has_no_mean() -> None:
    stat = Stat(values={1: 80.0, 2: 82.0}, expected=(1, 2, 3))
    assert not stat.complete and stat.mean is None and stat.std is None
    assert stat.shortfall().startswith("2/3 seeds") and "missing 3" in stat.shortfall()


def test_average_is_seedwise() -> None:
    a = Stat(values={1: 50.0, 2: 52.0, 3: 57.0}, expected=(1, 2, 3))
    b = Stat(values={1: 70.0, 2: 70.0, 3: 73.0}, expected=(1, 2, 3))
    avg = average_stat([("dtd", a), ("eurosat", b)], "Average")
    assert isinstance(avg, Stat)
    assert avg.values == {1: 60.0, 2: 61.0, 3: 65.0}
    assert avg.mean == 62.0
    assert math.isclose(avg.std, math.sqrt((4 + 1 + 9) / 3))


def test_average_refuses_incomplete_rows() -> None:
    a = Stat(values={1: 60.0, 2: 61.0, 3: 62.0}, expected=(1, 2, 3))
    b = Stat(values={1: 80.0, 2: 82.0}, expected=(1, 2, 3))
    avg = average_stat([("dtd", a), ("eurosat", b)], "Average, 16 shots")
    assert isinstance(avg, Missing) and "eurosat" in avg.note and "dtd" not in avg.note


def test_average_values_needs_every_row() -> None:
    assert average_values([("a", 1.0), ("b", 2.0)], "x") == Value(1.5)
    assert isinstance(average_values([("a", 1.0), ("b", None)], "x"), Missing)
