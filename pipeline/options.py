"""Parsing helpers shared by the subcommands: comma lists and integer lists with clear errors, cache options."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.settings import CACHE_DIR_ENV, default_cache_dir


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """'1,2,4' -> (1, 2, 4); a bad item is a usage error (exit 2) naming the option and the value."""
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers") from None
    if not items:
        raise click.BadParameter("give at least one integer")
    return items


def positive_int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    items = int_list(ctx, param, value)
    if items is not None and min(items) < 1:
        raise click.BadParameter(f"every value must be >= 1, got {value}")
    return items


def name_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("give at least one name")
    return items


def dataset_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """'dtd,eurosat' -> ('dtd', 'eurosat'), each a known dataset key, once each (one cache and run set per key)."""
    from stages.extract.datasets import DATASETS

    items = name_list(ctx, param, value)
    if items is None:
        return None
    unknown = [name for name in items if name not in DATASETS]
    if unknown:
        raise click.BadParameter(f"unknown dataset '{unknown[0]}' (choose from {', '.join(DATASETS)}; "
                                 "several: comma-separated)")
    return tuple(dict.fromkeys(items))


def ablation_list(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Repeated or comma-separated ``--ablation`` values, one run each; ``a+b`` is one run with both (sorted)."""
    from stages.fit.methods import ABLATIONS, REMOVED_ABLATIONS

    runs = []
    for value in values:
        for run in name_list(ctx, param, value) or ():
            names = tuple(sorted({name.strip() for name in run.split("+") if name.strip()}))
            for name in names:
                if name in REMOVED_ABLATIONS:
                    raise click.BadParameter(f"'{name}' was removed: {REMOVED_ABLATIONS[name]}")
                if name not in ABLATIONS:
                    raise click.BadParameter(f"unknown ablation '{name}' (choose from {', '.join(ABLATIONS)}; "
                                             "combine with +)")
            if not names:
                raise click.BadParameter(f"'{value}' names no ablation")
            runs.append(names)
    return tuple(dict.fromkeys(runs))


def cache_options(command):
    """--dataset/--model/--pretrained/--cache-dir/--cache: which cache file to read (fit, subsets)."""
    options = [
        click.option("--dataset", default="digits", show_default=True, callback=dataset_list,
                     help="Dataset key of the cache (fit: several, comma-separated)."),
        click.option("--model", default="ViT-B-32", show_default=True, help="Model the cache was extracted with."),
        click.option("--pretrained", default="openai", show_default=True,
                     help="Weights the cache was extracted with (tag, file or none)."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_DIR_ENV,
                     default=default_cache_dir, show_default=f"work_dir/cache, env {CACHE_DIR_ENV}"),
        click.option("--cache", "cache_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="A cache file to read directly (overrides the four options above)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_cache(cache_file: Path | None, cache_dir: Path, dataset: str, model: str, pretrained: str):
    """The FeatureCache given by --cache, else the one named by the cache options (stages.shared.naming)."""
    from cache import FeatureCache
    from cache.errors import CacheError, CacheMissingError
    from stages.shared.naming import cache_file as locate, legacy_cache_file, migration_hint

    if cache_file is None:
        cache_file = locate(cache_dir, dataset, model, pretrained)
        old = legacy_cache_file(cache_dir, dataset, model, pretrained)
        if old != cache_file and old.exists() and not cache_file.exists():
            raise CacheError(migration_hint(old, cache_file))
        if not cache_file.exists():
            others = caches_beside(Path(cache_dir), dataset)
            if others:
                raise CacheMissingError(f"no cache file at {cache_file} ({others})")
    return FeatureCache(cache_file)


def caches_beside(cache_dir: Path, dataset: str, most: int = 4) -> str:
    """What the cache folder holds instead of a missing cache: the dataset's caches of other models, with the
    options that read each, else the other datasets that have caches; '' when it holds none."""
    from cache import FeatureCache
    from stages.shared.errors import UserError

    found = sorted(p for p in (cache_dir / dataset).glob("*.h5") if p.is_file()) if (cache_dir / dataset).is_dir() else []
    if not found:
        datasets = sorted(p.name for p in cache_dir.iterdir() if p.is_dir() and any(p.glob("*.h5"))) \
            if cache_dir.is_dir() else []
        return f"{cache_dir} has caches of other datasets only: {', '.join(datasets)}" if datasets else ""
    described = []
    for path in found[:most]:
        try:
            attrs = FeatureCache(path).attrs
            options = f"--model {attrs['model_arg']} --pretrained {attrs['pretrained_arg']}" + (
                f" --weights-tag {attrs['weights_tag']}" if attrs.get("weights_tag") else "")
        except (UserError, OSError, KeyError):  # unreadable or from before these attributes: its name only
            options = ""
        described.append(f"{path.name} ({options})" if options else path.name)
    more = f" and {len(found) - most} more" if len(found) > most else ""
    return (f"{cache_dir / dataset} holds caches of other models: {', '.join(described)}{more}; "
            "pass a cache's options to read it")


def torch_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """'auto', 'cpu', 'cuda', 'cuda:1', ...: a malformed device is a usage error (exit 2).

    Whether the device exists is checked when the command runs (pipeline.failures.check_device, exit 1).
    """
    if value is None or value == "auto":
        return value
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"'{value}' is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    return value
