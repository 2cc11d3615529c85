"""``pipeline fit``: stage two, cached features -> CMM and baselines, one run record per fit."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.options import name_list, positive_int_list
from pipeline.settings import CACHE_DIR_ENV, RUNS_DIR_ENV, default_cache_dir, default_runs_dir
from stages.fit.methods import ABLATIONS, DEFAULT_METHODS as DEFAULT, METHODS

DEFAULT_METHODS = ",".join(DEFAULT)


def cache_options(command):
    """--dataset/--model/--pretrained/--cache-dir/--cache: which cache file to read."""
    options = [
        click.option("--dataset", default="digits", show_default=True, help="Dataset key of the cache."),
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
    from cache import FeatureCache
    from stages.extract.run import cache_file as locate

    return FeatureCache(cache_file or locate(cache_dir, dataset, model, pretrained))


@click.command()
@cache_options
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), envvar=RUNS_DIR_ENV,
              default=default_runs_dir, show_default=f"work_dir/runs, env {RUNS_DIR_ENV}",
              help="Where run records and fitted parameters go.")
@click.option("--shots", default="1,2,4,8,16", show_default=True, callback=positive_int_list,
              help="Shots per class (comma-separated).")
@click.option("--seeds", default="1,2,3", show_default=True, callback=positive_int_list,
              help="Sampling seeds (comma-separated).")
@click.option("--method", "methods", default=DEFAULT_METHODS, show_default=True, callback=name_list,
              help=f"Methods (comma-separated): {', '.join(METHODS)}.")
@click.option("--templates", "template_set", default="coop", show_default=True,
              help="Template set to build the class prototypes from (must be in the cache).")
@click.option("--train-views", type=click.Choice(["plain", "aug"]), default="plain", show_default=True,
              help="Train on the few-shot features only, or also on their cached augmented views.")
@click.option("--ablation", "ablations", multiple=True, type=click.Choice(sorted(ABLATIONS)),
              help="CMM ablation (repeatable): " + "; ".join(f"{k}: {v}" for k, v in ABLATIONS.items()) + ".")
@click.option("--subsets", "subsets_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of subset files (shots{K}_seed{S}.json, from pipeline subsets) to use instead of sampling.")
@click.option("--eval-on", "eval_on", callback=name_list,
              help="Also score on these datasets' caches (same model), e.g. imagenet_v2,imagenet_sketch,imagenet_a,imagenet_r.")
@click.option("--device", default="cpu", show_default=True, help="Torch device for training (cpu, cuda).")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Worker processes fitting (shots, seed) units side by side, one torch thread each "
                   "(default: the usable CPU cores with --device cpu, else 1; 1 = in this process).")
@click.option("--force", is_flag=True, help="Refit and overwrite existing records.")
def fit(dataset, model, pretrained, cache_dir, cache_file, runs_dir, shots, seeds, methods, template_set, train_views,
        ablations, subsets_dir, eval_on, device, jobs, force) -> None:
    """Fit CMM and baselines on cached features for every shots x seed; one JSON record per fit.

    Hyper-parameters are chosen on the few-shot val split (CoOp's min(K, 4) per class); the test split is
    read only for the final score. Existing records are skipped unless --force.
    """
    from stages.fit.parallel import usable_cores
    from stages.fit.run import fit_runs

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise click.BadParameter(f"unknown method '{unknown[0]}' (choose from {', '.join(METHODS)})",
                                 param_hint="--method")
    if ablations and "cmm" not in methods:
        raise click.UsageError("--ablation applies to CMM: add cmm to --method")
    source = open_cache(cache_file, cache_dir, dataset, model, pretrained)
    eval_sources = {name: open_cache(None, cache_dir, name, model, pretrained) for name in (eval_on or ())}
    written = fit_runs(source, methods=methods, shots=shots, seeds=seeds, runs_dir=runs_dir,
                       template_set=template_set, train_views=train_views,
                       ablation={name: True for name in ablations}, subsets_dir=subsets_dir,
                       eval_sources=eval_sources, force=force, device=device,
                       jobs=jobs or (usable_cores() if device == "cpu" else 1), progress=click.echo)
    click.echo(f"{len(written)} run record(s) under {runs_dir}")
