"""``pipeline fit``: stage two, cached features -> CMM and baselines, one run record per fit."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.options import ablation_list, cache_options, name_list, open_cache, positive_int_list, torch_device
from pipeline.output import progress_echo
from pipeline.settings import RUNS_DIR_ENV, default_runs_dir
from stages.fit.methods import ABLATIONS, DEFAULT_METHODS as DEFAULT, METHODS, uses_views
from stages.shared.record import TRAIN_VIEWS

DEFAULT_METHODS = ",".join(DEFAULT)


@click.command(short_help="Fit CMM and baselines on cached features, one record per run.")
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
@click.option("--train-views", type=click.Choice(TRAIN_VIEWS), default="plain", show_default=True,
              help="plain: the few-shot features only; aug: also their cached augmented views, the same way for "
                   "every method (extra rows; Tip-Adapter/APE: mean of the views as cache keys; CLAP: the views); "
                   "released: the views as each method's released code uses them (GDA, ProKeR: the views alone; "
                   "LP++: one view per image; linear probe: none). Each value gets its own run label; aug and "
                   "released leave out the methods that train on no image (zero_shot).")
@click.option("--ablation", "ablations", multiple=True, callback=ablation_list,
              help="CMM ablations, each its own run (cmm+NAME): repeat the option or separate by commas; join with "
                   "+ to combine them in one run (frozen_prototypes+no_triplet). " +
                   "; ".join(f"{k}: {v}" for k, v in ABLATIONS.items()) + ".")
@click.option("--subsets", "subsets_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of subset files (shots{K}_seed{S}.json, from pipeline subsets) to use instead of sampling.")
@click.option("--eval-on", "eval_on", callback=name_list,
              help="Also score on these datasets' caches (same model), e.g. imagenet_v2,imagenet_sketch,imagenet_a,imagenet_r.")
@click.option("--device", default="cpu", show_default=True, callback=torch_device,
              help="Torch device for training (cpu, cuda, cuda:1).")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Worker processes fitting (shots, seed) units side by side, one torch thread each "
                   "(default: the usable CPU cores with --device cpu, else 1; 1 = in this process).")
@click.option("--force", is_flag=True, help="Refit and overwrite existing records.")
def fit(dataset, model, pretrained, cache_dir, cache_file, runs_dir, shots, seeds, methods, template_set, train_views,
        ablations, subsets_dir, eval_on, device, jobs, force) -> None:
    """Fit CMM and baselines on cached features for every shots x seed; one JSON record per fit.

    Hyper-parameters are chosen on the few-shot val split (CoOp's min(K, 4) per class); the test split is
    read only for the final score. Existing records are skipped unless --force. Records hold test top-1,
    top-5 (with >= 5 classes) and mean per-class accuracy. --dataset takes a list (one set of records each).

    \b
    Examples:
      pipeline fit --dataset dtd,eurosat --model ViT-B-16 --pretrained openai --shots 1,2,4,8,16 --seeds 1,2,3
      pipeline fit --dataset dtd --method cmm --ablation no_triplet,frozen_prototypes   # two runs
      pipeline fit --dataset dtd --method cmm --ablation frozen_prototypes+no_triplet   # one run, both
      pipeline fit --dataset dtd --method gda,lp_pp,proker --train-views released   # needs --aug-views at extract
    """
    from pipeline.failures import check_device, check_writable_dir
    from stages.fit.parallel import usable_cores
    from stages.fit.run import fit_runs

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise click.BadParameter(f"unknown method '{unknown[0]}' (choose from {', '.join(METHODS)})",
                                 param_hint="--method")
    if ablations and "cmm" not in methods:
        raise click.UsageError("--ablation applies to CMM: add cmm to --method")
    if train_views == "aug":
        methods = _methods_using_views(methods)
    for option, value in (("--cache", cache_file), ("--subsets", subsets_dir), ("--eval-on", eval_on)):
        if value and len(dataset) > 1:
            raise click.UsageError(f"{option} belongs to one dataset; give one --dataset with it, not {len(dataset)}")
    check_device(device)
    check_writable_dir(runs_dir, "--runs-dir")
    sources = [open_cache(cache_file, cache_dir, name, model, pretrained) for name in dataset]  # all, before any fit
    eval_sources = {name: open_cache(None, cache_dir, name, model, pretrained) for name in (eval_on or ())}
    for source in sources:
        fit_runs(source, methods=methods, shots=shots, seeds=seeds, runs_dir=runs_dir, template_set=template_set,
                 train_views=train_views, ablations=[dict.fromkeys(names, True) for names in ablations],
                 subsets_dir=subsets_dir, eval_sources=eval_sources, force=force, device=device,
                 jobs=jobs or (usable_cores() if device == "cpu" else 1), progress=progress_echo(), summary=click.echo)


def _methods_using_views(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The methods that augmented views change (--train-views aug), saying which are left out and why."""
    left_out = [m for m in methods if not uses_views(m)]
    if left_out:
        progress_echo()(f"note: {', '.join(left_out)} not fitted with --train-views aug (they train on no image: "
                        "augmented views change nothing; their plain runs stand)")
    return tuple(m for m in methods if uses_views(m))
