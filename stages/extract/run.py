"""Stage one: encode a dataset's images and class prompts into its cache file, once.

Everything that changes a feature goes into the cache key; a rerun with the same request encodes nothing,
a killed run resumes from its last written block, and ``force`` rebuilds from scratch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cache import CacheWriter, FeatureCache, partial_path
from cache.merge import merge_parts, part_path
from cache.errors import CacheError, CacheMismatchError
from cache.features import image, text
from stages.shared.errors import DatasetError, RequestError
from stages.shared.naming import cache_file, legacy_cache_file, migration_hint
from stages.shared.sampling import coop_sample
from stages.extract.datasets import open_dataset
from stages.extract.encode import (ImageJob, ImageSet, Runtime, Throughput, encode_jobs, encode_texts,
                                   todo_blocks)
from stages.extract import tensor_transform
from stages.extract.models import LoadedModel, key_fields_unbuilt, load_model
from stages.extract.templates import format_prompts, templates_for
from stages.extract.views import augment_transform

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "amp", "amp_bf16")
STORE_DTYPES = ("float32", "float16")
DECODERS = ("auto", "pil", "tensor")


@dataclass
class ExtractRequest:
    """What to encode, with which model, and how."""

    dataset: str
    model: str
    pretrained: str | None
    cache_dir: Path
    data_root: Path | None = None
    splits: tuple[str, ...] | None = None  # default: every split the dataset has
    template_sets: tuple[str, ...] = ("coop",)
    aug_views: int = 0
    aug_seed: int = 1
    train_subset: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (shots, seeds): encode only these
    batch_size: int | None = None  # images per block and batch; None: default_batch_size(device)
    workers: int | None = None
    precision: str = "auto"
    device: str = "auto"
    store_dtype: str = "float32"
    weights_tag: str | None = None
    skip_bad: bool = False
    fast_decode: bool = False  # JPEGs decoded at reduced scale (features differ slightly; keyed in the cache)
    decode: str = "auto"  # pil | tensor | auto (tensor on CUDA, pil on the CPU): see _with_decoder
    force: bool = False
    wait: float | None = 0.0
    dataset_options: dict = field(default_factory=dict)
    shard: tuple[int, int] = (0, 1)
    argv: str = ""

    def target(self) -> Path:
        """The cache file for this dataset x model x weights."""
        return cache_file(self.cache_dir, self.dataset, self.model, self.pretrained)


@dataclass
class ExtractResult:
    path: Path
    encoded_images: int
    skipped: list[str]
    images_per_second: float
    steady_images_per_second: float = 0.0  # after the first block (no start-up): what a long run settles to


def extract(request: ExtractRequest, progress: Callable[[str], None] = print,
            models: dict[tuple, LoadedModel] | None = None) -> ExtractResult:
    """Run stage one for ``request``; returns where the cache is and how much was encoded.

    The model is built only when there is something to encode. ``models`` keeps built models across calls
    (several datasets with one model build it once).
    """
    _check_request(request)
    reader = open_dataset(request.dataset, request.data_root, **request.dataset_options)
    splits = tuple(request.splits or reader.splits)
    reader.validate(splits)
    runtime = _with_decoder(_runtime(request), request)
    if request.batch_size is None:
        request = dataclasses.replace(request, batch_size=default_batch_size(runtime.device.type))
    path = request.target()
    _refuse_legacy_name(request, path)
    plan = _plan(reader, splits, request)
    listing = reader.fingerprint()
    # a complete cache needs no model built: most of its key is known without one
    known = key_fields_unbuilt(request.model, request.pretrained) if path.exists() and not request.force else None
    complete = known is not None and _already_done(path, _cache_key(known, request, listing, runtime), plan,
                                                   request, weights_tag=request.weights_tag or "")
    if not complete:
        loaded = _model(request, runtime, {} if models is None else models)
        runtime = _with_decoder(runtime, request, loaded, progress)
        key = _cache_key(loaded.key_fields, request, listing, runtime)
        complete = _already_done(path, key, plan, request)
    if complete:
        progress(f"{path}: already complete for this request; nothing to encode (pass --force to rebuild)")
        return ExtractResult(path, 0, [], 0.0)

    attrs = {"dataset": request.dataset, "model": loaded.name, "weights": loaded.weights,
             "random_weights": loaded.random_weights, "logit_scale": loaded.logit_scale,
             "argv": request.argv or " ".join(sys.argv), "model_arg": request.model,
             "pretrained_arg": request.pretrained or "none", "weights_tag": request.weights_tag or "",
             "decoder": DECODER_DESCRIPTIONS[decoder_identity(runtime, request.fast_decode)]}
    rank, world = runtime.shard
    target = path if world == 1 else _part_target(path, rank, world, request.force)
    with CacheWriter(target, key, attrs=attrs, force=request.force, wait=request.wait) as writer:
        if writer.state == "resumed":
            progress(f"{target}: resuming an unfinished extraction")  # shown even with -q: work was left over
        arrays = _layout(writer, reader, loaded, plan, request)
        total = sum(len(rows) for rows in arrays.todo_rows(runtime))
        images, views = arrays.todo_counts(runtime)
        meter = Throughput(total, f"encoding {request.dataset}" + (f" [rank {rank}/{world}]" if world > 1 else ""))
        skipped = _encode_all(writer, reader, loaded, arrays, runtime, request, meter)
        rate = meter.close()
        prompts = _encode_prompts(writer, reader, loaded, request, runtime)
        if world == 1:
            writer.commit()
    if world > 1:
        progress(f"{meter.count} image views encoded by this rank ({rate:.1f} img/s); waiting for the other ranks")
        count, skipped = _merge_shards(path, key, world, rank, meter.count, skipped, progress)
        return ExtractResult(path, count, skipped, rate, meter.steady())
    if skipped:
        progress(f"skipped {len(skipped)} unreadable image(s); listed in {path} (pipeline info lists them)")
    progress(f"{path}: {encoded_summary(images, views, prompts, rate)}"
             + (" [RANDOM WEIGHTS: not CLIP features]" if loaded.random_weights else ""))
    return ExtractResult(path, meter.count, skipped, rate, meter.steady())


def check_datasets(requests: list[ExtractRequest]) -> None:
    """Open and check the dataset of every request, so that a list stops on a missing or broken dataset before
    any of them is encoded."""
    for request in requests:
        _check_request(request)
        reader = open_dataset(request.dataset, request.data_root, **request.dataset_options)
        reader.validate(tuple(request.splits or reader.splits))


def encoded_summary(images: int, views: int, prompts: dict[str, int], rate: float) -> str:
    """'encoded 480 images, 4800 augmented views (52.1 img/s) and 47 prompts (coop)': what this run added."""
    parts = [f"{images} image{'s' if images != 1 else ''}"]
    if views:
        parts.append(f"{views} augmented view{'s' if views != 1 else ''}")
    done = ", ".join(parts) + (f" ({rate:.1f} img/s)" if images + views else "")
    new_prompts = {name: n for name, n in prompts.items() if n}
    if new_prompts:
        count = sum(new_prompts.values())
        done += f" and {count} prompt{'s' if count != 1 else ''} ({', '.join(new_prompts)})"
    return f"encoded {done}"


def _cache_key(model_fields: dict[str, str], request: ExtractRequest, listing: str, runtime: Runtime) -> dict:
    """The cache key: the model's fields, the dataset listing, precision, stored dtype and decoding."""
    key = dict(model_fields, dataset=request.dataset, listing=listing,
               precision=runtime.precision if runtime.precision != "auto" else "fp32", store_dtype=request.store_dtype)
    decoder = decoder_identity(runtime, request.fast_decode)
    if decoder != "pil":  # other pixels, other features: never mixed with a cache of another decoder
        key["decode"] = decoder
    return key


