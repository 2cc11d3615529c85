"""Hyper-parameter table: what was chosen on val per dataset x shots, the most frequent value over seeds
and, where seeds disagree, every seed's value."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from stages.report.groups import RANDOM_LABEL, RunGroup
from stages.report.style import model_title
from stages.shared.naming import join_name
from stages.report.table import Column, Table


def format_value(value: Any) -> str:
    """Compact text of a hyper-parameter value: 0.001, 1e-05, true, [1, 2], {"a": 1}."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def summarise(by_seed: dict[int, Any]) -> str:
    """'0.001' when every seed agrees, else '0.001 (2/3; seed 1: 0.001, seed 2: 0.001, seed 3: 0.01)'.

    The most frequent value comes first; a tie goes to the value of the lowest seed.
    """
    texts = {seed: format_value(by_seed[seed]) for seed in sorted(by_seed)}
    counts = Counter(texts.values())
    top = max(counts, key=lambda t: (counts[t], -min(s for s, x in texts.items() if x == t)))
    if len(counts) == 1:
        return top
    per_seed = ", ".join(f"seed {s}: {t}" for s, t in texts.items())
    return f"{top} ({counts[top]}/{len(texts)}; {per_seed})"


def hparams_table(group: RunGroup) -> Table | None:
    """Rows dataset x shots, columns the hyper-parameter names; None when no record chose any."""
    names = sorted({n for r in group.records() for n in r.hyperparameters})
    if not names:
        return None
    suffix = f" [{RANDOM_LABEL}]" if group.random_weights else ""
    table = Table(
        name=join_name("hparams", group.name, group.method_label),
        title=f"{group.method_label}: hyper-parameters chosen on val — {model_title(group.model, group.weights)}{suffix}",
        columns=[Column("Dataset", "text"), Column("Shots", "text"), Column("Seeds", "text")]
        + [Column(n, "text") for n in names],
        meta={"kind": "hparams", "model": group.model, "weights": group.weights,
              "method_label": group.method_label, "random_weights": group.random_weights},
    )
    for d in group.datasets:
        for k in group.shots:
            by_seed = group.cells.get((d, k))
            if not by_seed:
                continue
            row = [d, str(k), f"{len(by_seed)}/{len(group.seeds)}"]
            for n in names:
                chosen = {s: r.hyperparameters[n] for s, r in by_seed.items() if n in r.hyperparameters}
                row.append(summarise(chosen) if chosen else None)
            table.rows.append(row)
    table.notes.append("each cell: the most frequent value over seeds; where seeds disagree, the count and "
                       "every seed's value follow; selection was on the few-shot val split, never on test")
    return table
