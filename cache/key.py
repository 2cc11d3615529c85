"""Content keys: a stable hash of everything that changes a cached feature."""

from __future__ import annotations

import hashlib
import json
from typing import Mapping


def key_digest(fields: Mapping[str, object]) -> str:
    """Return the sha256 hex digest of ``fields`` (order-independent, JSON-canonical)."""
    canonical = json.dumps({k: str(v) for k, v in fields.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def key_diff(expected: Mapping[str, object], found: Mapping[str, object]) -> list[str]:
    """Describe each field whose value differs, as ``name: found 'a', requested 'b'``."""
    lines = []
    for name in sorted(set(expected) | set(found)):
        want, have = expected.get(name), found.get(name)
        if want is None or have is None or str(want) != str(have):
            lines.append(f"{name}: cache has {_show(have)}, requested {_show(want)}")
    return lines


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")
