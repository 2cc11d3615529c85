"""``pipeline predict``: classify new images with a fitted run."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import click

from pipeline.options import torch_device
from pipeline.output import progress_echo


def _regular_files(ctx: click.Context, param: click.Parameter, value: Path | tuple[Path, ...] | None):
    """Refuse a FIFO, socket or device (reading one would block or never end); folders are click's to refuse."""
    for path in value if isinstance(value, tuple) else (value,):
        if path is not None and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
            raise click.BadParameter(f"'{path}' is not a regular file (a pipe, socket or device)", ctx, param)
    return value


@click.command(short_help="Classify new images with a fitted run.")
@click.argument("images", nargs=-1, required=True, callback=_regular_files,
                type=click.Path(exists=True, path_type=Path))
@click.option("--run", "run_record", required=True, callback=_regular_files,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A run record (.json) written by pipeline fit.")
@click.option("--pretrained", help="Where the weights are now, if the checkpoint file has moved (default: as extracted).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the predictions to a .csv or .json file.")
@click.option("--device", default="cpu", show_default=True, callback=torch_device, help="Torch device (cpu, cuda).")
def predict(images, run_record, pretrained, top_k, out_file, device) -> None:
    """Classify IMAGES (files, or folders: their image files, recursively, sorted) with a fitted run.

    Images are encoded with the same model, weights and preprocessing as the run's cache; a mismatch is
    refused, naming what differs.

    \b
    Examples:
      pipeline predict photo1.jpg photo2.png --run work_dir/runs/dtd/ViT-B-16__openai/cmm/shots16_seed1.json
      pipeline predict my_photos/ --run RECORD.json --top-k 3 --out predictions.csv
    """
    from cache import CacheReader
    from stages.extract.files import encode_like_cache, image_paths
    from stages.fit.persist import FittedBounds, load_fitted
    from stages.shared.errors import RecordError
    from stages.shared.record import read_record

    if out_file is not None and out_file.suffix not in (".csv", ".json"):
        raise click.BadParameter(f"'{out_file}' must end in .csv or .json", param_hint="--out")
    from pipeline.failures import check_device, check_writable_dir

    check_device(device)
    if out_file is not None:
        check_writable_dir(out_file.parent, "--out")
    images, not_images = image_paths(images)
    if not_images:
        shown = ", ".join(str(path) for path in not_images[:3]) + (" ..." if len(not_images) > 3 else "")
        progress_echo()(f"note: {len(not_images)} file(s) without an image suffix left out: {shown}")
    record = read_record(run_record)
    cache_path = record.cache.get("path")
    if not isinstance(cache_path, str) or not cache_path or "\x00" in cache_path or not isinstance(
            record.cache.get("key"), str):
        raise RecordError(run_record, "is not a run record of pipeline fit (no cache path/key)")
    if not Path(cache_path).is_absolute() and not Path(cache_path).exists():  # a record from before absolute paths
        raise RecordError(run_record, f"names its cache by the relative path {cache_path}, which is not under the "
                          "current folder; run predict from the folder where pipeline fit ran, or refit the run")
    features = encode_like_cache(cache_path, record.cache["key"], list(images), pretrained=pretrained,
                                 device=device)
    fitted = load_fitted(run_record, FittedBounds.of_cache(CacheReader(cache_path)))  # only its own arrays, bounded
    top = fitted.top_k(features, top_k, source=run_record.with_suffix(".npz"))
    rows = [{"image": str(path), "top": best} for path, best in zip(images, top)]
    for row in rows:
        best = ", ".join(f"{name} {p:.1%}" for name, p in row["top"])
        click.echo(f"{row['image']}: {best}")
    if out_file is not None:
        _write(out_file, rows)
        click.echo(f"wrote {out_file}")


def _write(out_file: Path, rows: list[dict]) -> None:
    from stages.shared.safe_io import atomic_path, atomic_write

    if out_file.suffix == ".json":
        atomic_write(out_file, json.dumps([{"image": r["image"], "top": [{"class": c, "probability": p} for c, p in r["top"]]}
                                        for r in rows], indent=2))
        return
    with atomic_path(out_file) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "rank", "class", "probability"])
        for r in rows:
            for rank, (name, p) in enumerate(r["top"], 1):
                writer.writerow([r["image"], rank, name, f"{p:.6f}"])
