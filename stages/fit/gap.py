"""The modality gap, measured (docs method.md): how far image features sit from their class text prototypes.

All measures take unit image features and unit prototypes:
- ``centroid_gap``: ||mean(images) - mean(prototypes)|| (Liang et al., "Mind the Gap", NeurIPS 2022);
- ``cos_own``: mean cosine of an image to its own class prototype;
- ``cos_wrong``: mean cosine of an image to the nearest wrong prototype;
- ``proto_acc``: nearest-prototype Top-1 (percent).
"Before" compares raw CLIP image features with the plain text prototypes T0; "after" compares the mapped
features with the same T0: CMM's claim is that, after the map, text features alone are good prototypes.
"""

from __future__ import annotations

import numpy as np

from stages.fit.estimator import top1
from stages.fit.features import l2_normalize
from stages.shared.fitted_file import MAX_PROJECTED  # the report refuses a projection of more images


def gap_metrics(images: np.ndarray, labels: np.ndarray, prototypes: np.ndarray) -> dict[str, float]:
    """The four gap measures of unit ``images`` (n, D) with ``labels`` against unit ``prototypes`` (C, D)."""
    images, prototypes = l2_normalize(images), l2_normalize(prototypes)
    labels = np.asarray(labels, dtype=np.int64)
    cos = images @ prototypes.T
    rows = np.arange(len(labels))
    own = cos[rows, labels]
    wrong = cos.copy()
    wrong[rows, labels] = -np.inf
    return {
        "centroid_gap": float(np.linalg.norm(images.mean(0) - prototypes.mean(0))),
        "cos_own": float(own.mean()),
        "cos_wrong": float(wrong.max(1).mean()),
        "proto_acc": top1(cos, labels),
    }


def joint_projection(before: np.ndarray, after: np.ndarray, labels: np.ndarray, protos_before: np.ndarray,
                     protos_after: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """2-D PCA of images and prototypes, before and after the map, in ONE basis (so the panels compare).

    At most ``MAX_PROJECTED`` images are kept (a seeded, class-stratified-by-chance sample) so the run's .npz
    stays small. Returns the ``proj_*`` arrays the report's gap plot reads.
    """
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.arange(len(labels))
    if len(keep) > MAX_PROJECTED:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), MAX_PROJECTED, replace=False))
    parts = [l2_normalize(before[keep]), l2_normalize(after[keep]), l2_normalize(protos_before),
             l2_normalize(protos_after)]
    stacked = np.concatenate(parts)
    centred = stacked - stacked.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    flat = (centred @ vt[:2].T).astype(np.float32)
    bounds = np.cumsum([len(p) for p in parts])[:-1]
    img_before, img_after, pro_before, pro_after = np.split(flat, bounds)
    return {"proj_images_before": img_before, "proj_images_after": img_after, "proj_labels": labels[keep],
            "proj_protos_before": pro_before, "proj_protos_after": pro_after}
