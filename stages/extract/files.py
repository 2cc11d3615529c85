"""Encoding a handful of image files outside any dataset: what ``pipeline predict`` needs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stages.extract.images import load_rgb
from stages.extract.models import LoadedModel


def encode_files(loaded: LoadedModel, paths: Sequence[Path], *, batch_size: int = 64,
                 device: str = "cpu") -> np.ndarray:
    """Raw image features (n, D) of ``paths`` with the model's own eval transform; bad files raise BadImageError."""
    loaded.model.to(device)
    out = []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([loaded.preprocess(load_rgb(p)) for p in paths[start:start + batch_size]])
        with torch.inference_mode():
            out.append(loaded.model.encode_image(batch.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
