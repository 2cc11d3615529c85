"""NaN or Inf in features is caught when the block is written: a clear error naming the array and rows, no cache."""

from __future__ import annotations

import pytest
import torch

from cache import partial_path
from stages.extract.models import load_model
from stages.shared.naming import cache_file
from tests.conftest import TINY_MODEL_CONFIG
from tests.reliability.helpers import error_line, extract_args, run_cli


@pytest.mark.parametrize("parameter, array", [("visual.proj", "image/train/features"),
                                               ("text_projection", "text/coop/features")])
def test_nan_weights_stop_extraction_at_write_time(small_dataset, tmp_path, parameter, array):
    state = load_model(str(TINY_MODEL_CONFIG), "none").model.state_dict()
    state[parameter] = torch.full_like(state[parameter], float("nan"))
    checkpoint = tmp_path / "broken.pt"
    torch.save(state, checkpoint)
    args = extract_args(small_dataset, tmp_path / "cache")
    args[args.index("--pretrained") + 1] = str(checkpoint)
    result = run_cli(*args)
    assert result.exit_code == 1
    line = error_line(result.output)
    assert "NaN/Inf" in line and array in line and "rows 0-" in line
    cache = cache_file(tmp_path / "cache", "folder", str(TINY_MODEL_CONFIG), str(checkpoint))
    assert cache.name.startswith("tiny-test-clip__broken-")  # named after the weights file and its hash
    assert not cache.exists()
    assert partial_path(cache).exists()  # incomplete, never committed
