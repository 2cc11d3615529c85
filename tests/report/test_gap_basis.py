"""One PCA basis for every gap panel of the same features (issue 21 item 4): fit projects every run of one
cache and template set (any ablation, shots, seed) into the same basis, so their 'before' panels are
identical, and the report draws them as one 'before' panel beside an 'after' panel per run. A record written
before (its own basis) still gets a figure of its own."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from stages.fit.run import fit_runs
from stages.fit.synthetic import make_clip_like
from stages.report import build_report
from stages.report.plot_gap import PROJ_KEYS, same_basis


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """CMM and two ablations at 2 and 4 shots, seeds 1 and 2, on 640 test images (more than fit projects)."""
    runs = tmp_path_factory.mktemp("gap") / "runs"
    source = make_clip_like(n_classes=8, dim=32, train_per_class=6, val_per_class=4, test_per_class=80, seed=3)
    common = dict(shots=[2, 4], seeds=[1, 2], runs_dir=runs, progress=lambda _: None)
    fit_runs(source, methods=["cmm", "zero_shot"], **common)
    fit_runs(source, methods=["cmm"], ablations=[{"no_triplet": True}], **common)
    fit_runs(source, methods=["cmm"], ablations=[{"frozen_prototypes": True}], **common)
    return runs


def _projections(runs: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(runs.rglob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            if "proj_labels" in npz.files:
                out[f"{path.parent.name}/{path.stem}"] = {k: npz[k] for k in PROJ_KEYS}
    return out


def test_every_run_of_the_same_features_shares_the_basis(fitted: Path) -> None:
    projections = _projections(fitted)
    assert len(projections) == 12  # 3 labels x 2 shots x 2 seeds
    first = next(iter(projections.values()))
    assert first["proj_images_before"].shape == (600, 2)
    for name, arrays in projections.items():
        assert np.array_equal(arrays["proj_images_before"], first["proj_images_before"]), name
        assert np.array_equal(arrays["proj_protos_before"], first["proj_protos_before"]), name
        assert same_basis(arrays, first)
    afters = {name: a["proj_images_after"].tobytes() for name, a in projections.items()}
    assert len(set(afters.values())) > 1  # the maps differ, the frame does not
    # PC 1 points from the prototypes' centroid to the images'
    assert first["proj_images_before"][:, 0].mean() > first["proj_protos_before"][:, 0].mean()


def test_report_draws_one_before_panel_for_all_runs(fitted: Path, tmp_path: Path) -> None:
    written = build_report(fitted, tmp_path / "out", formats=("md",), progress=lambda _: None)
    gaps = [p for p in written["svg"] if p.name.startswith("gap__")]
    assert [p.name for p in gaps] == ["gap__synthetic__none__synthetic__cmm.svg"]
    text = " ".join(ET.parse(gaps[0]).getroot().itertext())
    assert text.count("before the map (centroid gap") == 1
    for name in ("after the map: CMM ", "after the map: CMM (no triplet)", "after the map: CMM (frozen prototypes)"):
        assert name in text
    assert "4 shots, seed 1" in text and "one PCA basis" in text


def test_an_old_record_in_its_own_basis_gets_its_own_figure(fitted: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(fitted, runs)
    old = next(runs.rglob("cmm+no_triplet/shots4_seed1.npz"))
    with np.load(old, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["proj_images_before"] = arrays["proj_images_before"][:, ::-1].copy()  # another basis, as before
    np.savez(old, **arrays)
    written = build_report(runs, tmp_path / "out", formats=("md",), progress=lambda _: None)
    assert sorted(p.name for p in written["svg"] if p.name.startswith("gap__")) == [
        "gap__synthetic__none__synthetic__cmm+no_triplet.svg", "gap__synthetic__none__synthetic__cmm.svg"]
