"""CMM's choice among its candidates: the capped band average (default) against the whole band's average, issue 10's
lower-bound rule and two other classic rules, beside the best candidate's test top-1, on the regimes, with CoOp's val
split and the whole one.

    .venv/bin/python benchmarks/cmm_selection.py                       # every regime (BENCHMARKS.md: its time)
    .venv/bin/python benchmarks/cmm_selection.py --regimes pets_hard_val --shots 16 --seeds 1

For each (regime, shots, seed) and val split (``coop``: CoOp's min(K, 4) images per class; ``full``: every val
image, as the real Pets-25 check used), on the same CoOp shots: ``CMMClassifier()`` (the capped band average) and
``CMMClassifier(selection="guarded")`` (issue 10), each scored on test; and, for each prior strength, the
candidate fit itself (``selection="none"``, the fit both rules score), whose test top-1 at every fusion weight is
each candidate's. From the default's record of every candidate (val gain, standard error, change from zero-shot)
three rules that are not the product's are read off: the whole band's average (the default before its cap: the
mean fused logits of every candidate within one standard error of the best val gain), the one-standard-error rule
(the candidate changing fewest predictions among the band) and the best val gain. Test is read only after every fit, to score. Writes
benchmarks/results/cmm_selection.json (``--out``) and prints one Markdown table per regime and val split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import machine, write_timed  # benchmarks/common.py
from method_quality import source_for  # benchmarks/method_quality.py: the regimes and the weak generator
from stages.fit.cmm import CMMClassifier
from stages.fit.features import class_prototypes, l2_normalize
from stages.shared.sampling import coop_sample

RESULTS = Path(__file__).parent / "results" / "cmm_selection.json"
RULES = ("average", "guarded")


def top1(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y) * 100.0)


def one_case(source, shots: int, seed: int, full_val: bool) -> dict:
    """Test top-1 of zero-shot, of each rule's choice (and the choice), and of every candidate."""
    (X, y), (Xv, yv), (Xt, yt) = source.image["train"], source.image["val"], source.image["test"]
    text = source.text["coop"]
    subset = coop_sample(y, yv, shots, seed)
    train = np.array(subset["train"])
    val = np.arange(len(yv)) if full_val else np.array(subset["val"])
    out: dict = {"zero_shot": top1((l2_normalize(Xt) @ class_prototypes(text).T).argmax(1), yt), "rules": {}}
    for rule in RULES:
        model = CMMClassifier(text, random_state=seed, selection=rule).fit(X[train], y[train], Xv[val], yv[val])
        out["rules"][rule] = {"test": model.score(Xt, yt) * 100.0, "prior": model.hyperparameters_["prior"],
                              "alpha": model.hyperparameters_["alpha"]}
        if rule == "average":
            candidates = model.search_["candidates"]   # zero-shot (alpha 0) first, every one with "kept"
            threshold = model.search_["threshold"]
    cmm_terms = {}
    for prior in dict.fromkeys(c["prior"] for c in candidates):
        fit = CMMClassifier(text, random_state=seed, prior=prior, prior_grid=None, selection="none").fit(X[train], y[train])
        l_zs, cmm_terms[prior] = fit.decompose(Xt)
        for c in candidates:
            if c["prior"] == prior:
                c["test"] = top1((l_zs + c["alpha"] * cmm_terms[prior]).argmax(1), yt)
    whole_band = [c for c in candidates if c["val_gain"] >= threshold - 1e-9] if threshold > 0 else []
    uncapped = l_zs + sum(c["alpha"] * cmm_terms[c["prior"]] for c in whole_band) / max(len(whole_band), 1)
    out["rules"]["band_uncapped"] = {"test": top1(uncapped.argmax(1), yt), "members": len(whole_band)}
    band = [c for c in candidates if c["kept"]] or candidates[:1]   # no band: zero-shot
    out["rules"]["one_se"] = {"test": min(band, key=lambda c: c["changed_vs_zero_shot"])["test"]}
    out["rules"]["best_val"] = {"test": max(candidates, key=lambda c: c["val_gain"])["test"]}
    out["candidates"] = candidates
    return out


COLUMNS = {"zero_shot": "zero-shot", "average": "capped band average (default)",
           "band_uncapped": "band average, uncapped", "guarded": "lower bound (issue 10)",
           "one_se": "one-SE, fewest changes", "best_val": "best val gain", "best_candidate": "best candidate"}


def summary(cases: list[dict]) -> dict[str, float]:
    """Means over seeds: zero-shot, each rule, and the best candidate on test (an oracle, for scale)."""
    return {"zero_shot": float(np.mean([c["zero_shot"] for c in cases])),
            **{rule: float(np.mean([c["rules"][rule]["test"] for c in cases])) for rule in cases[0]["rules"]},
            "best_candidate": float(np.mean([max(d["test"] for d in c["candidates"]) for c in cases]))}


def markdown(regime: str, val: str, rows: dict[int, dict[str, float]]) -> str:
    head, keys = list(COLUMNS.values()), list(COLUMNS)
    lines = [f"{regime}, val = {val}:", "", "| shots | " + " | ".join(head) + " |", "|---:|" + "---:|" * len(head)]
    lines += [f"| {k} | " + " | ".join(f"{row[key]:.2f}" for key in keys) + " |" for k, row in rows.items()]
    average = {key: np.mean([row[key] for row in rows.values()]) for key in keys}
    lines.append("| average | " + " | ".join(f"{average[key]:.2f}" for key in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", default="pets_hard_val,pets_like,caltech_like,weak")
    parser.add_argument("--full-val", default="pets_hard_val", help="regimes also run with the whole val split")
    parser.add_argument("--shots", default="1,2,4,8,16")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON (default: %(default)s)")
    args = parser.parse_args()
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out: dict = {"machine": machine(), "shots": shots, "seeds": seeds, "cases": {}, "summary": {}}
    started = time.perf_counter()
    for regime in args.regimes.split(","):
        source = source_for(regime)
        for val in ("coop", "full") if regime in args.full_val.split(",") else ("coop",):
            rows = {}
            for k in shots:
                cases = [one_case(source, k, seed, val == "full") for seed in seeds]
                out["cases"][f"{regime}/{val}/{k}"] = cases
                rows[k] = summary(cases)
            out["summary"][f"{regime}/{val}"] = rows
            print(markdown(regime, val, rows) + "\n", flush=True)
    write_timed(args.out, out, started)


if __name__ == "__main__":
    main()
