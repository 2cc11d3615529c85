"""Fixtures of the reliability tests: small generated datasets in CoOp layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_coop_dataset

CLASSES = ["red fox", "blue_jay", "green frog"]


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """3 classes, train 4 / val 1 / test 2 per class (21 images); returns the split file."""
    return write_coop_dataset(tmp_path / "small", CLASSES, {"train": 4, "val": 1, "test": 2})
