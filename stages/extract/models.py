"""Loading an open_clip model and identifying its weights, failing fast when weights cannot be had.

``--pretrained`` takes a pretrained tag (downloaded by open_clip, or found in its cache), a local checkpoint
file, or ``none`` (random init, seeded, flagged everywhere). ``--model`` takes an open_clip model name, an
``hf-hub:org/repo`` or ``local-dir:/path`` id (weights come with it; with ``--pretrained none`` only its
architecture and preprocessing are used), or a path to a model config JSON (a bare open_clip config, or an
``open_clip_config.json`` with ``model_cfg`` and ``preprocess_cfg``).
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import pickle
import socket
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch

from cache.validate import MAX_LOGIT_SCALE
from stages.shared.errors import ModelError
from stages.shared.naming import (CHECKPOINT_SUFFIXES, asks_random, config_model_name, file_identity, file_sha256,
                                  is_random, local_dir_identity, weights_identity)

log = logging.getLogger(__name__)

HF_HOST = "huggingface.co"


@dataclass
class LoadedModel:
    """An open_clip model in eval mode with what the cache needs to know about it."""

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    weights: str  # identity: tag, "file:<name>@<sha12>", "hf-hub:<id>", "local-dir:<name>@<sha12>", "none"
    random_weights: bool
    logit_scale: float
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    key_fields: dict[str, str] = field(default_factory=dict)


def load_model(
    model_name: str,
    pretrained: str | None,
    *,
    device: str = "cpu",
    weights_tag: str | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build ``model_name`` with ``pretrained`` weights; raise ModelError with a fix when that is impossible."""
    import open_clip

    name, config_file = _register_config(model_name)
    schema = name.split(":", 1)[0] if name.startswith(("hf-hub:", "local-dir:")) else None
    random_asked = asks_random(pretrained)
    pretrained = None if is_random(pretrained) else pretrained
    kwargs: dict = _config_preprocess(config_file)
    if schema is not None and random_asked:  # the id's architecture and preprocessing, random weights
        if schema == "hf-hub":
            _require_hub_files(name.split(":", 1)[1], None, what=f"model {name}")
        weights = "none"
        kwargs["load_weights"] = False
    elif schema == "local-dir":
        weights = local_dir_identity(Path(name.split(":", 1)[1]))
    elif schema == "hf-hub":
        _require_hub_files(name.split(":", 1)[1], None, what=f"model {name}")
        weights = name
    elif pretrained is None:
        weights = "none"
    elif Path(pretrained).expanduser().is_file():
        path = Path(pretrained).expanduser()
        weights = file_identity(path)
        pretrained = str(path)
        kwargs.update(_tag_preprocess(name, weights_tag))  # the tag's preprocessing wins over the config's
    elif _looks_like_path(pretrained):
        raise ModelError(f"weights file not found: {pretrained}; pass an existing checkpoint file, a pretrained tag or none")
    else:
        _require_tag(name, pretrained)
        weights = pretrained
    if weights == "none":
        torch.manual_seed(seed)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if schema else pretrained, device=device, **kwargs
        )
        tokenizer = open_clip.get_tokenizer(name)
    except pickle.UnpicklingError:  # torch's weights-only loader met pickled code: never run it
        source = name.split(":", 1)[1] if schema else pretrained  # the file or folder that was refused
        raise ModelError(f"refusing {source}: it holds pickled Python objects, not just tensors, and is loaded "
                         "with torch's weights-only loader; re-save it as a plain state_dict or .safetensors") from None
    except (RuntimeError, FileNotFoundError, ValueError, KeyError, OSError,
            AttributeError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as exc:  # e.g. a big_vision .npz
        raise ModelError(f"cannot load model {model_name} with weights {weights}: {_short_reason(exc)}") from None
    model.eval()
    size = _image_size(model)
    mean, std = _normalisation(preprocess)
    logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    if weights == "none":
        logit_scale = 100.0  # a random model's init scale (1/0.07) is meaningless; use CLIP's trained value
        log.warning("model %s has RANDOM weights (--pretrained none): features are not CLIP features", name)
    if not math.isfinite(logit_scale) or not 0.0 < logit_scale <= MAX_LOGIT_SCALE:  # a broken or crafted checkpoint
        raise ModelError(f"model {model_name} with weights {weights} has logit scale {logit_scale}, outside "
                         f"(0, {MAX_LOGIT_SCALE:g}]; the checkpoint is broken or not a CLIP model")
    key_fields = {**_identity_fields(name, config_file, weights), "preprocess": _describe(preprocess)}
    return LoadedModel(model, preprocess, tokenizer, name, weights, weights == "none", logit_scale, size, mean, std,
                       key_fields)


def key_fields_unbuilt(model_name: str, pretrained: str | None) -> dict[str, str] | None:
    """``load_model(model_name, pretrained).key_fields`` but the preprocessing, without building the model.

    The preprocessing follows from these fields and ``--weights-tag`` (a tag's is open_clip's, a config file's
    and a local-dir folder's are hashed in them), except for hf-hub ids (the hub's config) and local-dir
    architectures with random weights (the folder's config, unhashed): None for those. Nothing is checked
    here that ``load_model`` would refuse; a missing checkpoint file simply gives fields no cache has.
    """
    name, config_file = _register_config(model_name)
    if name.startswith("hf-hub:") or (name.startswith("local-dir:") and asks_random(pretrained)):
        return None
    return _identity_fields(name, config_file, weights_identity(model_name, pretrained))


def _identity_fields(name: str, config_file: Path | None, weights: str) -> dict[str, str]:
    """The key fields naming the model, its weights and the libraries that run it."""
    import open_clip

    return {"model": name if config_file is None else f"{name}@{file_sha256(config_file)[:12]}",
            "weights": weights, "open_clip": open_clip.__version__, "torch": torch.__version__.split("+")[0]}


def check_model_name(model_name: str) -> None:
    """Raise ModelError (with suggestions) unless ``model_name`` is something open_clip can build."""
    if not model_name.endswith(".json") and not model_name.startswith(("hf-hub:", "local-dir:")):
        _register_config(model_name)


def _register_config(model_name: str) -> tuple[str, Path | None]:
    """A model given as a config JSON path is registered with open_clip under its file stem."""
    import open_clip

    if model_name.endswith(".json"):
        path = Path(model_name).expanduser()
        if not path.is_file():
            raise ModelError(f"model config not found: {path}")
        name = config_model_name(path)
        from open_clip.factory import _MODEL_CONFIGS  # open_clip has no public call to register a dict

        _MODEL_CONFIGS[name] = _read_model_config(path)["model_cfg"]
        return name, path
    if model_name.startswith(("hf-hub:", "local-dir:")):
        if model_name.startswith("local-dir:") and not Path(model_name.split(":", 1)[1]).is_dir():
            raise ModelError(f"model folder not found: {model_name.split(':', 1)[1]} (from {model_name})")
        return model_name, None
    if model_name not in open_clip.list_models():
        given = Path(model_name).expanduser()
        if given.is_dir():
            raise ModelError(f"unknown open_clip model '{model_name}': it is a folder; for a model folder (with "
                             f"open_clip_config.json and its weights) pass --model local-dir:{model_name}")
        if given.is_file():
            raise ModelError(f"unknown open_clip model '{model_name}': it is a file; a checkpoint goes to --pretrained "
                             "(with --model naming its architecture), a model config is a .json")
        names = {m.lower(): m for m in open_clip.list_models()}
        close = [names[m] for m in difflib.get_close_matches(model_name.lower().replace("/", "-"), names, n=4)]
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see open_clip.list_models())"
        raise ModelError(f"unknown open_clip model '{model_name}'{hint}")
    return model_name, None


