"""``pipeline extract``: stage one, images and prompts -> HDF5 feature cache."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.options import dataset_list, name_list, positive_int_list, torch_device
from pipeline.settings import CACHE_DIR_ENV, DATA_ROOT_ENV, default_cache_dir

DEFAULT_DATASET, DEFAULT_MODEL, DEFAULT_WEIGHTS = "digits", "ViT-B-32", "openai"


def _model_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from stages.shared.errors import ModelError
    from stages.extract.models import check_model_name

    try:
        check_model_name(value)
    except ModelError as err:
        raise click.BadParameter(str(err)) from None
    return value


@click.command(short_help="Encode a dataset's images and class prompts into an HDF5 cache.")
@click.option("--dataset", "datasets", default=DEFAULT_DATASET, show_default=True, callback=dataset_list,
              help="Dataset key (caltech101, dtd, ..., imagenet, imagenet_v2, folder, digits), or several, "
                   "comma-separated (one cache each).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), envvar=DATA_ROOT_ENV,
              help=f"Folder holding the datasets (CoOp's DATA layout) [env {DATA_ROOT_ENV}].")
@click.option("--split-file", type=click.Path(dir_okay=False, path_type=Path),
              help="For --dataset folder: a split JSON in CoOp's format.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, callback=_model_name,
              help="open_clip model name, hf-hub:org/repo, local-dir:/path, or a model config .json.")
@click.option("--pretrained", default=DEFAULT_WEIGHTS, show_default=True,
              help="Pretrained tag, a checkpoint file, or 'none' (random weights, flagged everywhere).")
@click.option("--weights-tag", help="With a checkpoint file: the tag whose preprocessing it needs (e.g. openai).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_DIR_ENV,
              default=default_cache_dir, show_default=f"work_dir/cache, env {CACHE_DIR_ENV}",
              help="Where cache files go.")
@click.option("--splits", callback=name_list, help="Splits to encode (default: all the dataset has).")
@click.option("--templates", "template_sets", default="coop", show_default=True, callback=name_list,
              help="Template sets: coop, imagenet7, imagenet8, openai80, file:PATH (comma-separated).")
@click.option("--aug-views", default=0, show_default=True, type=click.IntRange(min=0),
              help="Augmented views per train image (Tip-Adapter uses 10).")
@click.option("--aug-seed", default=1, show_default=True, type=int, help="Seed of the augmented views.")
@click.option("--subset-shots", callback=positive_int_list,
              help="Encode only the train images of these CoOp few-shot subsets (ImageNet-sized sets).")
@click.option("--subset-seeds", default="1,2,3", show_default=True, callback=positive_int_list,
              help="Seeds of those subsets.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images per batch and per cache block (default: 256 on a GPU, 128 on the CPU).")
@click.option("--workers", type=click.IntRange(min=0),
              help="DataLoader workers (default: on a GPU every core but two; on the CPU cores - 1, max 8).")
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "fp32", "fp16", "bf16", "amp", "amp_bf16"]),
              help="auto: amp (fp16 autocast) on GPU, fp32 on CPU.")
@click.option("--device", default="auto", show_default=True, callback=torch_device, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--store-dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]))
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images (recorded in the cache) instead of stopping.")
@click.option("--wait", default=0.0, show_default=True, type=float,
              help="Seconds to wait for another writer of the same cache file.")
@click.option("--fast-decode", is_flag=True,
              help="Decode large JPEGs at reduced scale (1/2-1/8, both sides >= the model's input): faster, "
                   "features slightly different from open_clip's exact preprocessing (see BENCHMARKS.md).")
@click.option("--decode", default="auto", show_default=True, type=click.Choice(["auto", "pil", "tensor"]),
              help="pil: Pillow + the model's transform in the workers (exact open_clip preprocessing); tensor: "
                   "JPEGs decoded in batches on the device (nvjpeg on CUDA), resized there with Pillow's "
                   "algorithm, other files by Pillow; auto: tensor on CUDA, pil on the CPU (BENCHMARKS.md). "
                   "Part of the cache key.")
@click.option("--force", is_flag=True, help="Rebuild the cache file from scratch.")
@click.option("--download", "fetch_dataset", is_flag=True,
              help="First fetch the dataset into --data-root if it is not there (as `pipeline download`; "
                   "mirrors and manifest from PIPELINE_MIRROR and PIPELINE_MANIFEST).")
def extract(datasets, data_root, split_file, model, pretrained, weights_tag, cache_dir, splits, template_sets,
            aug_views, aug_seed, subset_shots, subset_seeds, batch_size, workers, precision, device, store_dtype,
            skip_bad, wait, fast_decode, decode, force, fetch_dataset) -> None:
    """Encode a dataset's images and class prompts with an open_clip model, once, into HDF5.

    With no options: the embedded default (scikit-learn's digits, ViT-B-32, openai weights).
    A rerun encodes only what is missing (and builds no model when nothing is); a killed run resumes where it
    stopped. Several datasets (--dataset dtd,eurosat) are each checked, then encoded one after the other.
    Under torchrun, each rank encodes its share and rank 0 merges the parts.

    \b
    Examples:
      pipeline extract --dataset dtd --data-root ~/data --model ViT-B-16 --pretrained openai
      pipeline extract --dataset dtd --data-root ~/data --aug-views 10 --templates coop,imagenet7
      pipeline extract --dataset dtd,eurosat,oxford_pets --data-root ~/data --model ViT-B-16
      pipeline extract --model local-dir:/path/to/my-clip --pretrained none   # its architecture, random weights
      pipeline extract --dataset eurosat --data-root ~/data --download   # fetch the dataset first if missing
    """
    from stages.extract.run import ExtractRequest
    from pipeline.distributed import run_extract
    from pipeline.failures import check_writable_dir

    if len(datasets) > 1:
        for option, value in (("--split-file", split_file), ("--dataset folder", "folder" in datasets)):
            if value:
                raise click.UsageError(f"{option} belongs to one dataset; extract it on its own, not in a list")
    check_writable_dir(cache_dir, "--cache-dir")

    if fetch_dataset:
        _download_first(datasets, data_root)
    options = {"split_file": split_file} if split_file else {}
    requests = [ExtractRequest(
        dataset=dataset, model=model, pretrained=pretrained, cache_dir=cache_dir, data_root=data_root,
        splits=splits, template_sets=template_sets, aug_views=aug_views, aug_seed=aug_seed,
        train_subset=(subset_shots, subset_seeds) if subset_shots else None, batch_size=batch_size,
        workers=workers, precision=precision, device=device, store_dtype=store_dtype, weights_tag=weights_tag,
        skip_bad=skip_bad, fast_decode=fast_decode, decode=decode, force=force, wait=wait, dataset_options=options,
        argv=" ".join(sys.argv),
    ) for dataset in datasets]
    run_extract(requests, progress=click.echo)


def _download_first(datasets: tuple[str, ...], data_root: Path | None) -> None:
    """``--download``: lay the datasets out under ``data_root`` (verified, nothing fetched when already there)."""
    import os

    from stages.extract.download import DOWNLOADABLE, DownloadRequest, download

    missing = [dataset for dataset in datasets if dataset not in DOWNLOADABLE]
    if missing:
        raise click.BadParameter(f"dataset '{missing[0]}' has nothing to download", param_hint="'--download'")
    if data_root is None:
        raise click.BadParameter(f"give --data-root (or {DATA_ROOT_ENV}) to download into", param_hint="'--download'")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.BadParameter("run `pipeline download` before torchrun, not inside it", param_hint="'--download'")
    from pipeline.settings import MANIFEST_ENV, MIRROR_ENV

    manifest = os.environ.get(MANIFEST_ENV) or None
    mirrors = tuple(os.environ.get(MIRROR_ENV, "").split())
    download(DownloadRequest(datasets=datasets, data_root=data_root, manifest=Path(manifest) if manifest else None,
                             mirrors=mirrors), echo=click.echo)
