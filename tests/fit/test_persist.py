"""Fitted estimators round-trip through .npz without pickle, and crafted files are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stages.shared.errors import FitError
from stages.fit.cmm import CMMClassifier
from stages.fit.persist import META, load_fitted, save_fitted
from tests.fit.conftest import few_shot_split


@pytest.fixture(scope="module")
def model_and_data(gap_source):
    data = few_shot_split(gap_source, shots=4)
    model = CMMClassifier(gap_source.text["coop"], steps=20, bias=True).fit(data["X"], data["y"], data["X_val"],
                                                                          data["y_val"])
    return model, data


def test_round_trip_gives_the_same_logits(model_and_data, tmp_path):
    model, data = model_and_data
    path = save_fitted(model, tmp_path / "run.npz", method="cmm", classes=[f"c{i}" for i in range(20)],
                       extra={"proj_labels": np.arange(3)})
    loaded = load_fitted(tmp_path / "run.json")  # the record's name works too
    assert loaded.method == "cmm" and loaded.classes[3] == "c3"
    np.testing.assert_array_equal(loaded.decision_function(data["X_test"]), model.decision_function(data["X_test"]))
    assert loaded.estimator.hyperparameters_ == model.hyperparameters_
    with np.load(path, allow_pickle=False) as npz:
        assert "proj_labels" in npz.files
    assert not list(tmp_path.glob("*.tmp"))


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.npz"
    np.savez(path, **{META: np.array([Exploit(marker)], dtype=object)})
    with pytest.raises(FitError, match="not a fitted run"):
        load_fitted(path)
    assert not marker.exists()


def test_unknown_estimator_class_is_refused(model_and_data, tmp_path):
    model, _ = model_and_data
    path = save_fitted(model, tmp_path / "run.npz", method="cmm", classes=["a"] * 20)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays[META]))
    meta["class"] = "os.system"
    arrays[META] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(FitError, match="does not know"):
        load_fitted(path)


def test_missing_or_garbage_files_named(tmp_path):
    with pytest.raises(FitError, match="not found"):
        load_fitted(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FitError, match="junk.npz"):
        load_fitted(tmp_path / "junk.npz")


class Exploit:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