def _model(request: ExtractRequest, runtime: Runtime, models: dict[tuple, LoadedModel]) -> LoadedModel:
    """The request's model on its device and precision, built once per ``models``."""
    spec = (request.model, request.pretrained, request.weights_tag, str(runtime.device), runtime.precision)
    if spec not in models:
        loaded = load_model(request.model, request.pretrained, device=str(runtime.device),
                            weights_tag=request.weights_tag)
        _cast(loaded, runtime)
        models[spec] = loaded
    return models[spec]


def _refuse_legacy_name(request: ExtractRequest, path: Path) -> None:
    """A cache under the naming of an older version is not silently encoded again: say how to rename it."""
    old = legacy_cache_file(request.cache_dir, request.dataset, request.model, request.pretrained)
    if old != path and old.exists() and not path.exists() and not request.force:
        raise CacheError(migration_hint(old, path))


def _part_target(path: Path, rank: int, world: int, force: bool) -> Path:
    """This rank's part file; seeded with the finished cache when extending it, so only new arrays encode."""
    part = part_path(path, rank, world)
    if path.exists() and not force and not partial_path(part).exists():
        shutil.copy2(path, partial_path(part))  # _already_done checked its key
    return part


def _merge_shards(path: Path, key: dict, world: int, rank: int, count: int, skipped: list[str],
                  progress: Callable[[str], None]) -> tuple[int, list[str]]:
    """Wait for every rank, let rank 0 join the parts into the one cache file; totals over all ranks."""
    import torch.distributed as dist

    shares: list = [None] * world
    dist.all_gather_object(shares, (count, skipped))  # also the barrier: every part is closed
    total, skipped = sum(c for c, _ in shares), [e for _, errors in shares for e in errors]
    if rank == 0:
        merge_parts(path, [partial_path(part_path(path, r, world)) for r in range(world)], key)
        if skipped:
            progress(f"skipped {len(skipped)} unreadable image(s); listed in {path} (pipeline info lists them)")
        progress(f"{path}: merged {world} parts; {total} image views encoded in all")
    dist.barrier()  # no rank returns before the cache exists
    return total, skipped


