"""``pipeline download``: fetch, check and lay out datasets so that ``pipeline extract`` reads them as they are.

Per dataset: a folder already in place is verified against its split file and nothing is fetched. Otherwise
everything happens in ``<data root>/.pipeline-download/<key>/`` (``staging.Staging``: downloads, unpacked
files, the dataset folder being built) and the finished, verified dataset folder is renamed to its real name
in one step, so a dataset folder under its real name is always complete. A rerun after any interruption
resumes: partial downloads with Range requests, finished downloads and unpacked archives are kept. A refused
file or archive (unsafe, damaged, past a size limit: ``RefusedError``) removes the staging folder whole.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from cache.errors import CacheLockedError
from cache.lock import WriteLock
from stages.extract.datasets import DATASETS
from stages.extract.download.errors import DownloadError, DownloadInterrupted, RefusedError
from stages.extract.download.fetch import Fetcher, part_path
from stages.extract.download.limits import Budget, Limits
from stages.extract.download.manifest import DatasetEntry, Step, load_manifest
from stages.extract.download.progress import human_bytes
from stages.extract.download.staging import STAGING, Staging, check_path
from stages.extract.download.unpack import unpack
from stages.extract.download.verify import classnames_candidates, needs_classnames, verify_layout
from stages.shared.safe_io import atomic_write

DOWNLOADABLE: tuple[str, ...] = tuple(key for key in DATASETS if key not in ("folder", "digits"))


@dataclass
class DownloadRequest:
    """What to download, where, and how."""

    datasets: tuple[str, ...]
    data_root: Path
    manifest: Path | None = None
    mirrors: tuple[str, ...] = ()
    keep_archives: bool = False
    dry_run: bool = False
    limits: Limits = field(default_factory=Limits.from_env)


@dataclass
class Outcome:
    """What happened to one dataset: 'in place', 'downloaded', 'planned' (dry run) or 'bring your own'."""

    key: str
    status: str
    folder: Path
    detail: str = ""
    fetched: list[str] = field(default_factory=list)


def manifest_for(request: DownloadRequest) -> dict[str, DatasetEntry]:
    """The manifest the request uses (built-in, with ``--manifest`` merged over it), checked for the keys asked."""
    manifest = load_manifest(request.manifest, DOWNLOADABLE)
    unknown = [key for key in request.datasets if key not in manifest]
    if unknown:
        raise DownloadError(f"unknown dataset {unknown[0]!r} for download; choose from {', '.join(sorted(manifest))}")
    return manifest


def download(request: DownloadRequest, echo: Callable[[str], None] = print,
             fetcher: Fetcher | None = None) -> list[Outcome]:
    """Download and lay out every dataset of ``request`` in turn; raises DownloadError on the first failure.

    Datasets that cannot be fetched (ImageNet) are reported after the others: their one-line error says
    where to put the user's own copy.
    """
    manifest = manifest_for(request)
    fetcher = fetcher or Fetcher(mirrors=request.mirrors, echo=echo, limits=request.limits)
    data = Path(request.data_root).expanduser()
    if data.exists() and not data.is_dir():
        raise DownloadError(f"--data-root {data} is not a folder — pass the folder that holds the dataset folders")
    outcomes = []
    for key in dict.fromkeys(request.datasets):
        entry = manifest[key]
        outcome = _one(entry, data, request, fetcher, echo)
        outcomes.append(outcome)
    missing = [o for o in outcomes if o.status == "bring your own"]
    if missing and not request.dry_run:
        raise DownloadError(missing[0].detail)
    return outcomes


def _one(entry: DatasetEntry, data: Path, request: DownloadRequest, fetcher: Fetcher,
         echo: Callable[[str], None]) -> Outcome:
    folder = data / entry.dirname
    if folder.exists():
        try:
            summary = verify_layout(entry, data)
        except DownloadError as exc:
            raise DownloadError(f"{entry.key}: {folder} exists but is not complete ({exc}) — move it aside or delete "
                                f"it, then rerun `pipeline download {entry.key}`") from None
        echo(f"{entry.key}: in place at {folder} ({summary}); nothing to fetch")
        return Outcome(entry.key, "in place", folder, summary)
    if entry.bring_your_own is not None and not entry.files:
        line = f"{entry.key}: " + entry.bring_your_own.format(folder=folder)
        if request.dry_run:
            echo(line)
        return Outcome(entry.key, "bring your own", folder, line)
    if request.dry_run:
        return _plan(entry, folder, fetcher, echo)
    check_path(data, data / STAGING / entry.key)
    lock = WriteLock(data / STAGING / entry.key)
    try:
        lock.acquire()
    except CacheLockedError:
        raise DownloadError(f"{entry.key}: another `pipeline download` is laying it out in {data} right now "
                            f"(lock {lock.path}); wait for it to finish, then rerun") from None
    except OSError as exc:
        raise DownloadError(f"cannot write in {data} ({exc.strerror}) — check --data-root") from None
    try:
        if folder.exists():  # finished by the other process while this one waited
            return _one(entry, data, request, fetcher, echo)
        return _fetch_and_lay_out(entry, data, request, fetcher, echo)
    except KeyboardInterrupt:
        raise _interrupted(entry, data) from None
    finally:
        lock.release()  # removes the lock file
        _remove_if_empty(data / STAGING)


def _plan(entry: DatasetEntry, folder: Path, fetcher: Fetcher, echo: Callable[[str], None]) -> Outcome:
    """Print what would be fetched (first location, size, checksum) and where it would go; fetch nothing."""
    total = entry.approx_bytes
    size = f"about {human_bytes(total)}" if total is not None else "size unknown"
    echo(f"{entry.key}: would fetch {len(entry.files)} file(s), {size}, into {folder}")
    for item in entry.files:
        check = ", ".join(f"{algo}" for algo in item.checksums) or "no published checksum"
        item_size = f"about {human_bytes(item.approx_bytes)}" if item.approx_bytes is not None else "size unknown"
        echo(f"  {item.name}: {item_size}, {check}, from {' then '.join(fetcher.candidates(item))}")
    if entry.split is not None and entry.split.bundled:
        echo(f"  {entry.split.file}: shipped with the package (CoOp, MIT)")
    return Outcome(entry.key, "planned", folder, size)


def _fetch_and_lay_out(entry: DatasetEntry, data: Path, request: DownloadRequest, fetcher: Fetcher,
                       echo: Callable[[str], None]) -> Outcome:
    stage = Staging.open(data, entry.key, entry.dirname)
    try:
        return _build(entry, stage, request, fetcher, echo)
    except RefusedError:
        stage.remove(stage.root)  # nothing of a refused file or archive is kept
        raise


def _build(entry: DatasetEntry, stage: Staging, request: DownloadRequest, fetcher: Fetcher,
           echo: Callable[[str], None]) -> Outcome:
    downloads, building = stage.downloads, stage.building
    for path in (downloads, stage.unpacked, building):
        stage.check(path)
    try:
        downloads.mkdir(exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {downloads} ({exc.strerror}) — check --data-root") from None
    _check_free_space(entry, stage.root, downloads, fetcher)
    fetched = []
    for item in entry.files:
        if not (downloads / item.name).is_file():
            echo(f"{entry.key}: fetching {item.name}")
            if not item.checksums:
                echo(f"  {item.name}: no published checksum ({item.no_checksum or 'none given'})")
        if fetcher.fetch(item, downloads):
            fetched.append(item.name)
    if fetched:  # what was unpacked or laid out before came from other files: start the layout afresh
        _clear_layout(stage)
    budget = request.limits.unpack_budget(sum(path.stat().st_size for path in downloads.iterdir()), downloaded=True)
    for step in entry.steps:
        _run_step(step, entry, stage, budget, echo)
    building.mkdir(parents=True, exist_ok=True)
    if entry.split is not None and entry.split.bundled:
        _place_bundled_split(entry, building)
    summary = verify_layout(entry, stage.root, classnames_root=stage.data if needs_classnames(entry) else None)
    final = stage.data / entry.dirname
    stage.check(building)
    try:
        os.rename(building, final)
    except OSError as exc:
        raise DownloadError(f"{entry.key}: cannot move the finished dataset to {final} ({exc.strerror}) — "
                            f"it is complete in {building}; move it there yourself") from None
    if needs_classnames(entry) and any(path.is_file() for path in classnames_candidates(entry, stage.data)):
        summary = verify_layout(entry, stage.data)  # the class list is there: check the set as extract will read it
    stage.remove(stage.unpacked)
    if request.keep_archives:
        detail = f"{summary}; archives kept in {downloads}"
    else:
        stage.remove(stage.root)
        detail = summary
    echo(f"{entry.key}: ready at {final} ({detail})")
    return Outcome(entry.key, "downloaded", final, detail, fetched)


def _check_free_space(entry: DatasetEntry, staging: Path, downloads: Path, fetcher: Fetcher) -> None:
    """Stop before fetching when the disk cannot hold what is left to fetch plus the unpacked files."""
    needed = 0
    for item in entry.files:
        if item.approx_bytes is None or (downloads / item.name).is_file():
            unpacked_later = item.approx_bytes or 0
        else:
            partial = part_path(downloads / item.name)
            have = partial.stat().st_size if partial.exists() else 0
            needed += max(item.approx_bytes - have, 0)
            unpacked_later = item.approx_bytes
        if not (staging / _marker(item.name)).exists():
            needed += unpacked_later
    free = fetcher.free_bytes(downloads)
    if needed > free:
        raise DownloadError(f"{entry.key}: not enough free space on {downloads.parent.parent.parent}: needs about "
                            f"{human_bytes(needed)} (archives and unpacked files), {human_bytes(free)} free — free "
                            "some space or choose another --data-root")


def _marker(source: str) -> str:
    """The file that records that an archive was unpacked completely (resume skips it)."""
    return ".unpacked-" + source.replace("/", "__")


def _run_step(step: Step, entry: DatasetEntry, stage: Staging, budget: Budget, echo: Callable[[str], None]) -> None:
    """One layout step; every path it reads, moves or removes is checked to be in staging with no link on the way."""
    downloads, unpacked, building = stage.downloads, stage.unpacked, stage.building
    if step.kind == "extract":
        marker = stage.root / _marker(step.source)
        if marker.exists():
            return
        archive = downloads / step.source if (downloads / step.source).is_file() else unpacked / step.source
        stage.check(archive)
        if not archive.is_file():
            raise DownloadError(f"{entry.key}: archive {step.source} not found after the earlier steps — the "
                                "download is not laid out as the manifest says; check the manifest URL")
        echo(f"{entry.key}: unpacking {step.source}")
        stage.check(unpacked)
        unpack(archive, unpacked, budget)
        marker.touch()
        return
    source = unpacked / step.source if os.path.lexists(unpacked / step.source) else downloads / step.source
    target = building if step.target == "." else building / step.target
    stage.check(source)
    stage.check(target)
    if not os.path.lexists(source):
        if os.path.lexists(target):  # moved by an earlier, interrupted run
            return
        raise DownloadError(f"{entry.key}: {step.source} is not in the unpacked archive — the archive is not laid "
                            "out as the published one; check the manifest URL or use --mirror")
    try:
        if step.target == ".":
            building.mkdir(parents=True, exist_ok=True)
            for child in sorted(source.iterdir()):
                stage.check(child)  # a link among them is refused, never moved into the dataset
                os.replace(child, building / child.name)
            source.rmdir()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    except OSError as exc:
        raise DownloadError(f"{entry.key}: cannot move {source} to {target} ({exc.strerror}) — check the folder "
                            "and rerun") from None


def _place_bundled_split(entry: DatasetEntry, building: Path) -> None:
    """Write the shipped split file (xz) into the dataset folder, checked against its recorded sha256."""
    split = entry.split
    assert split is not None and split.bundled
    dest = building / split.file
    if dest.is_file():
        return
    raw = resources.files("stages.extract.download").joinpath("splits", split.bundled).read_bytes()
    text = lzma.decompress(raw)
    if split.sha256 and hashlib.sha256(text).hexdigest() != split.sha256:
        raise DownloadError(f"{entry.key}: the shipped split file {split.bundled} does not match its sha256 — "
                            "reinstall the package")
    atomic_write(dest, text)  # a full disk or unwritable folder: one-line FileWriteError, dest untouched


def _clear_layout(stage: Staging) -> None:
    """Remove unpacked files, the dataset folder being built and the unpack markers (the downloads stay)."""
    stage.remove(stage.unpacked)
    stage.remove(stage.building)
    for marker in stage.root.glob(".unpacked-*"):
        stage.remove(marker)


def _interrupted(entry: DatasetEntry, data: Path) -> DownloadInterrupted:
    """Ctrl-C: what is kept for the rerun, file by file (a partial file with its size), and that a rerun resumes."""
    final, root = data / entry.dirname, data / STAGING / entry.key
    if final.is_dir():
        return DownloadInterrupted(f"{entry.key} is complete at {final}; only the clean-up of {root} was cut short "
                                   "(delete that folder)")
    downloads = root / "downloads"
    kept = []
    for path in sorted(downloads.iterdir()) if downloads.is_dir() and not downloads.is_symlink() else []:
        if path.name.endswith(".part") and path.is_file():
            kept.append(f"{path} ({human_bytes(path.stat().st_size)} received; the rerun fetches only the rest)")
        elif path.is_file():
            kept.append(f"{path} (complete)")
    if (root / "unpacked").is_dir():
        kept.append(f"the files unpacked so far in {root / 'unpacked'}")
    if not kept:
        return DownloadInterrupted(f"nothing of {entry.key} was kept; rerun the same command")
    return DownloadInterrupted(f"{entry.key}: kept {'; '.join(kept)} — rerun the same command to resume "
                               f"({final} is only created once complete)")


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
