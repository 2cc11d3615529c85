"""APE (training-free), Zhu et al., ICCV 2023, "Not All Features Matter: Enhancing Few-shot CLIP with Adaptive
Prior Refinement", as an estimator.

Prior refinement: keep the ``feat_num`` feature channels that best separate the classes, by the released
criterion over the class text features t_c and the cache keys (the few-shot features, Tip-Adapter's cache):

    J_d = -w1 * sim_d + w2 * var_c(t_cd),
    sim_d = mean over pairs of rows (a, b) of DIFFERENT classes of a_d b_d, rows = [t_c; keys of class c],

then, on those channels (each re-normalised: v', K', T'), the trilateral affinities

    logits = s v . T0^T + alpha exp(-beta (1 - v' . K'^T)) (V * exp(gamma D)),
    D_k = sum_c V_kc log2((V_kc + 1e-6) / (P_kc + 1e-6)),  P = softmax(K' . T'^T)   (per key k),

V the keys' one-hot labels: a key whose own class is poorly predicted by the text (a large divergence) gets
a larger weight. The zero-shot term uses all channels. beta, alpha, gamma are chosen on val over the
dataset's released grid (released.py: beta and alpha as Tip-Adapter's grids, gamma = i * scale / steps, e.g.
Caltech101 200 x 20 x 20 over [0.1, 7) x [0.1, 7) x [0, 1)), first maximum in (beta, alpha, gamma) order.

As in the released code (github.com/yangyangyang127/APE, ``main.py`` ``APE``, ``utils.py`` ``cal_criterion``):
the softmax of the keys' text logits is taken on the plain cosines (no logit scale); the keys are the
normalised mean of the raw augmented views when given (Tip-Adapter's cache), else the normalised shots, so
``--train-views aug`` and ``released`` both give the release's cache.

Deviations from the released code:
- channel count: the release's counts are for RN50 (1024 dims, e.g. 800 for Caltech101, 500 for ImageNet);
  ``feat_num=None`` keeps the same fraction of this model's dimension (400 of 512 for Caltech101 on ViT-B/32);
- the similarity is computed from per-class sums in float64 (the same value as the release's loop over
  every pair of rows, without its C^2 (K + 1)^2 cost), and for classes with different shot counts (CoOp keeps
  every image of a short class) as the mean over all cross-class pairs (the release assumes K rows per class);
- the alpha grid is scored in one pass per (beta, gamma) (fusion.py: exact ties between classes count as
  wrong), every gamma of a beta in one batched product;
- validation: the few-shot val split (min(K, 4) per class), not the release's full val split;
- text: the project's template ensemble T0 (the release: CoOp's template plus CuPL's GPT-3 prompts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from stages.shared.errors import FitError
from stages.fit.baselines.fusion import FusedScorer
from stages.fit.baselines.released import APE, APE_RELEASED_DIM, APEConfig, released_key
from stages.fit.baselines.tip_cache import build_cache, chunks, class_sums, equal_blocks, rbf_kernel
from stages.fit.estimator import LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1


def channel_criterion(T0: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor,
                      weights: tuple[float, float]) -> torch.Tensor:
    """(D,) APE's criterion -w1 sim + w2 var: sim_d the mean of a_d b_d over pairs of rows of different classes
    (rows: each class's text feature and its keys), var_d the unbiased variance of the text features over classes."""
    text, keys = T0.double(), keys.double()
    n_classes = len(text)
    sums = text.clone().index_add_(0, labels, keys)  # per class: its text row plus its keys
    counts = torch.ones(n_classes, dtype=text.dtype, device=text.device).index_add_(
        0, labels, torch.ones(len(labels), dtype=text.dtype, device=text.device))
    total = sums.sum(0)
    cross = total * total - (sums * sums).sum(0)  # sum over i != j of S_i S_j, per channel
    pairs = counts.sum() ** 2 - (counts * counts).sum()
    return -weights[0] * cross / pairs + weights[1] * text.var(dim=0)


def key_divergence(keys: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) D_k = sum_c V_kc log2((V_kc + 1e-6) / (P_kc + 1e-6)), P = softmax over classes of key . text."""
    values = F.one_hot(labels, len(text)).to(keys.dtype)
    prob = torch.softmax(keys @ text.T, dim=1)
    return (values * torch.log2((values + 1e-6) / (prob + 1e-6))).sum(1)


def weighted_cache(affinity: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, n_classes: int,
                   block: int) -> torch.Tensor:
    """(G, m, C): affinity @ (onehot(labels) * weights[g][:, None]) for each row g of ``weights`` (G, N), the
    cache logits with per-key value weights; one batched product over the classes when the keys come in equal
    blocks per class."""
    if block:
        return torch.einsum("mck,gck->gmc", affinity.reshape(len(affinity), n_classes, block),
                            weights.reshape(len(weights), n_classes, block))
    return torch.stack([class_sums(affinity * weight, labels, n_classes, 0) for weight in weights])


class APEClassifier(LogitsClassifierMixin, BaseEstimator):
    """Training-free APE (ICCV 2023): refined channels, a Tip-Adapter cache weighted by its text divergence.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; T0 = class_prototypes(prototypes).
    logit_scale : s of the zero-shot term (100 for CLIP, the released code's fixed 100).
    dataset : the dataset key whose released config gives every value left at None (released.py; an unknown
        key or None: Caltech101's).
    alpha, beta, gamma : used without validation data (None: the config's init values, e.g. 1, 1, 0.1).
    alpha_grid, beta_grid, gamma_grid : searched on the validation data (None: the config's grids; an empty
        sequence: no search).
    feat_num : channels kept (None: the config's RN50 count scaled to this model's dimension).
    criterion_weights : (w1, w2) of the channel criterion (None: the config's ``w_training_free``).
    random_state : unused (closed form); kept for the uniform interface.
    device : torch device for the search and the logits.

    ``X_aug`` (V, n, D): the cache keys are the normalised mean of the raw views (the released cache).
    See the module docstring for the formulas and every deviation from the released code.
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *,
                 dataset: str | None = None, alpha: float | None = None, beta: float | None = None,
                 gamma: float | None = None, alpha_grid: Sequence[float] | None = None,
                 beta_grid: Sequence[float] | None = None, gamma_grid: Sequence[float] | None = None,
                 feat_num: int | None = None, criterion_weights: Sequence[float] | None = None,
                 random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.dataset = dataset
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.alpha_grid = alpha_grid
        self.beta_grid = beta_grid
        self.gamma_grid = gamma_grid
        self.feat_num = feat_num
        self.criterion_weights = criterion_weights
        self.random_state = random_state
        self.device = device

    def _config(self) -> APEConfig:
        return APE[released_key(self.dataset)]

    def _grids(self) -> dict[str, list[float]]:
        config = self._config()
        given = {"beta": self.beta_grid, "alpha": self.alpha_grid, "gamma": self.gamma_grid}
        released = {"beta": config.beta_grid(), "alpha": config.alpha_grid(), "gamma": config.gamma_grid()}
        return {name: released[name] if grid is None else [float(g) for g in grid] for name, grid in given.items()}

    def _channels(self, dim: int) -> int:
        """Channels to keep: ``feat_num`` (at most ``dim``), or the released RN50 count scaled to ``dim``."""
        if self.feat_num is not None:
            if int(self.feat_num) < 1:
                raise FitError(f"{type(self).__name__}: feat_num must be at least 1 channel, got {self.feat_num}")
            return min(dim, int(self.feat_num))
        return max(1, min(dim, round(self._config().feat_num * dim / APE_RELEASED_DIM)))

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, X_aug: np.ndarray | None = None) -> APEClassifier:
        """Select the channels, build the weighted cache; search beta, alpha, gamma on val when given."""
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        n_classes, dim = data.T0.shape
        config = self._config()
        weights = tuple(float(w) for w in (config.weights if self.criterion_weights is None
                                           else self.criterion_weights))
        if len(weights) != 2:
            raise FitError(f"{type(self).__name__}: criterion_weights must be two numbers (similarity, variance), "
                           f"got {self.criterion_weights!r}")
        keys, key_labels = build_cache(data.X, data.y, data.X_aug)
        dev = torch.device(self.device)
        with torch.no_grad():
            T0 = torch.from_numpy(data.T0).to(dev)
            labels = torch.from_numpy(key_labels).to(dev)
            criterion = channel_criterion(T0, torch.from_numpy(keys).to(dev), labels, weights)
            channels = torch.topk(criterion, self._channels(dim)).indices.sort().values
            refined_keys = F.normalize(torch.from_numpy(keys).to(dev)[:, channels], dim=1)
            divergence = key_divergence(refined_keys, F.normalize(T0[:, channels], dim=1), labels)
        self.zs_prototypes_ = data.T0
        self.channels_ = channels.cpu().numpy()
        self.cache_keys_ = refined_keys.cpu().numpy()
        self.cache_labels_ = key_labels
        self.key_divergence_ = divergence.cpu().numpy()
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = dim
        grids = self._grids()
        if data.has_val and all(grids.values()):
            work = data.X_val.shape[0] * len(keys) * len(grids["beta"]) * len(grids["gamma"])
            with cpu_threads_for(work, self.device):
                chosen, self.val_top1_ = self._search(data.X_val, data.y_val, grids)
            self.search_ = {"grid": grids, "selected_on": "val", "config": released_key(self.dataset),
                            "feat_num": len(self.channels_), "criterion_weights": list(weights)}
            self.hyperparameters_ = chosen
        else:
            self.hyperparameters_ = {name: float(getattr(config, f"init_{name}") if getattr(self, name) is None
                                                 else getattr(self, name)) for name in ("alpha", "beta", "gamma")}
            self.search_ = {}
            self.val_top1_ = top1(self.decision_function(data.X_val), data.y_val) if data.has_val else None
        return self

    def _tensors(self, X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """(zero-shot logits, refined unit rows, refined keys, per-key labels, block) on the device."""
        dev = torch.device(self.device)
        raw = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(dev)
        zs = float(self.logit_scale) * F.normalize(raw, dim=1) @ torch.from_numpy(self.zs_prototypes_).to(dev).T
        refined = F.normalize(raw[:, torch.from_numpy(self.channels_).to(dev)], dim=1)
        keys = torch.from_numpy(self.cache_keys_).to(dev)
        labels = torch.from_numpy(self.cache_labels_).to(dev)
        return zs, refined, keys, labels, equal_blocks(self.cache_labels_, len(self.classes_))

    @torch.no_grad()
    def _search(self, X_val: np.ndarray, y_val: np.ndarray,
                grids: dict[str, list[float]]) -> tuple[dict[str, float], float]:
        """The first best (beta, alpha, gamma) in that loop order, and its val top-1 %."""
        zs, v, keys, labels, block = self._tensors(X_val)
        y = torch.from_numpy(y_val).to(zs.device)
        divergence = torch.from_numpy(self.key_divergence_).to(zs.device)
        betas, alphas, gammas = grids["beta"], grids["alpha"], grids["gamma"]
        alpha_grid = torch.tensor(alphas, dtype=zs.dtype, device=zs.device)
        value_weights = torch.exp(torch.tensor(gammas, dtype=zs.dtype, device=zs.device)[:, None] * divergence)
        correct = torch.zeros(len(betas), len(gammas), len(alphas), dtype=torch.int64, device=zs.device)
        # a chunk's affinities (rows x keys) and its caches (gammas x rows x classes) stay within the bound
        for rows in chunks(len(v), max(len(keys), len(gammas) * zs.shape[1])):
            scorer = FusedScorer(zs[rows], y[rows])
            shifted = v[rows] @ keys.T - 1.0
            affinity = torch.empty_like(shifted)
            for i, beta in enumerate(betas):
                torch.mul(shifted, beta, out=affinity).exp_()
                caches = weighted_cache(affinity, value_weights, labels, zs.shape[1], block)
                for k, cache in enumerate(caches):
                    correct[i, k] += scorer.correct(cache, alpha_grid)
        order = correct.permute(0, 2, 1).flatten()  # (beta, alpha, gamma): the release's loop order
        i, j, k = np.unravel_index(int(torch.argmax(order)), (len(betas), len(alphas), len(gammas)))
        chosen = {"alpha": alphas[j], "beta": betas[i], "gamma": gammas[k]}
        return chosen, float(correct[i, k, j]) / len(y) * 100.0

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """s v . T0^T + alpha exp(-beta (1 - v' . K'^T)) (V * exp(gamma D)), shape (n, C)."""
        check_is_fitted(self, "cache_keys_")
        hp = self.hyperparameters_
        zs, v, keys, labels, block = self._tensors(X)
        weight = torch.exp(hp["gamma"] * torch.from_numpy(self.key_divergence_).to(zs.device))[None]
        with torch.no_grad(), cpu_threads_for(v.numel() * len(keys), self.device):
            out = zs.clone()
            for rows in chunks(len(v), len(keys)):
                affinity = rbf_kernel(v[rows], keys, hp["beta"])
                out[rows] += hp["alpha"] * weighted_cache(affinity, weight, labels, zs.shape[1], block)[0]
        return out.cpu().numpy()
