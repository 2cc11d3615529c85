"""CLIP-like synthetic features with a built-in modality gap, for tests, benchmarks and docs.

Real CLIP (ViT-B/16, COCO) measures: centroid gap ~0.85, image-to-own-text cosine ~0.3, class-prompt
cosines between classes ~0.7-0.9. Here the text prototypes share a strong common direction (high
inter-class cosine); images share a different common direction (the gap), carry their class's semantic
vector only partly and after a rotation (so zero-shot is moderate and a linear map helps), an
image-only class component (learnable only from shots), a low-rank nuisance (what a map can suppress)
and isotropic noise. Features are returned RAW (random norms) so that callers must normalise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stages.fit.source import ArraySource


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def make_clip_like(n_classes: int = 20, dim: int = 512, *, train_per_class: int | Sequence[int] = 20,
                   val_per_class: int = 8, test_per_class: int = 30, n_templates: int = 3,
                   aug_views: int = 0, rotation: float = 0.55, text_common: float = 2.5,
                   image_common: float = 1.8, semantic: float = 0.8, image_only: float = 0.5,
                   confusion: float = 1.4, noise: float = 1.4, spectrum_decay: float = 0.5, gap_overlap: float = 0.5, seed: int = 0,
                   dataset: str = "synthetic", logit_scale: float = 100.0,
                   shuffle: bool = True) -> ArraySource:
    """An ArraySource with train/val/test splits whose statistics resemble cached CLIP features.

    ``train_per_class`` may be a list (one count per class) to make classes shorter than K.
    ``rotation`` in [0, 1] mixes a random rotation into the image copy of the class semantics.
    """
    rng = np.random.default_rng(seed)
    latent = max(8, dim // 16)
    basis = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    semantic_vec = _unit(rng.standard_normal((n_classes, latent)) @ basis
                         + 0.7 * rng.standard_normal((n_classes, dim)) / np.sqrt(dim))
    text_dir, image_dir = _unit(rng.standard_normal((2, dim)))
    image_dir = _unit(image_dir + gap_overlap * text_dir)
    rotated = (1 - rotation) * semantic_vec + rotation * semantic_vec @ _random_rotation(rng, dim)
    visual_vec = _unit(rng.standard_normal((n_classes, dim)))
    # within-class variation: a decaying spectrum in a random basis (a few strong nuisance directions, a long tail)
    spectrum = (1.0 + np.arange(dim)) ** -spectrum_decay
    spectrum = spectrum / np.linalg.norm(spectrum)
    noise_basis = _random_rotation(rng, dim) * spectrum[:, None]

    template_noise = 0.25 * rng.standard_normal((n_classes, n_templates, dim)) / np.sqrt(dim) * np.sqrt(dim / 32)
    text = text_common * text_dir + semantic * 1.6 * semantic_vec[:, None, :] + template_noise
    text = text * rng.uniform(6.0, 10.0, size=(n_classes, n_templates, 1))

    class_signal = semantic * rotated + image_only * visual_vec
    # each image also shows part of one of its class's nearest classes: the Bayes error of fine-grained sets
    similarity = semantic_vec @ semantic_vec.T - 2 * np.eye(n_classes)
    neighbours = np.argsort(-similarity, axis=1)[:, :max(1, min(5, n_classes - 1))]

    def images(labels: np.ndarray) -> np.ndarray:
        n = len(labels)
        other = neighbours[labels, rng.integers(0, neighbours.shape[1], size=n)]
        x = (image_common * image_dir + class_signal[labels]
             + confusion * rng.uniform(0, 1, size=(n, 1)) * class_signal[other]
             + noise * rng.standard_normal((n, dim)) @ noise_basis)
        return x

    def labels_for(per_class: int | Sequence[int]) -> np.ndarray:
        counts = [per_class] * n_classes if isinstance(per_class, int) else list(per_class)
        y = np.repeat(np.arange(n_classes), counts)
        return rng.permutation(y) if shuffle else y

    image: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    aug = None
    for split, per_class in (("train", train_per_class), ("val", val_per_class), ("test", test_per_class)):
        y = labels_for(per_class)
        x = images(y)
        if split == "train" and aug_views:
            views = x[None] + 0.5 * noise * rng.standard_normal((aug_views, *x.shape)) / np.sqrt(dim)
            aug = (views * rng.uniform(8.0, 12.0, size=(aug_views, len(y), 1))).astype(np.float32)
        image[split] = ((x * rng.uniform(8.0, 12.0, size=(len(y), 1))).astype(np.float32), y.astype(np.int64))
    return ArraySource(dataset=dataset, classes=[f"class {c}" for c in range(n_classes)], image=image,
                       text={"coop": text.astype(np.float32)}, logit_scale=logit_scale, aug=aug,
                       meta={"generator": "make_clip_like", "seed": seed})
