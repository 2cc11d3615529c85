"""The download manifest: per dataset, its archives and checksums, and how to lay them out for ``pipeline extract``.

The built-in manifest is ``manifest.json`` beside this module. A user manifest (``--manifest FILE``) has the
same form and is merged over it per dataset: its top-level fields replace the built-in ones, and its ``files``
replace the built-in files position by position (a file keeps its built-in ``name`` unless given one, so the
layout steps still find it). The smallest override is ``{"dtd": {"files": [{"url": "...", "sha256": "..."}]}}``.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from stages.extract.download.errors import DownloadError
from stages.extract.download.staging import OWN_NAMES

_HEX = {"md5": re.compile(r"^[0-9a-f]{32}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}
_FILE_FIELDS = {"url", "name", "md5", "sha256", "checksum_source", "no_checksum", "approx_bytes"}
_ENTRY_FIELDS = {"dirname", "source", "licence", "files", "steps", "split", "bring_your_own"}


@dataclass(frozen=True)
class FileEntry:
    """One file to fetch: where from, the name it is stored under (and looked up by on a mirror), its checksums."""

    url: str
    name: str
    md5: str | None = None
    sha256: str | None = None
    checksum_source: str | None = None
    no_checksum: str | None = None  # why there is no checksum, and what verifies the file instead
    approx_bytes: int | None = None

    @property
    def checksums(self) -> dict[str, str]:
        """{algorithm: expected hex digest} for the checksums this file has."""
        return {algo: value for algo, value in (("md5", self.md5), ("sha256", self.sha256)) if value}


@dataclass(frozen=True)
class Step:
    """One layout step: unpack an archive (``extract``), or move a path into the dataset folder (``move``)."""

    kind: str    # "extract" or "move"
    source: str  # archive name or path (relative to the unpack folder, or a fetched file's name)
    target: str = ""  # for "move": the path inside the dataset folder ("." = the folder itself)


@dataclass(frozen=True)
class SplitFile:
    """The split file a dataset's layout needs: its name in the dataset folder, and a bundled copy if shipped."""

    file: str
    bundled: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """Everything ``pipeline download`` knows about one dataset."""

    key: str
    dirname: str
    files: tuple[FileEntry, ...]
    steps: tuple[Step, ...]
    split: SplitFile | None = None
    source: str = ""
    licence: str = ""
    bring_your_own: str | None = None  # set when the images cannot be fetched (ImageNet): what to tell the user

    @property
    def approx_bytes(self) -> int | None:
        """Approximate total download size, or None when a file's size is unknown."""
        sizes = [entry.approx_bytes for entry in self.files]
        return None if any(size is None for size in sizes) else sum(sizes)


def builtin_manifest() -> dict:
    """The raw built-in manifest (JSON object), read from the package."""
    text = resources.files("stages.extract.download").joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)


