"""Encoding a handful of image files outside any dataset: what ``pipeline predict`` needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stages.extract.datasets.folders import IMAGE_EXTENSIONS
from stages.extract.images import load_rgb
from stages.extract.models import LoadedModel, load_model
from stages.shared.errors import DatasetError, ModelError


def image_paths(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The images to classify, in the order given: a file as it is, a folder as its image files (by suffix),
    recursively, in code-point order of their paths; also the files those folders hold that are not images.

    Hidden files and folders are skipped, as in dataset folders; a folder without an image is refused.
    """
    images: list[Path] = []
    others: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            images.append(path)
            continue
        found = []
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            for name in names:
                if not name.startswith("."):
                    is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
                    (found if is_image else others).append(Path(folder) / name)
        if not found:
            raise DatasetError(f"{path}: no image files in this folder or below (looked for "
                               f"{', '.join(sorted(IMAGE_EXTENSIONS))}); give a folder of images")
        images += sorted(found, key=lambda p: p.relative_to(path).as_posix())
    return images, sorted(others)


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


def encode_like_cache(cache_path: str | Path, cache_key: str, paths: Sequence[Path], *,
                      pretrained: str | None = None, device: str = "cpu") -> np.ndarray:
    """Raw features of ``paths`` from the model, weights and preprocessing that built a cache (for predict).

    Refuses when the cache changed since (its key is not ``cache_key``) or when the model loaded now differs
    from the one that built it (naming each field that differs); ``pretrained`` points at moved weights.
    """
    from cache import FeatureCache
    from cache.key import key_diff

    cache = FeatureCache(cache_path)
    if cache.key != cache_key:
        raise ModelError(f"{cache.path} changed since the run was fitted (its key differs); refit the run")
    attrs = cache.attrs
    if not isinstance(attrs.get("model_arg", attrs.get("model")), str):
        raise ModelError(f"{cache.path} does not name the model that built it; rebuild it with pipeline extract --force")
    loaded = load_model(str(attrs.get("model_arg", attrs["model"])), pretrained or str(attrs.get("pretrained_arg", "none")),
                        weights_tag=attrs.get("weights_tag") or None)
    diff = key_diff(loaded.key_fields, {k: cache.key_fields.get(k) for k in loaded.key_fields})
    if diff:
        raise ModelError(f"the model loaded now differs from the one that built {cache.path} ({'; '.join(diff)}); "
                         "point --pretrained at the original weights")
    return encode_files(loaded, list(paths), device=device)
