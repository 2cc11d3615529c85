"""scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 17 grey levels): a benchmark that needs
no download, for trying the pipeline end to end on real images.

- Splits: stratified by label with ``sklearn.model_selection.train_test_split`` and seed 0 — first
  30% test, then 2/7 of the rest val — giving 897 train / 360 val / 540 test (50/20/30), each
  listed in ascending sample index.
- Class names are the words "zero".."nine" (CLIP reads words better than lone digits); the "coop"
  template for digits is CLIP's MNIST prompt ``a photo of the number: "{}".``.
- Paths are ``digits/<5-digit sample index>``; there are no files, the images live in memory.
- ``load_image`` draws ink dark on white paper (value 16 -> black, 0 -> white, as scikit-learn plots
  them) and upsamples 8x8 to 64x64 with bicubic interpolation (smooth strokes rather than blocks),
  greyscale copied to RGB.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from stages.extract.datasets.base import Item, ListedReader
from stages.extract.datasets.checks import Problem, path_problem
from stages.extract.images import BadImageError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_SIZE = 64
SEED = 0
_PATH = re.compile(r"digits/(\d{5})")


class DigitsReader(ListedReader):
    """Reader for the in-memory scikit-learn digits (``root`` is scikit-learn's bundled data folder)."""

    def __init__(self, key: str = "digits") -> None:
        import sklearn.datasets  # here, not at import: every other dataset's extract would pay for it
        from sklearn.model_selection import train_test_split

        bunch = sklearn.datasets.load_digits()
        self._pixels = np.asarray(bunch.images, dtype=np.float64)
        self._targets = np.asarray(bunch.target, dtype=np.int64)
        positions = np.arange(len(self._targets))
        rest, test = train_test_split(positions, test_size=0.3, stratify=self._targets, random_state=SEED)
        train, val = train_test_split(rest, test_size=2 / 7, stratify=self._targets[rest], random_state=SEED)
        listings = {split: [Item(f"digits/{i:05d}", int(self._targets[i]), WORDS[self._targets[i]])
                            for i in sorted(part)]
                    for split, part in (("train", train), ("val", val), ("test", test))}
        folder = Path(sklearn.datasets.__file__).parent / "data"
        super().__init__(key, folder, folder, list(WORDS), listings)

    def load_image(self, relpath: str, draft: int | None = None) -> Image.Image:
        """The digit ``relpath`` as a 64x64 RGB image, dark ink on white (``draft`` is moot: no JPEG)."""
        index = self._index(relpath)
        if index is None:
            raise BadImageError(f"digits: no image {relpath!r}; paths are digits/00000..digits/"
                                f"{len(self._targets) - 1:05d}")
        grey = np.rint((16.0 - self._pixels[index]) * (255.0 / 16.0)).astype(np.uint8)
        small = Image.fromarray(grey)
        return small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC).convert("RGB")

    def image_file(self, relpath: str) -> None:
        """Digits are arrays, not files: every decoder draws them with ``load_image``."""
        return None

    def _index(self, relpath: str) -> int | None:
        """The sample index a path names, or None when it names none."""
        match = _PATH.fullmatch(relpath) if isinstance(relpath, str) else None
        index = int(match.group(1)) if match else -1
        return index if 0 <= index < len(self._targets) else None

    def _check_sources(self, listings: Mapping[str, list[Item]]) -> list[Problem]:
        """Every path names a sample and its label is that sample's digit."""
        problems = []
        for split, items in listings.items():
            for pos, (relpath, label, _name) in enumerate(items):
                if path_problem(relpath):
                    continue  # already reported by check_listing
                index = self._index(relpath)
                where = f"{split} item {pos} ({relpath!r})"
                if index is None:
                    problems.append(Problem(where, "names no digits sample", "use digits/<index> paths"))
                elif label != self._targets[index]:
                    problems.append(Problem(where, f"label {label} but the sample is a {self._targets[index]}",
                                            "fix the listing"))
        return problems

    def _content_digest(self) -> str:
        digest = hashlib.sha256(self._pixels.tobytes())
        digest.update(self._targets.tobytes())
        return digest.hexdigest()
