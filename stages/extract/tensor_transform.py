"""The model's eval transform, and the augmented views' transform, as tensor operations on decoded images.

``--decode tensor`` decodes images to uint8 tensors on the extraction device; this module then does what the
model's own torchvision transform does to a Pillow image (resize with its interpolation, crop, scale to
0..1, normalise with its mean and std), reading those settings from the transform itself, so every open_clip
model's preprocess config (image size, resize mode, interpolation, mean, std) is followed. Resizing uses
Pillow's algorithm (``pil_resample``), not torch's interpolation, so the pixels are Pillow's. A transform
step with no exact tensor counterpart raises ``UnsupportedTransform``: the caller then decodes with Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F

from stages.extract.pil_resample import resize

_FILTERS = {T.InterpolationMode.BICUBIC: "bicubic", T.InterpolationMode.BILINEAR: "bilinear",
            T.InterpolationMode.LANCZOS: "lanczos", T.InterpolationMode.BOX: "box",
            T.InterpolationMode.HAMMING: "hamming"}
_RGB_STEPS = {"_convert_to_rgb", "MaybeConvertMode"}  # decoded tensors are RGB already
#: input pixels resized at once (float64 RGB: 384 MiB): a group of large images of one size is done in parts
MAX_RESAMPLE_PIXELS = 16 * 2**20
_TO_TENSOR_STEPS = {"ToTensor", "MaybeToTensor"}


class UnsupportedTransform(ValueError):
    """The transform has a step the tensor path cannot reproduce exactly."""


@dataclass(frozen=True)
class EvalTransform:
    """Resize (to ``resized(h, w)``), crop or pad to ``crop``, then normalise: a model's eval transform."""

    resized: Callable[[int, int], tuple[int, int]]
    filter_name: str
    crop: tuple[int, int] | None
    crop_step: Callable[[torch.Tensor], torch.Tensor] | None  # a crop that may pad (CenterCropOrPad)
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 (3, H, W) images of any sizes, on one device -> float32 (N, 3, h, w), in order."""
        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape[-2:]), []).append(i)
        for (height, width), members in groups.items():  # one resize per distinct size (in bounded parts)
            step = max(1, MAX_RESAMPLE_PIXELS // (height * width))
            for first in range(0, len(members), step):
                part = members[first:first + step]
                for i, pixels in zip(part, self._geometry(torch.stack([images[i] for i in part]), height, width)):
                    out[i] = pixels
        return normalise(torch.stack(out), self.mean, self.std)

    def _geometry(self, images: torch.Tensor, height: int, width: int) -> torch.Tensor:
        new_h, new_w = self.resized(height, width)
        if self.crop is not None and self.crop_step is None and self.crop[0] <= new_h and self.crop[1] <= new_w:
            top = int(round((new_h - self.crop[0]) / 2.0))  # torchvision's center_crop
            left = int(round((new_w - self.crop[1]) / 2.0))
            return resize(images, (new_h, new_w), self.filter_name, slice(top, top + self.crop[0]),
                          slice(left, left + self.crop[1]))
        images = resize(images, (new_h, new_w), self.filter_name)
        if self.crop_step is not None:
            return self.crop_step(images)
        return F.center_crop(images, list(self.crop)) if self.crop is not None else images


@dataclass(frozen=True)
class AugmentTransform:
    """RandomResizedCrop + horizontal flip + normalise, drawing the same random numbers as on a Pillow image."""

    size: tuple[int, int]
    scale: tuple[float, float]
    ratio: tuple[float, float]
    filter_name: str
    flip: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: Sequence[torch.Tensor], seeds: Sequence[int]) -> torch.Tensor:
        """One view of each uint8 image, the RNG seeded per image with ``seeds`` (as ``views.seeded``)."""
        views = []
        for image, seed in zip(images, seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                top, left, height, width = T.RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
                flip = bool(torch.rand(1) < self.flip)
            view = resize(image[:, top:top + height, left:left + width], self.size, self.filter_name)
            views.append(view.flip(-1) if flip else view)
        return normalise(torch.stack(views), self.mean, self.std)


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """ToTensor's scaling then Normalize, with their dtypes and order of operations."""
    pixels = images.to(torch.get_default_dtype()).div(255)
    mean_t = torch.as_tensor(mean, dtype=pixels.dtype, device=pixels.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=pixels.dtype, device=pixels.device).view(-1, 1, 1)
    return pixels.sub_(mean_t).div_(std_t)