def _read_model_config(path: Path) -> dict:
    """``{"model_cfg": ..., "preprocess_cfg": ...}`` from a bare model config or open_clip's open_clip_config.json."""
    import json

    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"model config {path} is not readable JSON ({type(exc).__name__}); pass an open_clip "
                         "model config (embed_dim, vision_cfg, text_cfg) or an open_clip_config.json") from None
    config = raw if isinstance(raw, dict) and "model_cfg" in raw else {"model_cfg": raw}
    model_cfg = config["model_cfg"]
    required = ("embed_dim", "vision_cfg", "text_cfg")
    missing = [k for k in required if not isinstance(model_cfg, dict) or k not in model_cfg]
    if missing:
        raise ModelError(f"model config {path} lacks {', '.join(missing)}; pass an open_clip model config "
                         "(embed_dim, vision_cfg, text_cfg) or an open_clip_config.json (model_cfg, preprocess_cfg)")
    if not isinstance(config.get("preprocess_cfg", {}), dict):
        raise ModelError(f"model config {path}: preprocess_cfg must be an object")
    return config


def _config_preprocess(config_file: Path | None) -> dict:
    """create_model_and_transforms arguments for an open_clip_config.json's preprocess_cfg (none for bare configs)."""
    if config_file is None:
        return {}
    cfg = _read_model_config(config_file).get("preprocess_cfg", {})
    mapped = {"image_mean": cfg.get("mean"), "image_std": cfg.get("std"),
              "image_interpolation": cfg.get("interpolation"), "image_resize_mode": cfg.get("resize_mode")}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in mapped.items() if v is not None}