def read_user_manifest(path: Path) -> dict:
    """A user manifest file as a JSON object; a one-line DownloadError if unreadable or malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DownloadError(f"cannot read manifest {path} ({exc.strerror or exc}) — check the --manifest path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DownloadError(f"manifest {path} is not valid JSON ({exc}) — fix the file") from None
    if not isinstance(data, dict):
        raise DownloadError(f"manifest {path} must hold a JSON object {{dataset: entry}}, got {type(data).__name__}")
    return data


def load_manifest(user_file: Path | None = None, known_keys: tuple[str, ...] | None = None) -> dict[str, DatasetEntry]:
    """The built-in manifest, with ``user_file`` merged over it; every entry parsed and checked."""
    raw = {key: value for key, value in builtin_manifest().items() if not key.startswith("_")}
    where = "the built-in manifest"
    if user_file is not None:
        user = {key: value for key, value in read_user_manifest(user_file).items() if not key.startswith("_")}
        where = f"manifest {user_file}"
        for key, override in user.items():
            if known_keys is not None and key not in known_keys:
                raise DownloadError(f"{where}: unknown dataset {key!r}; entries must be one of {', '.join(known_keys)}")
            if not isinstance(override, dict):
                raise DownloadError(f"{where}: entry {key!r} must be a JSON object")
            raw[key] = merge_entry(raw.get(key, {}), override)
    return {key: parse_entry(key, value, where) for key, value in raw.items()}


def merge_entry(base: dict, override: dict) -> dict:
    """``override`` over ``base``: top-level fields replaced; ``files`` replaced position by position, names kept."""
    merged = {**base, **override}
    if "files" in override and isinstance(override["files"], list):
        base_files = base.get("files", [])
        files = []
        for pos, item in enumerate(override["files"]):
            if isinstance(item, dict) and "name" not in item and pos < len(base_files):
                item = {**item, "name": base_files[pos]["name"]}
            files.append(item)
        merged["files"] = files
    return merged


def parse_entry(key: str, raw: dict, where: str = "the manifest") -> DatasetEntry:
    """A DatasetEntry from its JSON form; DownloadError naming the dataset and field on any mistake."""
    def fail(what: str) -> DownloadError:
        return DownloadError(f"{where}: {key}: {what} — fix the entry (see docs/datasets.md for the form)")

    if not isinstance(raw, dict):
        raise fail("the entry must be a JSON object")
    unknown = sorted(set(raw) - _ENTRY_FIELDS)
    if unknown:
        raise fail(f"unknown field {unknown[0]!r}")
    dirname = raw.get("dirname")
    if not _safe_relative(dirname) or "/" in dirname or dirname in OWN_NAMES or dirname.startswith(".unpacked-"):
        raise fail(f"'dirname' must be a plain folder name other than {', '.join(OWN_NAMES)}, got {dirname!r}")
    files = tuple(_parse_file(item, fail) for item in _list(raw.get("files", []), "files", fail))
    names = [entry.name for entry in files]
    if len(set(names)) != len(names):
        raise fail("two files share one name")
    steps = tuple(_parse_step(item, fail) for item in _list(raw.get("steps", []), "steps", fail))
    split = None
    if raw.get("split") is not None:
        spec = raw["split"]
        if not isinstance(spec, dict) or not _safe_relative(spec.get("file")):
            raise fail("'split' must be an object with a relative 'file'")
        split = SplitFile(spec["file"], spec.get("bundled"), spec.get("sha256"))
    return DatasetEntry(key, dirname, files, steps, split, str(raw.get("source", "")), str(raw.get("licence", "")),
                        raw.get("bring_your_own"))


def _list(value: object, field: str, fail) -> list:
    if not isinstance(value, list):
        raise fail(f"{field!r} must be a list")
    return value


def _parse_file(item: object, fail) -> FileEntry:
    if not isinstance(item, dict):
        raise fail("each file must be an object with at least 'url'")
    unknown = sorted(set(item) - _FILE_FIELDS)
    if unknown:
        raise fail(f"file field {unknown[0]!r} is unknown (use url, name, md5, sha256, approx_bytes)")
    url = item.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https", "file"):
        raise fail(f"file url {url!r} must be an http(s):// or file:// URL")
    name = item.get("name") or posixpath.basename(urlsplit(url).path)
    if not _safe_relative(name) or "/" in name:
        raise fail(f"file name {name!r} must be a plain file name (give 'name' when the URL does not end in one)")
    for algo, pattern in _HEX.items():
        value = item.get(algo)
        if value is not None and not (isinstance(value, str) and pattern.match(value.lower())):
            raise fail(f"{name}: {algo} {value!r} is not a {algo} hex digest")
    size = item.get("approx_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise fail(f"{name}: approx_bytes must be a non-negative integer")
    return FileEntry(url, name, (item.get("md5") or "").lower() or None, (item.get("sha256") or "").lower() or None,
                     item.get("checksum_source"), item.get("no_checksum"), size)


def _parse_step(item: object, fail) -> Step:
    if isinstance(item, dict) and set(item) == {"extract"} and _safe_relative(item["extract"]):
        return Step("extract", item["extract"])
    if (isinstance(item, dict) and set(item) == {"move", "to"} and _safe_relative(item["move"])
            and (item["to"] == "." or _safe_relative(item["to"]))):
        return Step("move", item["move"], item["to"])
    raise fail(f"step {json.dumps(item)[:80]} must be {{\"extract\": NAME}} or {{\"move\": PATH, \"to\": PATH}} "
               "with relative paths")


def _safe_relative(path: object) -> bool:
    """A non-empty relative POSIX path without '..' or '.' parts."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))
