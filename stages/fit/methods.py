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

ABLATIONS: dict[str, str] = {
    "no_triplet": "CMM without the triplet loss (lambda = 0)",
    "frozen_prototypes": "CMM with the text prototypes frozen at T0",
    "no_fusion": "CMM logits only, no zero-shot fusion",
    "plain_map": "v' = vW with W = I instead of the residual map",
    "bias": "add a trainable bias to the map",
    "val_search": "CMM's previous selection: learning rate x checkpoint x alpha searched on val, no prior",
}


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
        raise FitError(f"unknown ablation '{unknown[0]}'; choose from {', '.join(ABLATIONS)}")
    on = {name for name, value in (ablation or {}).items() if value}
    params: dict = {}
    if "no_triplet" in on:
        params["lambda_tri"] = 0.0
    if "frozen_prototypes" in on:
        params["train_prototypes"] = False
    if "no_fusion" in on:
        params["fusion"] = False
    if "plain_map" in on:
        params["map"] = "plain"
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
