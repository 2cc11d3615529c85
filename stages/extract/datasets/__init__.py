"""Dataset readers: ``open_dataset(key, root)`` gives a ``DatasetReader`` for any supported dataset.

``root`` is the data folder holding the dataset folders (CoOp's DATASET.ROOT, e.g. ``$DATA`` with
``$DATA/caltech-101/``), or the dataset's own folder; for ``folder`` it is the image folder itself,
and ``digits`` ignores it. Only ``folder`` takes an option: ``split_file=``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from stages.shared.errors import DatasetError
from stages.extract.datasets.aircraft import open_aircraft
from stages.extract.datasets.base import DatasetReader, Item
from stages.extract.datasets.coop import COOP_LAYOUTS, open_coop
from stages.extract.datasets.digits import DigitsReader
from stages.extract.datasets.folder import open_folder
from stages.extract.datasets.imagenet import open_imagenet
from stages.extract.datasets.shifts import SHIFT_LAYOUTS, open_shift

BENCHMARKS: tuple[str, ...] = ("caltech101", "dtd", "eurosat", "fgvc_aircraft", "food101", "imagenet",
                               "oxford_flowers", "oxford_pets", "stanford_cars", "sun397", "ucf101")
SHIFTS: tuple[str, ...] = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
DATASETS: tuple[str, ...] = BENCHMARKS + SHIFTS + ("folder", "digits")

_OPENERS: dict[str, Callable[..., DatasetReader]] = {
    **{key: open_coop for key in COOP_LAYOUTS},
    **{key: open_shift for key in SHIFT_LAYOUTS},
    "fgvc_aircraft": open_aircraft,
    "imagenet": open_imagenet,
    "folder": open_folder,
    "digits": lambda key, root: DigitsReader(key),
}
_OPTIONS: dict[str, frozenset[str]] = {"folder": frozenset({"split_file"})}

__all__ = ["BENCHMARKS", "DATASETS", "SHIFTS", "DatasetReader", "Item", "open_dataset"]


def open_dataset(key: str, root: str | os.PathLike[str] | None, **options: object) -> DatasetReader:
    """The reader for dataset ``key`` under ``root`` (see the module docstring); raises DatasetError."""
    if key not in _OPENERS:
        raise DatasetError(f"unknown dataset {key!r}; choose one of {', '.join(DATASETS)}")
    unknown = sorted(set(options) - _OPTIONS.get(key, frozenset()))
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS.get(key, ()))) or "none"
        raise DatasetError(f"dataset {key!r} takes no option {unknown[0]!r} (options: {allowed})")
    return _OPENERS[key](key, root, **options)
