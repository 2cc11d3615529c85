"""The methods ``pipeline fit`` knows: names, CMM ablations, and how each estimator is built.

Every estimator follows one contract (see stages/fit/cmm.py): ``fit(X, y, X_val, y_val, X_aug)`` on raw
features, choosing its own hyper-parameters on the few-shot val split only, then ``decision_function``.
"""

from __future__ import annotations

import inspect

import numpy as np

from stages.shared.errors import FitError

METHODS: tuple[str, ...] = ("cmm", "zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "gda", "lp_pp",
                            "proker", "ape", "clap")
#: what ``pipeline fit`` runs unless told otherwise; the further baselines (clap) are opt-in.
DEFAULT_METHODS: tuple[str, ...] = ("cmm", "zero_shot", "linear_probe", "tip_adapter", "tip_adapter_f", "gda", "lp_pp",
                                    "proker", "ape")

#: methods that train on no image, so that augmented views (``--train-views aug``) cannot change them
IGNORES_VIEWS: frozenset[str] = frozenset({"zero_shot"})

#: CMM ablations: what each one changes in the model (shown by ``pipeline fit --help``). Each is its own run
#: (label ``cmm+<name>``); ``a+b`` combines them in one run (label ``cmm+a+b``, names sorted).
ABLATIONS: dict[str, str] = {
    "no_triplet": "lambda = 0: no triplet loss, cross-entropy only",
    "frozen_prototypes": "T = T0: the prototypes stay the text features, only the map W trains",
    "no_fusion": "l = l_cmm: the prediction without the zero-shot logits",
    "no_prior": "prior = 0: W and T are not pulled towards zero-shot (one fit instead of three prior "
                "strengths; the fusion weight is still chosen on val)",
    "bias": "v' = v + vW + b: a trainable bias b after the map (pulled towards 0 like W)",
    "val_search": "CMM's previous selection: learning rate x checkpoint x alpha by highest val accuracy, no prior",
}
#: Ablations that no longer exist, with why: records that carry them stay readable, new runs are refused.
REMOVED_ABLATIONS: dict[str, str] = {
    "plain_map": "v' = vW with W = I pulled towards I is the residual map v + vW written another way (its fits "
                 "equal cmm's); use no_prior to see what the pull towards zero-shot does",
}


def uses_views(method: str) -> bool:
    """Whether cached augmented views change ``method``'s fit (as extra rows, or averaged into its keys)."""
    return method not in IGNORES_VIEWS


def estimator_classes() -> list[type]:
    """Every estimator class a saved run may name (the whitelist used when loading without pickle)."""
    from stages.fit import baselines
    from stages.fit.cmm import CMMClassifier

    return [CMMClassifier] + [getattr(baselines, name) for name in getattr(baselines, "__all__", ())]


def method_label(method: str, ablation: dict[str, bool] | None = None, template_set: str = "coop",
                 train_views: str = "plain") -> str:
    """The folder name of a method variant: ``cmm``, ``cmm+no_triplet``, ``tip_adapter+aug``, ..."""
    parts = [method]
    if method == "cmm":
        parts += sorted(name for name, on in (ablation or {}).items() if on)
    if template_set != "coop":
        parts.append(f"tpl_{template_set}")
    if train_views != "plain":
        parts.append(train_views)
    return "+".join(parts)


def cmm_ablation_params(ablation: dict[str, bool] | None) -> dict:
    """CMMClassifier parameters that realise the ablation flags."""
    unknown = sorted(set(ablation or {}) - set(ABLATIONS))
    if unknown:
        why = REMOVED_ABLATIONS.get(unknown[0])
        raise FitError(f"ablation '{unknown[0]}' was removed: {why}" if why else
                       f"unknown ablation '{unknown[0]}'; choose from {', '.join(ABLATIONS)}")
    on = {name for name, value in (ablation or {}).items() if value}
    params: dict = {}
    if "no_triplet" in on:
        params["lambda_tri"] = 0.0
    if "frozen_prototypes" in on:
        params["train_prototypes"] = False
    if "no_fusion" in on:
        params["fusion"] = False
    if "no_prior" in on:
        params.update(prior=0.0, prior_grid=None)
    if "bias" in on:
        params["bias"] = True
    if "val_search" in on:
        from stages.fit.cmm import SEARCH_SETTINGS

        params.update(SEARCH_SETTINGS)
    return params


def make_estimator(method: str, prototypes: np.ndarray, logit_scale: float, *, random_state: int,
                   ablation: dict[str, bool] | None = None, device: str = "cpu", dataset: str | None = None,
                   train_views: str = "plain"):
    """A fresh, unfitted estimator of ``method`` with the search grid ``pipeline fit`` uses.

    ``dataset`` (the cache's dataset key) picks the released per-dataset grids of the methods that have them
    (Tip-Adapter(-F), APE, ProKeR); ``train_views="released"`` makes the methods whose released code uses the
    augmented views differently from the project's ``aug`` (GDA, LP++, ProKeR, the linear probe) use them
    as released (their ``views`` parameter).
    """
    from stages.fit import baselines
    from stages.fit.cmm import CMMClassifier

    common = {"logit_scale": float(logit_scale), "random_state": int(random_state), "device": device}
    if method == "cmm":
        return CMMClassifier(prototypes, **cmm_ablation_params(ablation), **common)
    if ablation and any(ablation.values()):
        raise FitError(f"ablations apply to cmm only, not to {method}")
    classes = {"zero_shot": "ZeroShotClassifier", "linear_probe": "LinearProbeClassifier",
               "tip_adapter": "TipAdapterClassifier", "tip_adapter_f": "TipAdapterFClassifier",
               "gda": "GDAClassifier", "lp_pp": "LPPlusPlusClassifier", "proker": "ProKeRClassifier",
               "ape": "APEClassifier", "clap": "CLAPClassifier"}
    if method not in classes:
        raise FitError(f"unknown method '{method}'; choose from {', '.join(METHODS)}")
    cls = getattr(baselines, classes[method])
    accepted = inspect.signature(cls).parameters
    if "dataset" in accepted:
        common["dataset"] = dataset
    if "views" in accepted:
        common["views"] = "released" if train_views == "released" else "aug"
    return cls(prototypes, **common)
