"""``pipeline subsets``: CoOp few-shot subsets as shareable JSON files."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.options import cache_options, open_cache, positive_int_list


@click.command(short_help="Write CoOp's few-shot subsets as JSON files.")
@click.option("--split-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A CoOp split JSON to sample from (else the split lists stored in a cache).")
@cache_options
@click.option("--shots", default="1,2,4,8,16", show_default=True, callback=positive_int_list)
@click.option("--seeds", default="1,2,3", show_default=True, callback=positive_int_list)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for shots{K}_seed{S}.json files.")
def subsets(split_file, dataset, model, pretrained, cache_dir, cache_file, shots, seeds, out_dir) -> None:
    """Write CoOp's few-shot subsets (train and val positions) for each shots x seed.

    The positions index the split lists in file order, exactly as CoOp draws them, so the files match
    published subsets item for item; pass the folder to pipeline fit --subsets to reuse them.

    \b
    Examples:
      pipeline subsets --dataset dtd --model ViT-B-16 --out subsets/dtd
      pipeline subsets --split-file ~/data/dtd/split_zhou_DescribableTextures.json --shots 16 --out subsets/dtd
    """
    from stages.shared.sampling import read_split_labels, write_subsets

    from pipeline.failures import check_writable_dir

    if len(dataset) > 1:
        raise click.UsageError("subsets are drawn from one dataset's split lists; give one --dataset")
    check_writable_dir(out_dir, "--out")
    if split_file is not None:
        train, val = read_split_labels(split_file)
    else:
        cache = open_cache(cache_file, cache_dir, dataset[0], model, pretrained)
        train, val = cache.split_labels("train"), cache.split_labels("val")
    written = write_subsets(train, val, shots, seeds, out_dir)
    click.echo(f"wrote {len(written)} subset file(s) to {out_dir}")
