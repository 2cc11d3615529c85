"""Check a laid-out dataset against what ``pipeline extract`` will read: its split file and every listed image."""

from __future__ import annotations

from pathlib import Path

from stages.shared.errors import DatasetError
from stages.extract.datasets import open_dataset
from stages.extract.datasets.folders import image_files, subfolders
from stages.extract.datasets.shifts import SHIFT_LAYOUTS
from stages.extract.download.errors import DownloadError
from stages.extract.download.manifest import DatasetEntry

_NEEDS_CLASSNAMES = ("imagenet_sketch", "imagenet_a", "imagenet_r")


def classnames_candidates(entry: DatasetEntry, data: Path) -> list[Path]:
    """Where the shift readers look for CoOp's ImageNet classnames.txt."""
    return [data / entry.dirname / "classnames.txt", data / "imagenet" / "classnames.txt"]


def needs_classnames(entry: DatasetEntry) -> bool:
    """ImageNet-Sketch, -A and -R: their reader maps wnid folders through CoOp's ImageNet classnames.txt."""
    return entry.key in _NEEDS_CLASSNAMES


def verify_layout(entry: DatasetEntry, data: Path, classnames_root: Path | None = None) -> str:
    """Check ``data/entry.dirname`` as extract will read it; returns a summary, raises DownloadError on a mismatch.

    Every image the split file (or official split lists) names must be a file: the error says how many are
    missing. ImageNet-Sketch/-A/-R are checked by their class folders only when ``classnames_root`` is given
    (a dataset being built outside the data folder) or no classnames.txt is found: the reader needs CoOp's
    classnames.txt to map them, and the summary says where it goes.
    """
    key = entry.key
    if needs_classnames(entry) and (
            classnames_root is not None or not any(path.is_file() for path in classnames_candidates(entry, data))):
        return _count_shift_images(entry, data, classnames_root or data)
    listed = entry.split.file if entry.split else "the listing extract reads"
    try:
        reader = open_dataset(key, data)
        items = [item for split in reader.splits for item in reader.items(split)]
    except DatasetError as exc:
        raise DownloadError(f"{key}: the unpacked files do not give the layout extract reads ({exc})") from None
    missing = [item.relpath for item in items if not (reader.image_root / item.relpath).is_file()]
    if missing:
        raise DownloadError(
            f"{key}: the archive content does not match {listed}: {len(missing)} of {len(items)} listed images are "
            f"missing (first: {reader.image_root / missing[0]}) — the archive is not the release the split lists; "
            "check the manifest URL or use --mirror with the published archive")
    try:
        reader.validate()
    except DatasetError as exc:
        raise DownloadError(f"{key}: the laid-out dataset fails extract's checks ({exc})") from None
    return f"{len(items)} images verified against {listed}"


def _count_shift_images(entry: DatasetEntry, data: Path, classnames_root: Path) -> str:
    """Class folders and images of a shift set whose classnames.txt is not there yet."""
    image_root = data / entry.dirname / SHIFT_LAYOUTS[entry.key].image_dir
    classes = subfolders(image_root) if image_root.is_dir() else []
    if not classes:
        raise DownloadError(f"{entry.key}: no class folders under {image_root} after unpacking — the archive is not "
                            "the published one; check the manifest URL or use --mirror")
    count = sum(len(image_files(image_root / name)) for name in classes)
    candidates = classnames_candidates(entry, classnames_root)
    summary = f"{count} images in {len(classes)} class folders"
    if any(path.is_file() for path in candidates):
        return summary
    where = " or ".join(str(path) for path in candidates)
    return f"{summary}; extract also needs CoOp's ImageNet classnames.txt in {where} (linked in CoOp's DATASETS.md)"
