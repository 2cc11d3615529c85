"""Published reference accuracies (the package's data CSV), matched to our runs by backbone."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from importlib import resources

PUBLISHED_CSV = "published_rn50_fewshot_top1.csv"
# Our method names -> the published method they reproduce (used to pair plot colours and notes).
# Known caveats of published protocols (protocol.md), repeated wherever their numbers are shown.
CAVEATS = {"Tip-Adapter-F": "its published code picks the best epoch on the test split (a known leak)"}


@dataclass
class PublishedSeries:
    """One published method from one source: top-1 by (dataset, shots)."""

    method: str
    backbone: str
    source: str
    top1: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def shots(self) -> list[int]:
        return sorted({k for _, k in self.top1})

    @property
    def zero_shot_only(self) -> bool:
        """True for training-free references (Zero-shot CLIP, CALIP) published at 0 shots only."""
        return self.shots == [0]

    def at(self, dataset: str, shots: int) -> float | None:
        """Top-1 at ``shots``; a 0-shot-only series answers for every shot count."""
        return self.top1.get((dataset, 0 if self.zero_shot_only else shots))

    @property
    def label(self) -> str:
        return f"published: {self.method} ({self.backbone})"

    @property
    def short_source(self) -> str:
        """'APE repository' from 'APE repository, APE_results.ipynb (RN50)'."""
        return self.source.split(",")[0].strip()


def backbone_key(name: str) -> str:
    """Architecture name normalised across spellings: open_clip 'ViT-B-32' and CLIP 'ViT-B/32' -> 'VITB32'.

    open_clip's '-quickgelu' variants are the same architecture as OpenAI's, so the suffix is dropped.
    """
    name = re.sub(r"-quickgelu$", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9]", "", name).upper()


def parse_published(text: str) -> list[PublishedSeries]:
    """Series from CSV text with columns method, backbone, dataset, shots, top1, source ('#' lines skipped)."""
    lines = [line for line in io.StringIO(text, newline="") if not line.lstrip().startswith("#")]
    series: dict[tuple[str, str, str], PublishedSeries] = {}
    for row in csv.DictReader(lines):
        key = (row["method"].strip(), row["backbone"].strip(), row["source"].strip())
        entry = series.setdefault(key, PublishedSeries(method=key[0], backbone=key[1], source=key[2]))
        entry.top1[(row["dataset"].strip(), int(row["shots"]))] = float(row["top1"])
    return list(series.values())


def load_published() -> list[PublishedSeries]:
    """Every series in the package's published CSV, in file order."""
    text = resources.files("stages.report").joinpath("data", PUBLISHED_CSV).read_text(encoding="utf-8")
    return parse_published(text)


def matching(series: list[PublishedSeries], model: str) -> list[PublishedSeries]:
    """The series whose backbone is the architecture of open_clip ``model`` (none for other models)."""
    key = backbone_key(model)
    return [s for s in series if backbone_key(s.backbone) == key]
