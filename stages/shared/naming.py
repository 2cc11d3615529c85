"""Names: the one slug of the code base, and one short name per (dataset, model, weights).

The name of a model x weights is ``<model>__<weights>``, the same in cache files, run folders, report files
and report titles (docs/records.md, "Names"). Each part is the text itself when it is already a safe name
(letters, digits, ``.``, ``_``, ``+``, ``-``): ``ViT-B-32__openai``, ``RN50__none``. Anything else (hub ids,
paths, odd characters) becomes a readable basename plus an 8-hex hash, so no two inputs share a name:

=================================================  =============================================
``--model ViT-B-32 --pretrained openai``           ``ViT-B-32__openai``
``--pretrained none``                              ``ViT-B-32__none``
``--pretrained ~/ckpt/vitb16.pt``                  ``ViT-B-16__vitb16-<sha256 of the file[:8]>``
``--model hf-hub:timm/ViT-B-16-SigLIP``            ``ViT-B-16-SigLIP__hf-hub-<hash of the id>``
``--model local-dir:/models/my-clip``              ``my-clip__local-dir-<hash of its files>``
``--model configs/tiny.json``                      ``tiny__<weights>``
``--model .../my-clip/open_clip_config.json``      ``my-clip__<weights>``
``--model hf-hub:org/my-clip --pretrained none``   ``my-clip__none`` (its architecture, random weights)
=================================================  =============================================

The name is a pure function of the identities every cache and run record stores (``model``, ``weights``),
so old files get the same name. Computing it from CLI arguments needs no torch (a checkpoint is hashed).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from stages.shared.errors import ModelError

HUB, LOCAL_DIR = "hf-hub", "local-dir"
OPEN_CLIP_CONFIG = "open_clip_config.json"  # what hf-hub and local-dir models carry: model_cfg + preprocess_cfg
CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt")
CACHE_SUFFIX = ".h5"
SEPARATOR = "__"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")


def slug(text: object) -> str:
    """The file-name-safe form of any text: each run of other characters becomes ``_`` (never empty, never ``..``).

    The only slug of the code base (a test checks it); ``name_part`` builds on it.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("._")
    return cleaned or "unnamed"


def short_hash(text: str) -> str:
    """8 hex digits of the sha256 of ``text``: what keeps two similar inputs apart in a name."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def name_part(text: object) -> str:
    """``text`` when it is already a safe name, else its slug plus the hash of the full text (unique)."""
    text = str(text)
    if _SAFE.match(text):
        return text
    return f"{slug(text).lstrip('-_.') or 'unnamed'}-{short_hash(text)}"


def join_name(*parts: object) -> str:
    """Parts joined by ``__``, each made safe: a cache stem, a run folder or a report file stem."""
    return SEPARATOR.join(name_part(p) for p in parts)


def model_name(model: str, weights: str) -> str:
    """The short name of a model x weights, from the identities a cache and its run records store.

    ``model`` is the open_clip name (a config JSON by its stem, ``hf-hub:org/repo``, ``local-dir:/path``);
    ``weights`` is a pretrained tag, ``none``, ``file:<name>@<sha12>``, the hub id, or ``local-dir:<name>@<sha12>``.
    """
    model, weights = str(model), str(weights)
    kind, _, rest = model.partition(":")
    if kind in (HUB, LOCAL_DIR) and weights == "none":  # the id's architecture with random weights
        return f"{name_part(rest.rstrip('/').rsplit('/', 1)[-1] or rest)}{SEPARATOR}none"
    if kind == HUB:  # the weights come with the id
        return f"{name_part(rest.rstrip('/').rsplit('/', 1)[-1])}{SEPARATOR}{HUB}-{short_hash(model)}"
    if kind == LOCAL_DIR:
        return f"{name_part(Path(rest).name or rest)}{SEPARATOR}{LOCAL_DIR}-{_digest(weights)}"
    if weights.startswith("file:"):
        stem = Path(weights[len("file:"):].rpartition("@")[0] or weights[len("file:"):]).stem
        return f"{name_part(model)}{SEPARATOR}{slug(stem).lstrip('-_.') or 'weights'}-{_digest(weights)}"
    return join_name(model, weights)


def _digest(identity: str) -> str:
    """The content digest an identity ``<name>@<sha12>`` carries (8 hex), else the hash of the identity."""
    head, at, digest = identity.rpartition("@")
    return digest[:8] if at and re.fullmatch(r"[0-9a-f]{8,}", digest) else short_hash(identity)


def is_random(pretrained: str | None) -> bool:
    """Whether a model name or config gets random weights: ``pretrained`` is 'none', 'random', empty or None."""
    return (pretrained or "").strip().lower() in ("", "none", "random")


def asks_random(pretrained: str | None) -> bool:
    """Whether ``--pretrained`` explicitly says 'none' (or 'random'): an hf-hub: or local-dir: model then gets
    random weights of its architecture; None (not given) keeps the weights that come with the id."""
    return isinstance(pretrained, str) and pretrained.strip().lower() in ("none", "random")


def config_model_name(path: str | Path) -> str:
    """The name a model config JSON stands for: its stem, or its folder's name for open_clip_config.json."""
    path = Path(path).expanduser()
    return path.resolve().parent.name if path.name == OPEN_CLIP_CONFIG else path.stem


