"""Synthetic CLIP features calibrated to the geometry of real ones, in the regimes users meet.

``stages/fit/synthetic.py`` makes a weak-zero-shot set (about 46 %) where every learned method gains. Real
benchmarks mostly sit at 60-95 % zero-shot, with cosines near 0.3 and margins of a few hundredths
(docs real-features, measured on OpenAI CLIP ViT-B/32). The generator here builds, in D dimensions:

- text prototypes t_c = unit(a u_t + s_c) + template noise, where s_c are class semantics that share a
  group direction (fine-grained classes crowd together) and u_t is the text side of the modality gap;
- images x = g u_v + h m_y + within-class noise (a decaying spectrum: a few strong nuisance directions),
  where u_v is the image side of the gap and m_y = unit(cos(theta) s_y + sin(theta) r_y) mixes the class's
  text semantics (what zero-shot sees) with an image-only direction r_y (what only the shots can teach);
- each image also carries a random share of a neighbouring class's signal (the confusions of real sets).

``REGIMES`` holds parameters fitted so that ``geometry`` of the test split matches the real figures of
three sets: a fine-grained strong-zero-shot set (Pets-25), a mid set with larger margins (Caltech-64) and an
ImageNet-like one (1000 classes, tiny margins). ``benchmarks/method_quality.py`` prints both side by side.

``pets_hard_val`` is Pets-25 with its val split harder than its test split, as on the real set (zero-shot 89.94
on all 497 val images, 92.07 on test). CoOp's Pets split draws train and val from one pool (the trainval images)
and test from another, so here train and val images share a shift that test images lack (``trainval_shift``):
each leans by a fixed share towards its class's nearest class. Zero-shot is lower on val, and what the shots
teach about that pool gains more on val than it does on test: the regime in which the candidate with the
largest val gain is not the best one on test. Its val split is as large as the real one (20 per class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from stages.fit.source import ArraySource


@dataclass(frozen=True)
class Regime:
    """Parameters of one calibrated regime (see the module docstring for the model they enter)."""

    n_classes: int
    text_common: float          # a: weight of the shared text direction (sets cos between class texts)
    group_share: float          # share of a class's semantics common to its group (fine-grained crowding)
    group_size: int             # classes per semantic group
    gap_overlap: float          # cos(u_v, u_t): how far the image and text centroids sit apart
    image_common: float         # g: weight of the shared image direction (sets cos between class means)
    class_signal: float         # h: weight of the class direction m_y in an image
    text_alignment: float       # cos(theta): share of m_y that is the class's text semantics
    noise: float                # within-class spread
    spectrum_decay: float       # power-law decay of the within-class spectrum (top principal share)
    confusion: float            # mean share of a neighbouring class's signal in an image
    text_leak: float = 1.0      # share of the within-class spread that may lie in the span of the class texts
    class_noise: float = 0.0    # within-class spread along the class directions (how much the shots overlap)
    ambiguous: float = 0.0      # share of images that show a neighbouring class instead (the Bayes error)
    text_error: float = 0.0     # how much a class's text leans to a neighbour's semantics (zero-shot's own errors)
    text_error_share: float = 1.0  # share of the classes whose text leans so
    trainval_shift: float = 0.0  # share of its nearest class's signal in every train and val image, never test
    template_noise: float = 0.05
    train_per_class: int = 24
    val_per_class: int = 6
    test_per_class: int = 40
    dim: int = 512


#: Real figures (OpenAI CLIP ViT-B/32, test images vs single-prompt class texts), from docs real-features.
REAL_FIGURES: dict[str, dict[str, float]] = {
    "pets_like": {"zero_shot_top1": 92.07, "cos_own": 0.320, "cos_wrong": 0.289, "margin": 0.031,
                  "centroid_gap": 0.955, "cos_same_class": 0.808, "cos_class_means": 0.893,
                  "cos_class_texts": 0.605, "within_class_share": 0.70, "top5_share": 0.29},
    "caltech_like": {"zero_shot_top1": 94.77, "cos_own": 0.291, "cos_wrong": 0.240, "margin": 0.051,
                     "centroid_gap": 0.939, "cos_same_class": 0.781, "cos_class_means": 0.708,
                     "cos_class_texts": 0.704, "within_class_share": 0.47, "top5_share": 0.32},
    "imagenet_like": {"zero_shot_top1": 61.12, "cos_own": 0.303, "cos_wrong": 0.296, "margin": 0.007,
                      "centroid_gap": 0.872, "cos_same_class": 0.735, "cos_class_means": 0.653,
                      "cos_class_texts": 0.612, "within_class_share": 0.42, "top5_share": 0.23},
}
REAL_FIGURES["pets_hard_val"] = REAL_FIGURES["pets_like"]
#: Zero-shot top-1 of the val split where it differs from test: Pets-25, all 497 val images (docs real-features).
REAL_VAL_ZERO_SHOT: dict[str, float] = {"pets_hard_val": 89.94}

REGIMES: dict[str, Regime] = {
    "pets_like": Regime(n_classes=25, text_common=1.268, group_share=0.0, group_size=25, gap_overlap=0.380,
                        image_common=2.062, class_signal=0.515, text_alignment=0.463, noise=0.982,
                        spectrum_decay=0.447, confusion=0.149, text_leak=0.001, class_noise=0.204,
                        ambiguous=0.071),
    "caltech_like": Regime(n_classes=64, text_common=1.532, group_share=0.0, group_size=64, gap_overlap=0.343,
                           image_common=2.015, class_signal=1.261, text_alignment=0.255, noise=1.235,
                           spectrum_decay=0.501, confusion=0.169, text_leak=0.0, class_noise=0.177,
                           ambiguous=0.02, text_error=0.95, text_error_share=0.5),
    "imagenet_like": Regime(n_classes=1000, text_common=1.302, group_share=0.3, group_size=20, gap_overlap=0.377,
                            image_common=1.6, class_signal=1.225, text_alignment=0.37, noise=0.85,
                            spectrum_decay=0.451, confusion=0.3, text_leak=0.330, class_noise=0.1,
                            ambiguous=0.38, train_per_class=20, val_per_class=4, test_per_class=10),
}
#: Pets-25's geometry with some zero-shot errors that the shots can fix (text errors) in place of part of the
#: Bayes error, and train and val drawn from the shifted pool
REGIMES["pets_hard_val"] = replace(REGIMES["pets_like"], ambiguous=0.069, text_error=0.91, text_error_share=0.41,
                                   trainval_shift=0.51, val_per_class=20)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_regime(regime: str | Regime, *, seed: int = 0, n_templates: int = 1, **overrides) -> ArraySource:
    """An ArraySource (train/val/test, raw features of random norm) drawn from a calibrated regime.

    ``regime`` is a key of ``REGIMES`` or a ``Regime``; ``overrides`` replace its fields (e.g. sizes).
    """
    name = regime if isinstance(regime, str) else "custom"
    p = replace(REGIMES[regime] if isinstance(regime, str) else regime, **overrides)
    rng = np.random.default_rng(seed)
    C, D = p.n_classes, p.dim
    u_t = _unit(rng.standard_normal(D))
    groups = _unit(rng.standard_normal((-(-C // p.group_size), D)))[np.arange(C) // p.group_size]
    semantics = _unit(np.sqrt(p.group_share) * groups
                      + np.sqrt(1 - p.group_share) * _unit(rng.standard_normal((C, D))))
    # the text span: all of it where C + 1 < D/2, else its D/2 strongest directions (so it never fills the space)
    directions = np.linalg.svd(np.concatenate([semantics, u_t[None]]).T, full_matrices=False)[0]
    span = directions[:, :min(C + 1, D // 2)]
    # the image side of the gap favours no class: orthogonal to every class's semantics
    away = rng.standard_normal(D)
    u_v = _unit(p.gap_overlap * u_t + np.sqrt(1 - p.gap_overlap ** 2) * _unit(away - span @ (span.T @ away)))

    similarity = semantics @ semantics.T - 2 * np.eye(C)
    neighbours = np.argsort(-similarity, axis=1)[:, :max(1, min(5, C - 1))]
    leaning = neighbours[np.arange(C), rng.integers(0, neighbours.shape[1], size=C)]
    lean = p.text_error * (rng.uniform(size=(C, 1)) < p.text_error_share)
    text = p.text_common * u_t + _unit(semantics + lean * semantics[leaning])
    text = _unit(text[:, None, :] + p.template_noise * rng.standard_normal((C, n_templates, D)) / np.sqrt(D))
    text = text * rng.uniform(6.0, 14.0, size=(C, n_templates, 1))

    spectrum = (1.0 + np.arange(D)) ** -p.spectrum_decay
    spectrum = spectrum / np.linalg.norm(spectrum)
    basis = np.linalg.qr(rng.standard_normal((D, D)))[0].T * spectrum[:, None]
    basis = basis - (1.0 - p.text_leak) * (basis @ span) @ span.T
    # what only the shots can teach lies where images vary most (fine-grained differences hide in nuisance)
    image_only = _unit(rng.standard_normal((C, D)) @ basis)
    class_dir = _unit(p.text_alignment * semantics + np.sqrt(1 - p.text_alignment ** 2) * image_only)

    def images(labels: np.ndarray, shift: float = 0.0) -> np.ndarray:
        n = len(labels)
        other = neighbours[labels, rng.integers(0, neighbours.shape[1], size=n)]
        share = p.confusion * 2 * rng.uniform(0, 1, size=(n, 1))
        shown = np.where(rng.uniform(size=n) < p.ambiguous, other, labels)
        x = (p.image_common * u_v + p.class_signal * class_dir[shown]
             + p.class_signal * share * class_dir[other]
             + p.noise * rng.standard_normal((n, D)) @ basis
             + p.class_noise * rng.standard_normal((n, C)) @ class_dir / np.sqrt(C))
        if shift:  # train and val come from a pool that test does not: each image leans to its class's nearest one
            x = x + shift * p.class_signal * class_dir[neighbours[labels, 0]]
        return x * rng.uniform(8.0, 12.0, size=(n, 1))

    image = {}
    for split, per_class in (("train", p.train_per_class), ("val", p.val_per_class), ("test", p.test_per_class)):
        y = rng.permutation(np.repeat(np.arange(C), per_class))
        x = images(y, p.trainval_shift if split != "test" else 0.0)
        image[split] = (x.astype(np.float32), y.astype(np.int64))
    return ArraySource(dataset=name, classes=[f"class {c}" for c in range(C)], image=image,
                       text={"coop": text.astype(np.float32)}, logit_scale=100.0,
                       meta={"generator": "make_regime", "regime": name, "seed": seed, **asdict(p)})


def geometry(source: ArraySource, split: str = "test") -> dict[str, float]:
    """The figures of docs real-features for ``split`` of ``source``: the calibration targets."""
    X, y = source.image[split]
    v = _unit(X.astype(np.float64))
    text = source.text["coop"].astype(np.float64)
    t = _unit(_unit(text).mean(1))
    C = len(t)
    cos = v @ t.T
    rows = np.arange(len(y))
    own = cos[rows, y]
    wrong = cos.copy()
    wrong[rows, y] = -np.inf
    nearest_wrong = wrong.max(1)
    means = np.stack([v[y == c].mean(0) for c in range(C)])
    unit_means = _unit(means)
    off = ~np.eye(C, dtype=bool)
    rng = np.random.default_rng(0)
    same = []
    for c in range(C):
        members = v[y == c]
        sims = members @ members.T
        same.append(sims[~np.eye(len(members), dtype=bool)].mean())
    centred = v - v.mean(0)
    total = (centred ** 2).sum()
    within = ((v - means[y]) ** 2).sum()
    sample = centred[rng.choice(len(v), min(len(v), 20_000), replace=False)]
    eig = np.linalg.svd(sample, compute_uv=False) ** 2
    return {
        "zero_shot_top1": float((cos.argmax(1) == y).mean() * 100.0),
        "cos_own": float(own.mean()), "cos_wrong": float(nearest_wrong.mean()),
        "margin": float((own - nearest_wrong).mean()),
        "centroid_gap": float(np.linalg.norm(v.mean(0) - t.mean(0))),
        "cos_same_class": float(np.mean(same)),
        "cos_class_means": float((unit_means @ unit_means.T)[off].mean()),
        "cos_class_texts": float((t @ t.T)[off].mean()),
        "within_class_share": float(within / total),
        "top5_share": float(eig[:5].sum() / eig.sum()),
    }
