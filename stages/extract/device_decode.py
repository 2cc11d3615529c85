"""``--decode tensor``: JPEGs decoded in batches on the extraction device, everything else by Pillow.

A DataLoader worker only reads a file's bytes and its header (``read_sample``). A JPEG that the device
decoder treats as ``images.py``'s policy says (``jpeg_header.device_decodable``) travels as bytes and is
decoded with ``torchvision.io.decode_jpeg`` on the device (nvjpeg on CUDA, libjpeg-turbo on the CPU); any
other file (PNG, CMYK, EXIF-rotated, progressive, truncated, a reader without files) is decoded by Pillow in
the worker with the whole policy and travels as uint8 pixels. Either way the device then resizes, crops and
normalises (``tensor_transform``), so the decision, and the error text of a bad file, are ``--decode pil``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from stages.extract.images import BadImageError
from stages.extract.jpeg_header import device_decodable, read_header

#: a file larger than this is left to Pillow (which reads it lazily) rather than read whole into memory
MAX_ENCODED_BYTES = 64 * 2**20
#: pixels decoded on the device at once (uint8 RGB: 192 MiB): a batch of large photos is done in parts
MAX_DECODE_PIXELS = 64 * 2**20

#: (kind, payload, error, pixels): ("jpeg", encoded bytes, "", W x H), ("rgb", uint8 (3, H, W), "", W x H) or
#: ("bad", empty, message, 0)
Sample = tuple[str, torch.Tensor, str, int]
_EMPTY = torch.zeros(0, dtype=torch.uint8)


def read_sample(load_image: Callable[[str], "object"], image_file: Path | None, relpath: str) -> Sample:
    """What a worker sends for one image: its bytes when the device may decode it, else Pillow's pixels."""
    if image_file is not None:
        try:
            if image_file.stat().st_size <= MAX_ENCODED_BYTES:
                data = image_file.read_bytes()
                header = read_header(data)
                if device_decodable(header):
                    return "jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8), "", header.width * header.height
        except OSError:
            pass  # Pillow's attempt below names the problem the way --decode pil does
    return pillow_sample(load_image, relpath)


def pillow_sample(load_image: Callable[[str], "object"], relpath: str) -> Sample:
    try:
        image = load_image(relpath)
    except BadImageError as exc:
        return "bad", _EMPTY, str(exc), 0
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
    return "rgb", pixels, "", image.width * image.height


def pixel_chunks(samples: Sequence[Sample], budget: int | None = None) -> list[list[int]]:
    """Consecutive runs of sample indices holding at most ``budget`` pixels each (one sample at least;
    default ``MAX_DECODE_PIXELS``)."""
    budget = MAX_DECODE_PIXELS if budget is None else budget
    chunks: list[list[int]] = [[]]
    held = 0
    for i, sample in enumerate(samples):
        if chunks[-1] and held + sample[3] > budget:
            chunks.append([])
            held = 0
        chunks[-1].append(i)
        held += sample[3]
    return chunks if chunks[0] else []


def as_list(batch: list[Sample]) -> list[Sample]:
    """DataLoader collate for samples: images of many sizes cannot be stacked before they are resized."""
    return batch


def decode_samples(samples: Sequence[Sample], device: torch.device,
                   fallback: Callable[[int], Sample]) -> tuple[list[torch.Tensor | None], list[str]]:
    """uint8 (3, H, W) images on ``device`` (None for a bad file) and each sample's error text ('' if none).

    JPEGs are decoded in one batched call; if it fails, one by one, and a file the device decoder refuses
    goes to ``fallback(i)`` (Pillow), which decodes it or says why it cannot.
    """
    images: list[torch.Tensor | None] = [None] * len(samples)
    errors = [sample[2] for sample in samples]
    jpegs = [i for i, sample in enumerate(samples) if sample[0] == "jpeg"]
    for i, image in zip(jpegs, _decode_jpegs([samples[i][1] for i in jpegs], device)):
        if image is None:
            kind, payload, errors[i], _ = fallback(i)
            image = payload.to(device, non_blocking=True) if kind == "rgb" else None
        images[i] = image
    for i, (kind, payload, _, _) in enumerate(samples):
        if kind == "rgb":
            images[i] = payload.to(device, non_blocking=True)
    return images, errors


def _decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    if not data:
        return []
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except (RuntimeError, ValueError):  # one file the decoder refuses fails the batch: find it
        out: list[torch.Tensor | None] = []
        for one in data:
            try:
                out.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
            except (RuntimeError, ValueError):
                out.append(None)
        return out