def model_identity(model: str) -> str:
    """The model as a cache records it: a config JSON by its name (``config_model_name``), anything else as given."""
    return config_model_name(model) if model.endswith(".json") else model


def weights_identity(model: str, pretrained: str | None) -> str:
    """The weights' identity as ``load_model`` records it, without loading anything (a checkpoint is hashed).

    ``--pretrained none`` with an hf-hub: or local-dir: model means its architecture with random weights: ``none``.
    """
    if model.startswith((f"{HUB}:", f"{LOCAL_DIR}:")) and asks_random(pretrained):
        return "none"
    if model.startswith(f"{HUB}:"):
        return model
    if model.startswith(f"{LOCAL_DIR}:"):
        return local_dir_identity(Path(model.split(":", 1)[1]))
    if is_random(pretrained):
        return "none"
    path = Path(pretrained).expanduser()
    return file_identity(path) if path.is_file() else pretrained


def file_identity(path: Path) -> str:
    """A checkpoint file's identity: ``file:<name>@<sha256[:12]>`` (its bytes, not where it lies)."""
    return f"file:{path.name}@{file_sha256(path)[:12]}"


def local_dir_identity(folder: Path) -> str:
    """A ``local-dir:`` model's identity: ``local-dir:<folder name>@<sha256 of its config and weights[:12]>``."""
    digest = hashlib.sha256()
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES + (".json",))
    if not (folder / "open_clip_config.json").is_file():
        raise ModelError(f"{folder / 'open_clip_config.json'} not found; "
                         "a local-dir: model needs it beside its weights")
    if not any(p.suffix in (".bin", ".pth", ".safetensors") for p in files):
        raise ModelError(f"no weights (.safetensors, .bin or .pth) in {folder}; put the checkpoint there")
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return f"{LOCAL_DIR}:{folder.name}@{digest.hexdigest()[:12]}"


def file_sha256(path: str | Path) -> str:
    """Hash a file's bytes; used for weights files and split files in names and cache keys.

    Remembered per (path, size, modification time) within a process: one command names a checkpoint's cache
    and keys it, and a checkpoint of 600 MB takes about a second to hash.
    """
    status = os.stat(path)
    return _sha256(os.path.realpath(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_file(cache_dir: str | Path, dataset: str, model: str, pretrained: str | None) -> Path:
    """Where the cache of ``dataset`` encoded by ``model`` with ``pretrained`` lives: ``<dir>/<dataset>/<name>.h5``."""
    name = model_name(model_identity(model), weights_identity(model, pretrained))
    return Path(cache_dir) / name_part(dataset) / f"{name}{CACHE_SUFFIX}"


def legacy_cache_file(cache_dir: str | Path, dataset: str, model: str, pretrained: str | None) -> Path:
    """Where versions before the short names put that cache (only to tell the user how to migrate)."""
    weights = pretrained or "none"
    if model.startswith((f"{HUB}:", f"{LOCAL_DIR}:")):
        weights = model.split(":", 1)[0]
    elif Path(weights).expanduser().is_file():
        weights = Path(weights).stem
    model = Path(model).stem if model.endswith(".json") else model
    return Path(cache_dir) / slug(dataset) / f"{slug(model)}{SEPARATOR}{slug(weights)}{CACHE_SUFFIX}"


def migration_hint(old: Path, new: Path) -> str:
    """One line telling how to move a file or folder from its old name to its new one."""
    return f"{old} uses the naming of an older version; rename it to keep using it: mv '{old}' '{new}'"
