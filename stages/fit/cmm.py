"""Cross-Modal Mapping (CMM, arXiv 2412.20110) as a scikit-learn estimator on cached CLIP features.

v = norm(x); v' = v + vW (W = 0 at start: training starts at zero-shot CLIP);
T starts at T0 (normalised mean of normalised per-template text features) and trains unless frozen;
l_zs = s v.T0^T, l_cmm = s norm(v').norm(T)^T, fused l = l_zs + alpha l_cmm (no fusion: l = l_cmm);
loss = CE(l, y) + lambda_tri * mean(max(0, d(v', T_y) - d(v', T_n) + margin)) + prior / N * (||W - W0||^2 +
||T - T0||^2), n the closest wrong prototype, d the Euclidean distance between unit vectors, N the number of
few-shot images. See docs method.md and the README's CMM section for why the defaults are what they are.

Selection (``selection``): every rule but "search" trains a fixed schedule and keeps the last step, once per
prior strength (``prior`` and ``prior_grid``), then scores every (prior, alpha in ``alpha_grid``) on val by its
paired gain over zero-shot.
- ``"average"`` (default): the average of the candidates val cannot tell from the best. The band is every
  candidate whose val gain is within ``noise_z`` standard errors of the best gain (``band_members``), less
  those that change more predictions from zero-shot (val and train) than the candidate of the largest lower
  bound (``average_members``); the model kept is the mean of their fused logits, which is zero-shot plus a
  weighted sum of the CMM terms of the (at most three) fits in the band. When the best gain is within
  ``noise_z`` standard errors of 0, val vouches for no gain and zero-shot is kept (without fusion, which has no
  zero-shot term, the best candidate). Why: a val split is a small sample and may come from another
  distribution than test (CoOp's Pets val is 2 points harder than its test); picking the single best of a
  band that val cannot order follows its noise and its shift, averaging the band does not bet on either and
  keeps what the candidates agree on (model averaging), and the cap keeps the average from going further
  from zero-shot than val's best-supported candidate (measured against the alternatives in BENCHMARKS.md);
- ``"guarded"`` (issue 10's default): the largest lower confidence bound of the val gain (``guarded_choice``);
- ``"search"``: the previous behaviour: ``grid`` (e.g. the learning rate), the checkpoint (every
  ``eval_every`` steps, step 0 = zero-shot) and alpha all chosen by highest val accuracy;
- ``"none"``: no validation data used at all.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils.validation import check_is_fitted

from stages.shared.errors import FitError
from stages.fit.estimator import FitData, LogitsClassifierMixin, check_fit_inputs, cpu_threads_for, top1
from stages.fit.features import l2_normalize

MAPS = ("residual", "plain")
SELECTIONS = ("average", "guarded", "search", "none")

#: What ``selection="search"`` (the previous default, ablation ``val_search``) searches on the few-shot val
#: split, on top of the checkpoint and the fusion weight.
DEFAULT_GRID: dict[str, list] = {"lr": [5e-4, 2e-3]}
#: The previous default's settings, so that ``val_search`` reproduces it exactly.
SEARCH_SETTINGS: dict = {"selection": "search", "grid": DEFAULT_GRID, "prior": 0.0, "weight_decay": 1e-2,
                         "steps": 120, "alpha_grid": (0.25, 0.5, 1.0, 2.0, 4.0)}
HYPERPARAMETERS = ("lr", "lambda_tri", "margin", "prior", "train_prototypes", "weight_decay", "batch_size",
                   "steps", "map", "bias", "fusion", "selection")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=1e-12)


def cmm_logits(v: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None, T: torch.Tensor,
               residual: bool, scale: float) -> torch.Tensor:
    """l_cmm = s norm(v').norm(T)^T for unit image features ``v``."""
    mapped = v @ W if not residual else v + v @ W
    if bias is not None:
        mapped = mapped + bias
    return scale * _unit(mapped) @ _unit(T).T


def triplet_loss(cos: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge on d(own) - d(hardest wrong) + margin, d = ||a - b|| = sqrt(2 - 2 cos) for unit vectors."""
    dist = torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-8))
    rows = torch.arange(len(y), device=cos.device)
    wrong = cos.scatter(1, y[:, None], float("-inf"))
    hardest = wrong.argmax(1)
    return F.relu(dist[rows, y] - dist[rows, hardest] + margin).mean()


def paired_gains(correct: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's val gain over zero-shot (the mean of its paired 0/1 differences) and that mean's standard
    error, both in points. ``correct`` is (candidates, n_val) of 0/1, ``reference`` (n_val,) zero-shot's."""
    diff = np.asarray(correct, dtype=np.float64) - np.asarray(reference, dtype=np.float64)[None]
    n = diff.shape[1]
    se = diff.std(1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(diff))
    return diff.mean(1) * 100.0, se * 100.0


def guarded_choice(correct: np.ndarray, reference: np.ndarray, change: np.ndarray,
                   noise_z: float) -> tuple[int, list[float]]:
    """The candidate whose val gain over zero-shot is largest at ``noise_z`` standard errors below its mean.

    ``change`` (candidates,) is the share of predictions each candidate changes from zero-shot (ties go to the
    smaller change). A gain is counted only as far as the val split can vouch for it (the lower confidence
    bound of the paired difference), so where val is tiny and gains are noise, the candidate closest to
    zero-shot wins; where val is large or gains are clear, the best one does. Returns the index and every
    candidate's bound (in points).
    """
    gain, se = paired_gains(correct, reference)
    bound = gain - noise_z * se
    keep = int(min(np.flatnonzero(bound >= bound.max() - 1e-9), key=lambda i: change[i]))
    return keep, [float(b) for b in bound]


def band_members(correct: np.ndarray, reference: np.ndarray, n_se: float) -> tuple[np.ndarray, float]:
    """The candidates val cannot tell from the best: those whose val gain over zero-shot is at least the best
    gain minus ``n_se`` of its standard errors (of equal best gains, the one with the smaller error sets it).

    ``correct`` is (candidates, n_val) of 0/1, ``reference`` (n_val,) zero-shot's 0/1 on the same images.
    Returns the members' indices and that threshold (in points); no member when the threshold is not above
    0, i.e. when val cannot vouch for any gain over zero-shot.
    """
    gain, se = paired_gains(correct, reference)
    threshold = float(np.max((gain - n_se * se)[gain >= gain.max() - 1e-9]))
    if threshold <= 0:
        return np.zeros(0, dtype=np.int64), threshold
    return np.flatnonzero(gain >= threshold - 1e-9), threshold


def average_members(correct: np.ndarray, reference: np.ndarray, change: np.ndarray,
                    n_se: float) -> tuple[np.ndarray, float]:
    """The candidates the default averages: the band (``band_members``) without those that change more
    predictions from zero-shot than the candidate val vouches for best (``guarded_choice``, always in the band).

    When val is harder than test, the band's boldest members owe their val gain to val's shift; capping the
    band at the change val's best lower bound supports keeps the average from reaching further than that.
    """
    members, threshold = band_members(correct, reference, n_se)
    if len(members):
        keep, _ = guarded_choice(correct, reference, change, n_se)
        members = members[change[members] <= change[keep] + 1e-12]
    return members, threshold


class CMMClassifier(LogitsClassifierMixin, BaseEstimator):
    """Cross-Modal Mapping few-shot classifier over raw CLIP image features.

    Parameters
    ----------
    prototypes : (C, D) or (C, L, D) raw text features; class c is label c.
    logit_scale : CLIP's exp(logit_scale), s (100 for CLIP).
    lr : Adam(W) learning rate of the map W (and of T, times ``proto_lr_scale``).
    steps : optimisation steps on mini-batches of ``batch_size`` (reshuffled every pass; full batch if smaller).
    lambda_tri, margin : triplet weight and margin.
    prior : strength of the pull of W towards its start (0, or I for the plain map) and of T towards T0,
        divided by the number of few-shot images N (a Gaussian prior against N samples' likelihood: the fewer
        the shots, the closer CMM stays to zero-shot).
    alpha : weight of l_cmm in the fused logits (while training, and the default at prediction).
    alpha_grid : fusion weights tried on the validation data after training (the logits decompose).
    selection : "average", "guarded", "search" or "none" (module docstring).
    noise_z : how many standard errors of the paired val gain: below the best gain, the band of candidates
        val cannot tell from it ("average"); below a candidate's gain, its lower bound ("guarded").
    train_prototypes : False freezes T = T0 (ablation).
    map : "residual" (v + vW, W = 0) or "plain" (vW, W = I, pulled towards I: the same model written another
        way, so its fits equal the residual map's; kept so that runs of the former ``plain_map`` ablation load).
    bias : add a trainable bias to the mapped feature (ablation).
    fusion : False uses l_cmm alone (ablation).
    weight_decay : AdamW's decoupled decay of W and of the bias ("search" used 1e-2).
    eval_every : steps between validation checkpoints ("search").
    grid : {parameter: [values]} searched on the validation data ("search": one fit per combination, the
        best by validation accuracy, ties to the lower cross-entropy).
    random_state : seeds the batch order (torch.Generator; no global state is touched).
    device : torch device for training ("cpu" or "cuda").

    Fitted: ``W_``, ``prototypes_``, ``bias_``, ``alpha_`` of one fit; for a band average, that is the fit of
    its member of the largest val gain, weighted ``alpha_``, and ``extra_W_``, ``extra_prototypes_``, ``extra_bias_``,
    ``extra_alpha_`` hold the other fits in the average and their weights (empty for a single fit).
    """

    def __init__(self, prototypes: np.ndarray | None = None, logit_scale: float = 100.0, *, lr: float = 1e-3,
                 proto_lr_scale: float = 1.0, steps: int = 100, batch_size: int = 256, lambda_tri: float = 1.0,
                 margin: float = 0.1, prior: float = 100.0, prior_grid: Sequence[float] | None = (10.0, 1.0),
                 alpha: float = 1.0, alpha_grid: Sequence[float] | None = (0.1, 0.25, 0.5, 1.0, 2.0),
                 selection: str = "average", noise_z: float = 1.0, train_prototypes: bool = True,
                 map: str = "residual", bias: bool = False, fusion: bool = True, weight_decay: float = 0.0,
                 eval_every: int = 12,
                 grid: Mapping[str, Sequence] | None = None, random_state: int = 0, device: str = "cpu") -> None:
        self.prototypes = prototypes
        self.logit_scale = logit_scale
        self.lr = lr
        self.proto_lr_scale = proto_lr_scale
        self.steps = steps
        self.batch_size = batch_size
        self.lambda_tri = lambda_tri
        self.margin = margin
        self.prior = prior
        self.prior_grid = prior_grid
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.selection = selection
        self.noise_z = noise_z
        self.train_prototypes = train_prototypes
        self.map = map
        self.bias = bias
        self.fusion = fusion
        self.weight_decay = weight_decay
        self.eval_every = eval_every
        self.grid = grid
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            X_aug: np.ndarray | None = None) -> CMMClassifier:
        """Train W (and T) on raw features ``X`` (plus augmented views ``X_aug`` (V, n, D), as extra rows)
        with labels ``y``; make the choices of ``selection`` on (X_val, y_val), never on test."""
        data = check_fit_inputs(type(self).__name__, self.prototypes, X, y, X_val, y_val, X_aug)
        if self.map not in MAPS:
            raise FitError(f"CMMClassifier: map must be one of {', '.join(MAPS)}, got {self.map!r}")
        if self.selection not in SELECTIONS:
            raise FitError(f"CMMClassifier: selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.selection == "search" and self.grid and data.has_val:
            return self._fit_grid(data)
        if self.selection in ("average", "guarded") and data.has_val:
            return self._fit_guarded(data)
        with self._threads(data):
            self._fit_one(data)
        return self

    def _fit_grid(self, data: FitData) -> CMMClassifier:
        """One fit per grid point; keep the best on val (accuracy, then lower cross-entropy)."""
        best, best_score = None, None
        for point in ParameterGrid({k: list(v) for k, v in self.grid.items()}):
            candidate = clone(self).set_params(grid=None, **point)
            with self._threads(data):
                candidate._fit_one(data)
            if best_score is None or candidate.val_score_ > best_score:
                best, best_score = candidate, candidate.val_score_
        self._adopt(best)
        self.search_ = {**best.search_, "grid": {**{k: list(v) for k, v in self.grid.items()},
                                                 **best.search_["grid"]}}
        return self

    def _fit_guarded(self, data: FitData) -> CMMClassifier:
        """One fit per prior strength, then every (prior, alpha) scored on val by its paired gain over zero-shot;
        "average" keeps the mean of the band (``band_members``; zero-shot, alpha 0, heads the candidates),
        "guarded" the candidate ``guarded_choice`` picks."""
        priors = [float(self.prior)] + [float(p) for p in (self.prior_grid or ()) if float(p) != float(self.prior)]
        alphas = self._alphas()
        fits, val_terms, candidates, correct, change = [], [], [], [], []
        s = float(self.logit_scale)
        zs_val_logits, zs_train_logits = (s * l2_normalize(X) @ data.T0.T for X in (data.X_val, data.X))
        zs_val, zs_train = zs_val_logits.argmax(1), zs_train_logits.argmax(1)
        if self.selection == "average" and self.fusion:
            correct.append(zs_val == data.y_val)
            change.append(0.0)
            candidates.append((0, priors[0], 0.0))
        for prior in priors:
            fit = clone(self).set_params(prior=prior, prior_grid=None, selection="none")
            with self._threads(data):
                fit._fit_one(data)
            terms = [(zs_val_logits, fit.cmm_term(data.X_val)), (zs_train_logits, fit.cmm_term(data.X))]
            for a in alphas:
                val_pred, train_pred = ((l_zs + a * l_cmm if self.fusion else l_cmm).argmax(1)
                                        for l_zs, l_cmm in terms)
                correct.append(val_pred == data.y_val)
                change.append(np.concatenate([val_pred != zs_val, train_pred != zs_train]).mean())
                candidates.append((len(fits), prior, a))
            fits.append(fit)
            val_terms.append(terms[0][1])
        correct, change, reference = np.stack(correct), np.array(change), zs_val == data.y_val
        z = float(self.noise_z)
        gain, se = paired_gains(correct, reference)
        search: dict = {"grid": {"prior": priors, "alpha": alphas}, "selected_on": "val"}
        if self.selection == "average":
            members, threshold = average_members(correct, reference, change, z)
            if not len(members) and not self.fusion:  # no zero-shot to fall back on: the best candidate alone
                members = np.array([int(np.argmax(gain))])
            weights = np.zeros(len(fits))  # the band's mean logits: zero-shot + sum_f weights[f] l_cmm of fit f
            for i in members:
                weights[candidates[i][0]] += candidates[i][2] / len(members)
            primary = candidates[max(members, key=lambda i: gain[i])][0] if len(members) else 0
            search["rule"] = (f"mean of the fused logits of every candidate whose val gain over zero-shot is within "
                              f"{z:g} standard errors of the best gain and that changes no more predictions from "
                              f"zero-shot than the largest lower bound's candidate; zero-shot when that band does "
                              f"not clear 0")
            search["threshold"] = threshold
            self._adopt(fits[primary])
            self._keep_average(fits, weights, primary)
            val_logits = (zs_val_logits if self.fusion else 0.0) + sum(w * t for w, t in zip(weights, val_terms))
            self.val_top1_ = float(np.mean(np.argmax(val_logits, 1) == data.y_val) * 100.0)
            in_band = set(members.tolist())
            averaged = [{"prior": priors[f], "alpha": float(w)} for f, w in enumerate(weights) if w > 0]
            prior = priors[primary]
        else:
            keep, _ = guarded_choice(correct, reference, change, z)
            search["rule"] = (f"largest val gain over zero-shot minus {z:g} standard errors of the paired difference; "
                              "ties to the candidate that changes fewest predictions (val and train) from zero-shot")
            index, prior, alpha = candidates[keep]
            self._adopt(fits[index])
            self.alpha_, self.val_top1_ = float(alpha), float(correct[keep].mean() * 100.0)
            in_band, averaged = {keep}, []
        self.val_curve_ = [[self.best_step_, self.val_top1_]]
        self.hyperparameters_ = {**self.hyperparameters_, "prior": prior, "alpha": self.alpha_,
                                 "selection": self.selection, **({"averaged": averaged} if averaged else {})}
        accuracy = correct.mean(1) * 100.0
        self.search_ = {
            **search, "zero_shot_val_top1": float(np.mean(reference) * 100.0),
            "candidates": [{"prior": p, "alpha": a, "val_top1": float(acc), "val_gain": float(g), "gain_se": float(e),
                            "gain_bound": float(g - z * e), "changed_vs_zero_shot": float(ch), "kept": i in in_band}
                           for i, ((_, p, a), acc, g, e, ch) in enumerate(zip(candidates, accuracy, gain, se, change))]}
        return self

    def _keep_average(self, fits: list[CMMClassifier], weights: np.ndarray, primary: int) -> None:
        """This estimator's map, prototypes and bias are those of fit ``primary``, weighted ``alpha_``; the other
        fits of positive weight become the ``extra_*`` terms of ``decision_function``."""
        self.alpha_ = float(weights[primary])
        others = [f for f, w in enumerate(weights) if w > 0 and f != primary]
        if others:
            self.extra_alpha_ = np.array([weights[f] for f in others], dtype=np.float64)
            self.extra_W_ = np.stack([fits[f].W_ for f in others])
            self.extra_prototypes_ = np.stack([fits[f].prototypes_ for f in others])
            self.extra_bias_ = np.stack([fits[f].bias_ for f in others]) if self.bias else None

    def _adopt(self, fitted: CMMClassifier) -> None:
        """Take a fitted candidate's fitted attributes (``name_``) as this estimator's."""
        for name, value in vars(fitted).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(self, name, value)

    def _threads(self, data: FitData):
        """One torch thread for small problems (thread wake-ups cost more than the maths), all for large ones."""
        n_classes, dim = data.T0.shape
        rows = len(data.X) * (1 + (0 if data.X_aug is None else len(data.X_aug)))
        per_step = min(rows, int(self.batch_size)) * dim * (dim + n_classes)
        return cpu_threads_for(20 * per_step, self.device)

    def _fit_one(self, data: FitData) -> None:
        """Train with this estimator's own parameters; with ``selection="search"``, keep the checkpoint and
        alpha best on val."""
        T0 = data.T0
        X, y = data.training_rows()
        dev = torch.device(self.device)
        residual = self.map == "residual"
        scale = float(self.logit_scale)
        dim = T0.shape[1]

        t0 = torch.from_numpy(T0).to(dev)
        v = torch.from_numpy(l2_normalize(X)).to(dev)
        yt = torch.from_numpy(y).to(dev)
        zs = scale * v @ t0.T
        W0 = torch.zeros(dim, dim, device=dev) if residual else torch.eye(dim, device=dev)
        W = W0.clone().requires_grad_(True)
        T = t0.clone().requires_grad_(self.train_prototypes)
        b = torch.zeros(dim, device=dev, requires_grad=True) if self.bias else None
        pull = float(self.prior) / len(data.X)

        decayed = [W] + ([b] if b is not None else [])
        groups = [{"params": decayed, "weight_decay": self.weight_decay}]
        if self.train_prototypes:
            groups.append({"params": [T], "weight_decay": 0.0, "lr": self.lr * self.proto_lr_scale})
        opt = torch.optim.AdamW(groups, lr=self.lr)

        checkpoints = data.has_val and self.selection == "search"
        if checkpoints:
            v_val = torch.from_numpy(l2_normalize(data.X_val)).to(dev)
            val = (v_val, torch.from_numpy(data.y_val).to(dev), scale * v_val @ t0.T)

        gen = torch.Generator(device="cpu").manual_seed(int(self.random_state))
        n = len(y)
        batch = min(int(self.batch_size), n)
        order = torch.randperm(n, generator=gen)
        cursor = 0
        best = None
        curve: list[list] = []
        for step in range(int(self.steps) + 1):
            if checkpoints and (step % self.eval_every == 0 or step == self.steps):
                with torch.no_grad():
                    cand = self._search_alpha(val, W, b, T, residual, scale)
                curve.append([step, cand[0]])
                if best is None or cand[:2] > best[0][:2]:
                    best = (cand, step, W.detach().clone(), T.detach().clone(),
                            None if b is None else b.detach().clone())
            if step == self.steps:
                break
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor:cursor + batch].to(dev)
            cursor += batch
            l_cmm = cmm_logits(v[idx], W, b, T, residual, scale)
            logits = zs[idx] + self.alpha * l_cmm if self.fusion else l_cmm
            loss = F.cross_entropy(logits, yt[idx])
            if self.lambda_tri:
                loss = loss + self.lambda_tri * triplet_loss(l_cmm / scale, yt[idx], self.margin)
            if pull:
                loss = loss + pull * ((W - W0).pow(2).sum() + (T - t0).pow(2).sum()
                                      + (b.pow(2).sum() if b is not None else 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        self.val_top1_, self.val_score_ = None, None
        search: dict = {}
        if checkpoints:
            (acc, neg_ce, alpha), self.best_step_, W_, T_, b_ = best
            self.alpha_, self.val_top1_, self.val_score_ = float(alpha), float(acc), [float(acc), float(neg_ce)]
            search = {"grid": {"alpha": self._alphas(), "step": [s for s, _ in curve]}, "selected_on": "val",
                      "rule": "highest val top-1, ties to the lower val cross-entropy"}
        else:
            self.best_step_ = int(self.steps)
            W_, T_, b_ = W.detach(), T.detach(), (None if b is None else b.detach())
            self.alpha_ = float(self.alpha)
        self.W_ = W_.cpu().numpy()
        self.prototypes_ = _unit(T_).cpu().numpy()
        self.zs_prototypes_ = T0
        self.bias_ = None if b_ is None else b_.cpu().numpy()
        self.extra_alpha_ = np.zeros(0)  # a single fit: no further terms (an average sets them)
        self.extra_W_ = np.zeros((0, dim, dim), dtype=np.float32)
        self.extra_prototypes_ = np.zeros((0, len(T0), dim), dtype=np.float32)
        self.extra_bias_ = None
        self.val_curve_ = [[int(step), float(acc)] for step, acc in curve]
        self.search_ = search
        self.classes_ = np.arange(len(T0))
        self.n_features_in_ = dim
        chosen = {name: getattr(self, name) for name in HYPERPARAMETERS}
        self.hyperparameters_ = {**chosen, "steps": self.best_step_, "alpha": self.alpha_}

    def _alphas(self) -> list[float]:
        if not self.fusion:
            return [1.0]
        return [float(a) for a in self.alpha_grid] if self.alpha_grid else [float(self.alpha)]

    def _val_logits(self, val: tuple, W: torch.Tensor, b: torch.Tensor | None, T: torch.Tensor, residual: bool,
                    scale: float) -> list[tuple[float, torch.Tensor]]:
        """[(alpha, fused val logits / (1 + alpha))] for every alpha tried (l_cmm alone without fusion)."""
        v_val, _, zs_val = val
        l_cmm = cmm_logits(v_val, W, b, T, residual, scale)
        if not self.fusion:
            return [(1.0, l_cmm)]
        return [(a, (zs_val + a * l_cmm) / (1.0 + a)) for a in self._alphas()]

    def _search_alpha(self, val: tuple, W: torch.Tensor, b: torch.Tensor | None, T: torch.Tensor,
                      residual: bool, scale: float) -> tuple[float, float, float]:
        """(val top-1, -CE, alpha) of the best fusion weight at this checkpoint ("search")."""
        y_val = val[1]
        best = None
        for a, fused in self._val_logits(val, W, b, T, residual, scale):
            acc = top1(fused, y_val)
            cand = (acc, -float(F.cross_entropy(fused, y_val)), a)
            if best is None or cand[:2] > best[:2]:
                best = cand
        return best

    # ---------------------------------------------------------------- inference
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Mapped unit image features norm(v') (the features CMM compares with its prototypes)."""
        check_is_fitted(self, "W_")
        v = l2_normalize(X)
        mapped = v @ self.W_ if self.map == "plain" else v + v @ self.W_
        if self.bias_ is not None:
            mapped = mapped + self.bias_
        return l2_normalize(mapped)

    def cmm_term(self, X: np.ndarray) -> np.ndarray:
        """l_cmm = s norm(v') . norm(T)^T for raw features ``X``."""
        return float(self.logit_scale) * self.transform(X) @ self.prototypes_.T

    def _extra_terms(self, X: np.ndarray) -> np.ndarray | float:
        """sum_q extra_alpha_[q] l_cmm of the q-th further fit of an average (0 for a single fit, and for runs
        saved before averages existed)."""
        weights = getattr(self, "extra_alpha_", None)
        if weights is None or len(weights) == 0:
            return 0.0
        biases = self.extra_bias_ if self.extra_bias_ is not None else [None] * len(weights)
        total = 0.0
        for w, W, T, b in zip(weights, self.extra_W_, self.extra_prototypes_, biases):
            member = copy.copy(self)  # this estimator's map form and scale, with the q-th fit's parameters
            member.W_, member.prototypes_, member.bias_ = W, T, b
            total = total + w * member.cmm_term(X)
        return total

    def decompose(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(l_zs, l_cmm): the two logit terms, so the fusion weight can be re-searched cheaply."""
        check_is_fitted(self, "W_")
        return float(self.logit_scale) * l2_normalize(X) @ self.zs_prototypes_.T, self.cmm_term(X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Fused logits l_zs + alpha_ l_cmm (without fusion: alpha_ l_cmm, alpha_ = 1 for a single fit), plus the
        further fits' terms of an average, shape (n, C)."""
        X = np.asarray(X, dtype=np.float32)
        l_zs, l_cmm = self.decompose(X)
        return (l_zs if self.fusion else 0.0) + self.alpha_ * l_cmm + self._extra_terms(X)
