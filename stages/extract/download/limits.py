"""How much a download may fetch and an archive may unpack, so a hostile host or archive cannot fill the disk.

A file may be at most ``DOWNLOAD_MARGIN`` times its manifest's ``approx_bytes`` plus ``DOWNLOAD_SLACK`` (the
sizes are approximate); without ``approx_bytes`` the server's Content-Length is the bound, and without either
``DEFAULT_MAX_BYTES``. What one dataset unpacks (nested archives included) may be at most ``UNPACK_RATIO``
times the bytes downloaded for it plus ``UNPACK_SLACK``, and never more than ``DEFAULT_MAX_BYTES``; an archive
unpacked on its own is measured against its own size. Each bound can be raised (or set) by an
environment variable, for a source the user trusts: ``PIPELINE_DOWNLOAD_MAX_BYTES``, ``PIPELINE_UNPACK_MAX_RATIO``
and ``PIPELINE_UNPACK_MAX_BYTES``. Sizes take a K, M, G or T suffix (powers of 1024).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from stages.extract.download.errors import DownloadError, RefusedError
from stages.extract.download.progress import human_bytes

DOWNLOAD_ENV = "PIPELINE_DOWNLOAD_MAX_BYTES"
RATIO_ENV = "PIPELINE_UNPACK_MAX_RATIO"
UNPACK_ENV = "PIPELINE_UNPACK_MAX_BYTES"

DOWNLOAD_MARGIN = 2
DOWNLOAD_SLACK = 1 << 20
UNPACK_RATIO = 20.0
UNPACK_SLACK = 64 << 20
DEFAULT_MAX_BYTES = 100 << 30

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


class SizeLimitError(RefusedError):
    """A download or an unpacking went past its bound; what was written for the dataset is removed."""


def parse_size(text: str, variable: str) -> int:
    """'50G' -> 53687091200; a one-line DownloadError naming ``variable`` for anything else."""
    match = _SIZE.match(text)
    if not match:
        raise DownloadError(f"{variable}={text!r} is not a size: give bytes, or a number with K, M, G or T (e.g. 50G)")
    return int(match.group(1)) << _UNITS[match.group(2).upper()]


@dataclass(frozen=True)
class Limits:
    """The bounds in force: ``download_max`` replaces the per-file bound when set; the unpack bounds always apply."""

    download_max: int | None = None
    unpack_ratio: float = UNPACK_RATIO
    unpack_max: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Limits":
        """The defaults, with the environment variables of this module's docstring applied."""
        env = os.environ if environ is None else environ
        ratio = UNPACK_RATIO
        if env.get(RATIO_ENV):
            try:
                ratio = float(env[RATIO_ENV])
            except ValueError:
                ratio = -1.0
            if not 1 <= ratio < float("inf"):
                raise DownloadError(f"{RATIO_ENV}={env[RATIO_ENV]!r} must be a number of at least 1 (e.g. 100)")
        return cls(parse_size(env[DOWNLOAD_ENV], DOWNLOAD_ENV) if env.get(DOWNLOAD_ENV) else None, ratio,
                   parse_size(env[UNPACK_ENV], UNPACK_ENV) if env.get(UNPACK_ENV) else DEFAULT_MAX_BYTES)

    def download_bound(self, approx_bytes: int | None) -> tuple[int | None, str]:
        """(bytes a file may have, the rule that sets it); None when only the server's Content-Length can say."""
        if self.download_max is not None:
            return self.download_max, f"{DOWNLOAD_ENV}={self.download_max}"
        if approx_bytes is None:
            return None, "the manifest gives no approx_bytes"
        return (DOWNLOAD_MARGIN * approx_bytes + DOWNLOAD_SLACK,
                f"{DOWNLOAD_MARGIN} x the manifest's approx_bytes {approx_bytes} + {human_bytes(DOWNLOAD_SLACK)}; "
                f"set {DOWNLOAD_ENV} if you trust the source")

    def unpack_budget(self, basis_bytes: int, downloaded: bool = False) -> "Budget":
        """What ``basis_bytes`` of archives (one archive, or all a dataset ``downloaded``) may unpack to: the ratio
        bound, or the total bound if smaller."""
        basis = f"the {human_bytes(basis_bytes)} downloaded" if downloaded else f"its {human_bytes(basis_bytes)}"
        by_ratio = int(self.unpack_ratio * basis_bytes) + UNPACK_SLACK
        if by_ratio <= self.unpack_max:
            return Budget(by_ratio, f"{self.unpack_ratio:g} x {basis} + {human_bytes(UNPACK_SLACK)}; raise "
                                    f"{RATIO_ENV} if you trust the source")
        return Budget(self.unpack_max, f"raise {UNPACK_ENV} if you trust the source")


class Budget:
    """Bytes unpacking may still produce: decompressed streams and the copies that links become."""

    def __init__(self, bound: int, rule: str) -> None:
        self.bound, self.rule = bound, rule
        self.used = 0

    def check(self, more: int) -> None:
        """SizeLimitError (to be prefixed with the archive's name) if ``more`` bytes would go past the bound."""
        if self.used + more > self.bound:
            raise SizeLimitError(f"refusing to unpack: the unpacked files would pass {human_bytes(self.bound)} "
                                 f"({self.rule}) — a decompression bomb or not the published archive; nothing "
                                 "fetched or unpacked for this dataset was kept")

    def spend(self, count: int) -> None:
        self.check(count)
        self.used += count
