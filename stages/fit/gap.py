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
                     protos_after: np.ndarray) -> dict[str, np.ndarray]:
    """2-D projection of images and prototypes, before and after the map, in ONE basis shared by every run of
    the same features.

    The basis is the PCA of what every run of one cache and template set has in common: the unit test images
    before the map (a fixed sample of at most ``MAX_PROJECTED``, the same for every method, ablation, shot count
    and seed) and the plain text prototypes T0 (``protos_before``). So the "before" panels of all those runs are
    identical and their "after" panels are drawn in the same axes. PC 1 points from the prototypes' centroid
    to the images' (the gap reads left to right); PC 2's largest component is positive. Returns the ``proj_*``
    arrays the report's gap plot reads.
    """
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.arange(len(labels))
    if len(keep) > MAX_PROJECTED:
        keep = np.sort(np.random.default_rng(0).choice(len(keep), MAX_PROJECTED, replace=False))
    images, protos = l2_normalize(before[keep]), l2_normalize(protos_before)
    stacked = np.concatenate([images, protos])
    centre = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - centre, full_matrices=False)
    basis = vt[:2].copy()
    if (images.mean(0) - protos.mean(0)) @ basis[0] < 0:
        basis[0] = -basis[0]
    if basis[1][np.argmax(np.abs(basis[1]))] < 0:
        basis[1] = -basis[1]

    def project(x: np.ndarray) -> np.ndarray:
        return ((l2_normalize(x) - centre) @ basis.T).astype(np.float32)

    return {"proj_images_before": project(images), "proj_images_after": project(after[keep]),
            "proj_labels": labels[keep], "proj_protos_before": project(protos),
            "proj_protos_after": project(protos_after)}
