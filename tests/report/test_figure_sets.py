"""Plots styled by meaning (issue 21 item 4): one fixed colour per method, CMM's variants in CMM's reds with
their own line and marker, never two curves of one figure alike, at most MAX_SERIES curves per figure (methods
and CMM ablations apart, CMM's default in both), and bands only where they stay legible. Checked on the lines
of the real figures."""

from __future__ import annotations

import colorsys
import pytest

from stages.report.groups import group_records
from stages.report.plot_common import MAX_SERIES, new_figure
from stages.report.plot_curves import AVERAGE, MAX_BANDED, _banded, _draw, accuracy_plots, figure_sets
from stages.report.published import load_published
from stages.report.records import load_records
from stages.report.style import published_style, series_style, series_styles
from tests.report.test_latex_width import ABLATIONS, METHODS, VARIANTS

KNOWN = ("cmm", "zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "gda", "lp_pp", "clap", "proker", "ape")


def _hue(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[0]


@pytest.fixture(scope="module")
def family(tmp_path_factory, make_writer):
    """RN50 records: 7 methods, 10 CMM ablations, 3 variants and 2 extra ablations (22 labels), 2 datasets."""
    runs = tmp_path_factory.mktemp("sets") / "runs"
    write = make_writer(runs)
    labels = list(METHODS) + [f"cmm+{a}" for a in ABLATIONS + ("bias+no_fusion", "my_new_one")] + list(VARIANTS)
    for dataset in ("dtd", "eurosat"):
        for n, label in enumerate(labels):
            method = label.split("+")[0]
            for k in ([0] if method == "zero_shot" else [1, 4, 16]):
                for seed in (1, 2):
                    write(dataset, "RN50", "openai", method, k, seed, 30.0 + n + k + seed, method_label=label)
    records, _ = load_records(runs, lambda _: None)
    (family,) = group_records(records)
    return family


def test_method_colours_are_fixed_and_distinct():
    styles = {m: series_style(m) for m in KNOWN}
    assert len({s.colour for s in styles.values()}) == len(KNOWN)
    assert styles["cmm"].colour == "#d62728" and styles["linear_probe"].colour == "#1f77b4"
    assert all(s.linestyle == "-" for m, s in styles.items() if m != "zero_shot")
    assert series_styles(["cmm", "gda", "cmm+no_triplet"])["cmm+no_triplet"] == series_style("cmm+no_triplet")


def test_cmm_variants_are_reds_with_their_own_line_and_marker():
    labels = [f"cmm+{a}" for a in ABLATIONS + ("bias+no_fusion", "x", "y", "z")]
    styles = series_styles(["cmm", *labels])
    for label in labels:
        style = styles[label]
        distance = abs(_hue(style.colour) - _hue("#d62728"))
        assert min(distance, 1 - distance) < 0.02, label  # CMM's red hue (hue is circular)
        assert style.linestyle != "-" and style.colour != styles["cmm"].colour
    assert len({s.key for s in styles.values()}) == len(styles)
    assert styles["cmm+no_fusion"].colour != series_style("tip_adapter_f").colour  # the collision


def test_no_two_curves_of_a_figure_look_alike(family):
    sets = figure_sets(family, load_published())
    kinds = [f.kind for f in sets]
    assert kinds.count("methods") == 1 and kinds.count("ablations") == 2 and kinds.count("variants") == 1
    assert kinds.count("published") == 2  # RN50: one figure per published source
    for figure in sets:
        assert 1 <= figure.curves <= MAX_SERIES, figure.suffix
        fig = new_figure(6, 4)
        ax = fig.add_subplot()
        assert _draw(ax, figure, family.datasets, bands=False)
        # colour, the dash pattern as drawn (matplotlib names every custom pattern '--'), marker
        drawn = [(line.get_color(), str(line._unscaled_dash_pattern), line.get_marker()) for line in ax.get_lines()]
        assert len(set(drawn)) == len(drawn) == figure.curves, (figure.suffix, drawn)
        for group, line in zip(figure.groups, ax.get_lines()):  # a variant: hollow markers, drawn on top
            variant = "+" in group.method_label
            assert (line.get_markerfacecolor() == "white") == variant and (line.get_zorder() > 2) == variant
    methods = next(f for f in sets if f.kind == "methods")
    assert [g.method_label for g in methods.groups] == ["zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f",
                                                        "gda", "lp_pp", "cmm"]
    for figure in (f for f in sets if f.kind == "ablations"):
        assert figure.groups[0].method_label == "cmm"  # CMM's default in every ablation figure
        assert all(g.method == "cmm" for g in figure.groups)
    ablated = [g.method_label for f in sets if f.kind == "ablations" for g in f.groups[1:]]
    assert len(ablated) == len(set(ablated)) == 12  # each ablation in exactly one figure


def test_published_curves_apart_and_distinct():
    series = [s for s in load_published() if s.short_source == "APE repository"]
    keys = [published_style(s.method).key for s in series]
    assert len(set(keys)) == len(keys)
    assert published_style("Tip-Adapter-F").colour == series_style("tip_adapter_f").colour


def test_bands_only_in_small_figures(family, tmp_path):
    sets = figure_sets(family, [])
    for figure in sets:
        fig = new_figure(6, 4)
        ax = fig.add_subplot()
        _draw(ax, figure, family.datasets, bands=_banded(figure, True))
        trained = sum(1 for g in figure.groups if g.method != "zero_shot")
        assert bool(ax.collections) == (trained <= MAX_BANDED), figure.suffix


def test_figures_are_written_per_set(family, tmp_path):
    paths = [p.name for p in accuracy_plots(family, [], tmp_path) if p.suffix == ".png"]
    assert "acc__RN50__openai__dtd.png" in paths and "acc__RN50__openai__average.png" in paths
    for suffix in ("ablations-1", "ablations-2", "variants"):
        for which in ("dtd", "eurosat", AVERAGE, "grid"):
            assert f"acc__RN50__openai__{which}__{suffix}.png" in paths