#: what each decoder identity (the cache key's ``decode`` field; absent means pil) did to the pixels
DECODER_DESCRIPTIONS = {
    "pil": "pil: Pillow decode + the model's own torchvision transform",
    "jpeg-draft": "pil with --fast-decode: JPEGs decoded at reduced scale by libjpeg, then the model's transform",
    "tensor-cuda": "tensor: baseline JPEGs decoded by nvjpeg on CUDA, other files by Pillow; Pillow's resampling "
                   "on the GPU",
    "tensor-cpu": "tensor: baseline JPEGs decoded by torchvision's libjpeg-turbo, other files by Pillow; "
                  "Pillow's resampling as tensor operations",
}


def decoder_identity(runtime: Runtime, fast_decode: bool) -> str:
    """The decoder as the cache key names it: features of two identities never share a file."""
    if runtime.decode == "tensor":
        return f"tensor-{'cuda' if runtime.device.type == 'cuda' else 'cpu'}"
    return "jpeg-draft" if fast_decode else "pil"


def _with_decoder(runtime: Runtime, request: ExtractRequest, loaded: LoadedModel | None = None,
                  progress: Callable[[str], None] = print) -> Runtime:
    """Resolve ``--decode auto`` (tensor on CUDA, pil elsewhere: BENCHMARKS.md says why); with the model
    built, check that the tensor path can follow its preprocessing (else pil, or an error if tensor was asked)."""
    decode = runtime.decode if loaded is not None else request.decode
    if decode == "auto":
        decode = "tensor" if runtime.device.type == "cuda" and not request.fast_decode else "pil"
    if decode == "tensor" and loaded is not None:
        try:
            tensor_transform.eval_transform(loaded.preprocess)
        except tensor_transform.UnsupportedTransform as exc:
            if request.decode == "tensor":
                raise RequestError(f"--decode tensor cannot follow this model's preprocessing ({exc}); "
                                   "use --decode pil") from None
            progress(f"decoding with Pillow: the tensor path cannot follow this model's preprocessing ({exc})")
            decode = "pil"
    return dataclasses.replace(runtime, decode=decode)


def _check_request(request: ExtractRequest) -> None:
    if request.decode not in DECODERS:
        raise RequestError(f"unknown decoder '{request.decode}' (choose from {', '.join(DECODERS)})")
    if request.decode == "tensor" and request.fast_decode:
        raise RequestError("--fast-decode is a Pillow option: use it with --decode pil (or auto), not tensor")
    if request.precision not in PRECISIONS:
        raise RequestError(f"unknown precision '{request.precision}' (choose from {', '.join(PRECISIONS)})")
    if request.store_dtype not in STORE_DTYPES:
        raise RequestError(f"unknown store dtype '{request.store_dtype}' (choose float32 or float16)")
    if (request.batch_size is not None and request.batch_size < 1) or request.aug_views < 0:
        raise RequestError("--batch-size must be >= 1 and --aug-views >= 0")


def _runtime(request: ExtractRequest) -> Runtime:
    device = request.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RequestError(f"--device {device} requested but torch sees no CUDA device; use --device cpu")
    precision = request.precision
    if precision == "auto":
        precision = "amp" if device.startswith("cuda") else "fp32"
    workers = request.workers
    if workers is None:
        workers = default_workers(device)
    return Runtime(torch.device(device), precision, workers, request.skip_bad, request.shard)


