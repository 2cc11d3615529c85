"""Untrusted files run no code: a pickle checkpoint with a payload is refused unexecuted; .npz loads without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stages.report.plot_gap import PROJ_KEYS, load_projection
from tests.reliability.helpers import error_line, extract_args, run_cli


class Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if the loader executes pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_crafted_checkpoint_is_refused_without_running_its_code(small_dataset, tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"state_dict": {"visual.proj": torch.zeros(2)}, "extra": Payload(marker)}, checkpoint)
    args = extract_args(small_dataset, tmp_path / "cache")
    args[args.index("--pretrained") + 1] = str(checkpoint)
    result = run_cli(*args)
    assert result.exit_code == 1
    line = error_line(result.output)
    assert "evil.pt" in line and "weights-only" in line
    assert not marker.exists()
    assert not (tmp_path / "cache").exists()


def test_npz_with_pickled_objects_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    arrays = {key: np.zeros((3, 2)) for key in PROJ_KEYS}
    arrays["proj_labels"] = np.array([Payload(marker)] * 3, dtype=object)
    np.savez(tmp_path / "run.npz", **arrays)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_projection(tmp_path / "run.npz")
    assert not marker.exists()
