"""Image transforms: the model's eval transform and seeded train-time augmented views."""

from __future__ import annotations

from typing import Callable

import torch
from torchvision import transforms as T

AUG_SCALE = (0.5, 1.0)


def augment_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Callable:
    """Tip-Adapter's train views: RandomResizedCrop(size, scale=(0.5, 1), bicubic) + horizontal flip."""
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=AUG_SCALE, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def view_seed(seed: int, view: int, position: int) -> int:
    """The RNG seed of one augmented view of one image: independent of batching, workers and resumes."""
    return (seed * 1_000_003 + view * 7_919 + position) % (2**63 - 1)


def seeded(transform: Callable, seed: int) -> Callable:
    """Apply ``transform`` under a private RNG state seeded with ``seed``; the global state is untouched."""

    def apply(image):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return transform(image)

    return apply