def eval_transform(transform: Callable) -> EvalTransform:
    """The tensor form of a model's eval transform (a torchvision ``Compose``)."""
    steps = list(getattr(transform, "transforms", [transform]))
    resized = filter_name = crop = crop_step = None
    normalize = None
    seen_tensor = False
    for step in steps:
        name = getattr(step, "__name__", type(step).__name__)
        if isinstance(step, T.Resize) and resized is None and not seen_tensor:
            resized, filter_name = _resize_rule(step.size, step.max_size), _filter(step.interpolation)
        elif name == "ResizeKeepRatio" and resized is None and not seen_tensor:
            resized, filter_name = _keep_ratio_rule(step), _filter(step.interpolation)
        elif isinstance(step, T.CenterCrop) and resized is not None and crop is None and not seen_tensor:
            crop = tuple(int(s) for s in step.size)
        elif name == "CenterCropOrPad" and resized is not None and crop is None and not seen_tensor:
            crop, crop_step = tuple(int(s) for s in step.size), step
        elif name in _RGB_STEPS and not seen_tensor:
            continue
        elif name in _TO_TENSOR_STEPS and not seen_tensor:
            seen_tensor = True
        elif isinstance(step, T.Normalize) and seen_tensor and normalize is None:
            normalize = step
        else:
            raise UnsupportedTransform(f"no exact tensor form for the transform step {step!r}")
    if resized is None or not seen_tensor or normalize is None:
        raise UnsupportedTransform(f"expected resize, crop, to-tensor and normalise steps in {transform!r}")
    return EvalTransform(resized, filter_name, crop, crop_step, tuple(normalize.mean), tuple(normalize.std))


def augment_transform(transform: Callable) -> AugmentTransform:
    """The tensor form of ``views.augment_transform``: RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize."""
    steps = list(getattr(transform, "transforms", []))
    kinds = [type(step) for step in steps]
    if kinds != [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]:
        raise UnsupportedTransform(f"no exact tensor form for the augmentation {transform!r}")
    crop, flip, _, normalize = steps
    return AugmentTransform(tuple(crop.size), tuple(crop.scale), tuple(crop.ratio), _filter(crop.interpolation),
                            float(flip.p), tuple(normalize.mean), tuple(normalize.std))


def _filter(interpolation) -> str:
    mode = interpolation if isinstance(interpolation, T.InterpolationMode) else F._interpolation_modes_from_int(interpolation)
    if mode not in _FILTERS:
        raise UnsupportedTransform(f"no exact tensor resampling for interpolation {mode.value}")
    return _FILTERS[mode]


def _resize_rule(size, max_size: int | None) -> Callable[[int, int], tuple[int, int]]:
    """torchvision's output size of ``Resize(size, max_size=...)`` on an (h, w) image."""
    if isinstance(size, int):
        size = [size]
    size = list(size)

    def rule(height: int, width: int) -> tuple[int, int]:
        if len(size) == 2:
            return int(size[0]), int(size[1])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = int(size[0]), int(size[0] * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        return new_h, new_w

    return rule


def _keep_ratio_rule(step) -> Callable[[int, int], tuple[int, int]]:
    """open_clip's ``ResizeKeepRatio`` (the 'longest' resize mode) without its random scale and aspect."""
    if getattr(step, "random_scale_prob", 0) or getattr(step, "random_aspect_prob", 0):
        raise UnsupportedTransform("ResizeKeepRatio with random scale or aspect has no fixed tensor form")
    target_h, target_w = step.size

    def rule(height: int, width: int) -> tuple[int, int]:
        ratio_h, ratio_w = height / target_h, width / target_w
        ratio = max(ratio_h, ratio_w) * step.longest + min(ratio_h, ratio_w) * (1.0 - step.longest)
        return round(height / ratio), round(width / ratio)

    return rule