def _short_reason(exc: BaseException) -> str:
    """The first line of an exception's message, with any long list (e.g. every built-in model) left out."""
    import re

    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = re.sub(r"\s*(Available[^:]*:\s*)?\[[^\]]{80,}\]?", " (list omitted)", first)
    return first if len(first) <= 300 else first[:first.rfind(" ", 0, 300)] + " ..."


def _require_tag(model: str, tag: str) -> None:
    """Make sure a pretrained tag's weights are cached or downloadable, within seconds."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        tags = ", ".join(list_pretrained_tags_by_model(model)) or "none"
        raise ModelError(f"unknown pretrained tag '{tag}' for {model} (known: {tags}); or pass a checkpoint file")
    if cfg.get("file"):
        return
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), None)
        _require_hub_files(repo, filename, what=f"{model} / {tag}")
    elif cfg.get("url"):
        _require_host(urlparse(cfg["url"]).hostname or "", what=f"{model} / {tag}")


def _require_hub_files(repo: str, filename: str | None, what: str) -> None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise ModelError("huggingface_hub is not installed; pip install huggingface_hub, or pass a checkpoint file")
    from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME, HF_CONFIG_NAME]
    if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names if n):
        return
    _require_host(HF_HOST, what=what)


def _require_host(host: str, what: str) -> None:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set" if offline and host == HF_HOST else None
    if reason is None:
        try:
            socket.create_connection((host, 443), timeout=3).close()
            return
        except OSError as exc:
            reason = f"{host} is unreachable ({exc.__class__.__name__})"
    raise ModelError(
        f"weights for {what} are not cached and cannot be downloaded: {reason}; download the checkpoint "
        "elsewhere and pass --pretrained /path/to/weights.bin (with --weights-tag TAG for its preprocessing), "
        "or use --pretrained none for random weights"
    )


def _tag_preprocess(model: str, tag: str | None) -> dict:
    """Preprocessing and activation of a pretrained tag, for a checkpoint file saved from that tag."""
    if tag is None:
        return {}
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        raise ModelError(f"unknown --weights-tag '{tag}' for {model}")
    kwargs = {k: cfg[k] for k in ("mean", "std") if k in cfg}
    mapped = {"image_mean": kwargs.get("mean"), "image_std": kwargs.get("std"),
              "image_interpolation": cfg.get("interpolation"), "image_resize_mode": cfg.get("resize_mode"),
              "force_quick_gelu": cfg.get("quick_gelu", False)}
    return {k: v for k, v in mapped.items() if v is not None}


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith(CHECKPOINT_SUFFIXES) or value.startswith(("~", "."))


def _image_size(model: torch.nn.Module) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _normalisation(preprocess: Callable) -> tuple[tuple[float, ...], tuple[float, ...]]:
    for step in getattr(preprocess, "transforms", []):
        if hasattr(step, "mean") and hasattr(step, "std"):
            return tuple(float(x) for x in step.mean), tuple(float(x) for x in step.std)
    raise ModelError("the model's preprocessing has no Normalize step; cannot build augmented views")


def _describe(preprocess: Callable) -> str:
    """A stable one-line description of the eval transform (sizes, interpolation, mean/std)."""
    return " | ".join(" ".join(repr(step).split()) for step in getattr(preprocess, "transforms", [preprocess]))
