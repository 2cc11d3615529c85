"""Every method ``pipeline fit`` knows has a display name, a place in the report's order and its own colour."""

from __future__ import annotations

from stages.fit.methods import METHODS
from stages.report.groups import METHOD_ORDER
from stages.report.style import METHOD_NAMES, display_name, series_style


def test_every_fit_method_is_named_ordered_and_coloured():
    assert set(METHODS) <= set(METHOD_NAMES) and set(METHODS) <= set(METHOD_ORDER)
    assert display_name("proker") == "ProKeR" and display_name("ape+released") == "APE (released view protocol)"
    colours = {series_style(m).colour for m in METHODS}
    assert len(colours) == len(METHODS)
    assert series_style("proker").marker and series_style("ape").linestyle == "-"  # a fixed entry, not a hashed one