def default_batch_size(device: str) -> int:
    """Images per batch (and per cache block) when none is asked for: 256 on a GPU, 128 on the CPU.

    A GPU batch of 256 keeps per-batch costs (launches, the host's block write) small next to the forward;
    on the CPU a batch takes seconds already and a smaller block loses less to a kill.
    """
    return 256 if device.startswith("cuda") else 128


def default_workers(device: str) -> int:
    """DataLoader workers when none are asked for (the rule measured in BENCHMARKS.md, GPU extraction).

    On a GPU the workers feed the device, and the main process needs a core to drive it (and one for the
    pin-memory thread): every core but two. On the CPU the model itself needs the cores: at most 8 workers,
    one core left to the model.
    """
    cores = _usable_cores()
    if device.startswith("cuda"):
        return max(1, cores - 2)
    return min(8, max(1, cores - 1))


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cast(loaded: LoadedModel, runtime: Runtime) -> None:
    loaded.model.to(runtime.device)
    if runtime.precision == "fp16":
        loaded.model.half()
    elif runtime.precision == "bf16":
        loaded.model.bfloat16()


@dataclass
class _Plan:
    """Per split: the listing and the positions to encode."""

    listings: dict[str, list]
    positions: dict[str, np.ndarray]


def _plan(reader, splits: tuple[str, ...], request: ExtractRequest) -> _Plan:
    listings = {split: reader.items(split) for split in splits}
    positions = {split: np.arange(len(items), dtype=np.int64) for split, items in listings.items()}
    if request.train_subset is not None:
        if "train" not in listings or "val" not in reader.splits:
            raise DatasetError(f"{request.dataset}: --subset-shots needs a train and a val split")
        train = np.array([i.label for i in listings["train"]])
        val = np.array([i.label for i in reader.items("val")])
        chosen: set[int] = set()
        for shots in request.train_subset[0]:
            for seed in request.train_subset[1]:
                chosen.update(int(p) for p in coop_sample(train, val, shots, seed)["train"])
        positions["train"] = np.array(sorted(chosen), dtype=np.int64)
    for split, items in listings.items():
        if not items:
            raise DatasetError(f"{request.dataset}: split '{split}' lists no images; check the split file")
    return _Plan(listings, positions)


def _already_done(path: Path, key: dict, plan: _Plan, request: ExtractRequest, weights_tag: str | None = None) -> bool:
    """Whether the cache at ``path`` holds everything ``request`` asks for; a cache of other inputs is refused.

    With ``weights_tag`` given, ``key`` lacks the model's preprocessing, which that tag and the key's other
    fields determine: a cache that differs in any of them is not refused here but left to the full key.
    """
    if request.force or not path.exists():
        return False
    cache = FeatureCache(path)
    if weights_tag is None:
        cache.check_key(key)
    elif cache.attrs.get("weights_tag") != weights_tag or {k: str(v) for k, v in key.items()} != {
            k: v for k, v in cache.key_fields.items() if k != "preprocess"}:  # a field only one side has counts
        return False
    wanted_aug = request.aug_views > 0 and "train" in plan.positions
    have = set(cache.splits)
    for split, positions in plan.positions.items():
        if split not in have or not np.array_equal(cache.read(image(split, "positions")), positions):
            return False
    if wanted_aug and (image("train", "aug_features") not in cache
                       or cache.file[image("train", "aug_features")].shape[0] < request.aug_views):
        return False
    return all(text(s, "features") in cache for s in request.template_sets)


