"""Find a dataset's folder and its required files, with errors that say where we looked and what to get."""

from __future__ import annotations

import os
from pathlib import Path

from stages.shared.errors import DatasetError

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"


def data_path(key: str, root: str | os.PathLike[str] | None) -> Path:
    """The user's data folder as a Path; refuses None and folders that do not exist."""
    if root is None:
        raise DatasetError(f"{key}: no data folder given; pass the folder that holds the dataset folders")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{key}: data folder {path} does not exist or is not a folder; check the path")
    return path


def dataset_dir(key: str, root: str | os.PathLike[str] | None, dirname: str, markers: tuple[str, ...],
                download: str) -> tuple[Path, Path]:
    """(dataset folder, data folder): ``root/dirname``, or ``root`` itself when it holds one of ``markers``.

    ``root`` is normally the folder that holds all datasets (CoOp's DATASET.ROOT); pointing it at the
    dataset's own folder works too, recognised by the name ``dirname`` or by a marker file or folder.
    """
    data = data_path(key, root)
    if (data / dirname).is_dir():
        return data / dirname, data
    if data.name == dirname or any((data / marker).exists() for marker in markers):
        return data, data.parent
    raise DatasetError(
        f"{key}: dataset folder not found: expected {data / dirname} (or {data} itself to hold "
        f"{' or '.join(markers)}) — download {download} (see {COOP_DATASETS_MD})"
    )


def require_file(key: str, path: Path, what: str, download: str) -> Path:
    """``path`` if it is a file, else a DatasetError naming it and what to download."""
    if not path.is_file():
        raise DatasetError(f"{key}: {what} missing: {path} — download {download} into {path.parent}")
    return path


def require_dir(key: str, path: Path, what: str, download: str) -> Path:
    """``path`` if it is a folder, else a DatasetError naming it and what to download."""
    if not path.is_dir():
        raise DatasetError(f"{key}: {what} missing: {path} — download {download} and extract it there")
    return path
