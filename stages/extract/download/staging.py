"""The staging folder of one dataset, ``DATA/.pipeline-download/KEY``: where a download writes everything.

It is created whole with a marker file inside (made under a temporary name, then renamed), and nothing is
moved or deleted in it unless the marker is there and every part of the path, from the data root down, is
a real folder or file: this tool never creates a link, so a link there was put by something else and is
refused, never followed nor removed. A folder of that name without the marker was not made by this tool: it
is refused, never emptied.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stages.extract.download.errors import DownloadError

STAGING = ".pipeline-download"
MARKER = ".made-by-pipeline-download"
OWN_NAMES = ("downloads", "unpacked", MARKER)  # a dataset's folder name may not be one of these


def check_path(data: Path, path: Path) -> None:
    """Refuse ``path`` unless it is below ``data`` and no part of it, from ``data`` down, is a symbolic link."""
    try:
        parts = path.relative_to(data).parts
    except ValueError:
        raise DownloadError(f"{path} is not inside {data} — a manifest path may not leave the data root") from None
    here = data
    for part in parts:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise DownloadError(f"{here} is a symbolic link, which `pipeline download` never makes: nothing is moved "
                                "or deleted through it — remove the link (check where it points), then rerun")


@dataclass(frozen=True)
class Staging:
    """One dataset's staging folder: ``downloads/``, ``unpacked/``, the dataset folder being built, markers."""

    data: Path
    root: Path
    dirname: str

    @classmethod
    def open(cls, data: Path, key: str, dirname: str) -> "Staging":
        """The staging folder of ``key``, created with its marker, or the one a previous run made (checked)."""
        root = data / STAGING / key
        check_path(data, root)
        if not os.path.lexists(root):
            root.parent.mkdir(parents=True, exist_ok=True)
            fresh = Path(tempfile.mkdtemp(prefix=f".{key}.new-", dir=root.parent))
            fresh.chmod(0o755)
            (fresh / MARKER).write_text("made by `pipeline download`, which deletes only folders holding this file\n")
            os.rename(fresh, root)
        if not (root / MARKER).is_file():
            raise DownloadError(f"{root} was not made by `pipeline download` (it has no {MARKER} file), so it is "
                                "neither used nor emptied — move it aside, then rerun")
        return cls(data, root, dirname)

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def unpacked(self) -> Path:
        return self.root / "unpacked"

    @property
    def building(self) -> Path:
        """The dataset folder while it is built; renamed to ``DATA/<dirname>`` once verified."""
        return self.root / self.dirname

    def check(self, path: Path) -> None:
        """Refuse ``path`` unless it is in this staging folder with no link on the way (the path itself included)."""
        if self.root not in (path, *path.parents):
            raise DownloadError(f"{path} is not inside {self.root} — a manifest path may not leave it")
        check_path(self.data, path)

    def remove(self, path: Path) -> None:
        """Delete ``path`` (a file or folder of this staging folder, or the folder itself) after ``check``."""
        self.check(path)
        if not (self.root / MARKER).is_file():
            raise DownloadError(f"{self.root} has lost its {MARKER} file; nothing in it is deleted")
        if path.is_dir():
            planted = _first_link(path)
            if planted is not None:
                check_path(self.data, planted)  # refuses it, naming the link
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


def _first_link(folder: Path) -> Path | None:
    """The first symbolic link anywhere under ``folder`` (links are not followed), or None."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                return Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                found = _first_link(Path(entry.path))
                if found is not None:
                    return found
    return None