class _Arrays:
    """The block arrays of one extraction, with the rows each still needs."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object, object, tuple[int, ...], int | None]] = []

    def add(self, split: str, array, bad, lead_index: tuple[int, ...] = (), view: int | None = None) -> None:
        self.entries.append((split, array, bad, lead_index, view))

    def todo_counts(self, runtime: Runtime) -> tuple[int, int]:
        """(images, augmented views) still to encode by this process."""
        counts = [0, 0]
        for entry in self.entries:
            single = _Arrays()
            single.entries.append(entry)
            counts[entry[4] is not None] += sum(len(rows) for rows in single.todo_rows(runtime))
        return counts[0], counts[1]

    def todo_rows(self, runtime: Runtime) -> list[range]:
        out = []
        for _, array, bad, lead, _ in self.entries:
            blocks = todo_blocks(array, bad, lead, runtime)
            out += [range(array.rows(b).start, array.rows(b).stop) for b in blocks]
        return out


def _layout(writer: CacheWriter, reader, loaded: LoadedModel, plan: _Plan, request: ExtractRequest) -> _Arrays:
    writer.put("classes", reader.classnames)
    if reader.parent_class_ids is not None:
        writer.put("parent_class_ids", np.asarray(reader.parent_class_ids, dtype=np.int64))
    dim = _embed_dim(loaded)
    arrays = _Arrays()
    block = request.batch_size
    for split, items in plan.listings.items():
        positions = plan.positions[split]
        writer.put(image(split, "labels"), np.array([i.label for i in items], dtype=np.int64))
        writer.put(image(split, "paths"), [i.relpath for i in items])
        writer.put(image(split, "positions"), positions)
        features = writer.array(image(split, "features"), (len(positions), dim), request.store_dtype, block_rows=block)
        bad = writer.array(image(split, "bad"), (len(positions),), "uint8", block_rows=block)
        arrays.add(split, features, bad)
        if split == "train" and request.aug_views > 0:
            aug = writer.array(image(split, "aug_features"), (request.aug_views, len(positions), dim),
                               request.store_dtype, block_rows=block, lead_axes=1,
                               attrs={"seed": request.aug_seed, "transform": "RandomResizedCrop(scale=(0.5, 1), "
                                      "bicubic) + RandomHorizontalFlip"})
            if int(aug.dataset.attrs["seed"]) != request.aug_seed:
                raise CacheMismatchError(f"{writer.path}: augmented views were made with seed "
                                         f"{aug.dataset.attrs['seed']}, requested {request.aug_seed}")
            for view in range(request.aug_views):
                arrays.add(split, aug, None, (view,), view)
    return arrays


def _encode_all(writer, reader, loaded: LoadedModel, arrays: _Arrays, runtime: Runtime, request: ExtractRequest,
                meter: Throughput) -> list[str]:
    jobs: list[ImageJob] = []
    aug = augment_transform(loaded.image_size, loaded.mean, loaded.std)
    tensor_forms = {}
    if runtime.decode == "tensor":
        tensor_forms = {None: tensor_transform.eval_transform(loaded.preprocess),
                        "aug": tensor_transform.augment_transform(aug)}
    for split, array, bad, lead, view in arrays.entries:
        positions = writer.file[image(split, "positions")][()]
        relpaths = [str(p) for p in writer.file[image(split, "paths")].asstr()[()][positions]]
        transform = loaded.preprocess if view is None else aug
        images = ImageSet(reader, relpaths, positions, transform, loaded.image_size,
                         aug_seed=None if view is None else request.aug_seed, view=view or 0,
                         draft=loaded.image_size if request.fast_decode and view is None else None,
                         tensor_transform=tensor_forms.get(None if view is None else "aug"))
        jobs.append(ImageJob(images, array, lead, bad))
    return encode_jobs(loaded.model, jobs, runtime, progress=meter)  # one DataLoader for every split and view


def _encode_prompts(writer, reader, loaded: LoadedModel, request: ExtractRequest,
                    runtime: Runtime) -> dict[str, int]:
    """Encode each template set's prompts not yet in the cache; returns the prompts encoded, per set."""
    encoded: dict[str, int] = {}
    if runtime.shard[0] != 0:
        return encoded
    for template_set in request.template_sets:
        templates = templates_for(request.dataset, template_set)
        prompts = format_prompts(templates, reader.classnames)
        writer.put(text(template_set, "templates"), templates)
        writer.put(text(template_set, "prompts"), np.array(prompts, dtype=object))
        per_block = max(1, request.batch_size // max(1, len(templates)))
        array = writer.array(text(template_set, "features"), (len(prompts), len(templates), _embed_dim(loaded)),
                             "float32", block_rows=per_block)
        rows = [array.rows(block) for (block,) in array.missing()]
        encoded[template_set] = sum(r.stop - r.start for r in rows) * len(templates)
        encode_texts(loaded.model, loaded.tokenizer, prompts, array, runtime)
    return encoded


def _embed_dim(loaded: LoadedModel) -> int:
    projection = getattr(loaded.model, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[-1])
    if isinstance(projection, torch.nn.Linear):
        return int(projection.out_features)
    with torch.inference_mode():
        return int(loaded.model.encode_text(loaded.tokenizer(["a"]).to(next(loaded.model.parameters()).device)).shape[-1])
