"""``pipeline predict``: classify new images with a fitted run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import numpy as np

from cache.errors import UserError
from pipeline.options import torch_device


@click.command(short_help="Classify new images with a fitted run.")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", "run_record", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A run record (.json) written by pipeline fit.")
@click.option("--pretrained", help="Where the weights are now, if the checkpoint file has moved (default: as extracted).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the predictions to a .csv or .json file.")
@click.option("--device", default="cpu", show_default=True, callback=torch_device, help="Torch device (cpu, cuda).")
def predict(images, run_record, pretrained, top_k, out_file, device) -> None:
    """Classify IMAGES with the classifier of a fitted run.

    Images are encoded with the same model, weights and preprocessing as the run's cache; a mismatch is
    refused, naming what differs.

    \b
    Examples:
      pipeline predict photo1.jpg photo2.png --run work_dir/runs/dtd/ViT-B-16__openai/cmm/shots16_seed1.json
      pipeline predict images/*.jpg --run RECORD.json --top-k 3 --out predictions.csv
    """
    from cache import FeatureCache
    from stages.extract.files import encode_files
    from stages.extract.models import load_model
    from stages.fit.persist import load_fitted

    if out_file is not None and out_file.suffix not in (".csv", ".json"):
        raise click.BadParameter(f"'{out_file}' must end in .csv or .json", param_hint="--out")
    from pipeline.failures import check_device, check_writable_dir

    check_device(device)
    if out_file is not None:
        check_writable_dir(out_file.parent, "--out")
    record = _read_record(run_record)
    cache = FeatureCache(record["cache"]["path"])
    if cache.key != record["cache"]["key"]:
        raise UserError(f"{cache.path} changed since {run_record} was fitted (key differs); refit the run")
    attrs = cache.attrs
    loaded = load_model(str(attrs.get("model_arg", attrs["model"])), pretrained or str(attrs.get("pretrained_arg", "none")),
                        weights_tag=attrs.get("weights_tag") or None)
    model_fields = {k: cache.key_fields.get(k) for k in loaded.key_fields}
    from cache.key import key_diff

    diff = key_diff(loaded.key_fields, model_fields)
    if diff:
        raise UserError(f"the model loaded now differs from the one that built {cache.path} ({'; '.join(diff)}); "
                        "point --pretrained at the original weights")
    fitted = load_fitted(run_record)
    probabilities = fitted.predict_proba(encode_files(loaded, list(images), device=device))
    rows = _top_k(images, probabilities, fitted.classes, top_k)
    for row in rows:
        best = ", ".join(f"{name} {p:.1%}" for name, p in row["top"])
        click.echo(f"{row['image']}: {best}")
    if out_file is not None:
        _write(out_file, rows)
        click.echo(f"wrote {out_file}")


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        record["cache"]["path"], record["cache"]["key"]
        return record
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a run record of pipeline fit (no cache path/key)") from None


def _top_k(images, probabilities: np.ndarray, classes: list[str], k: int) -> list[dict]:
    rows = []
    for path, p in zip(images, probabilities):
        order = np.argsort(-p)[:k]
        rows.append({"image": str(path), "top": [(classes[i], float(p[i])) for i in order]})
    return rows


def _write(out_file: Path, rows: list[dict]) -> None:
    if out_file.suffix == ".json":
        out_file.write_text(json.dumps([{"image": r["image"], "top": [{"class": c, "probability": p} for c, p in r["top"]]}
                                        for r in rows], indent=2))
        return
    with open(out_file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "rank", "class", "probability"])
        for r in rows:
            for rank, (name, p) in enumerate(r["top"], 1):
                writer.writerow([r["image"], rank, name, f"{p:.6f}"])
