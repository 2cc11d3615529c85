"""Decode + preprocess cost per image, exact (open_clip's preprocessing on a full decode) and fast (JPEG draft
mode, ``extract --fast-decode``), and how far the fast path moves the image features.

    .venv/bin/python benchmarks/decode_cost.py                         # 500x375, 1000x750, 2000x1500 JPEGs
    .venv/bin/python benchmarks/decode_cost.py --sizes 1000x750 --images 16

Per size: milliseconds per image on one thread for decode + the model's preprocess (median of 3 passes), and
for the features of ViT-B-32 (random weights, ``--pretrained none``; no pretrained weights are reachable here)
the cosine between exact and fast features (min and mean over images) and the max absolute difference. The
float-noise yardstick is the same exact pixels encoded one by one instead of in one batch.
Writes benchmarks/results/decode_cost.json.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import torch

from common import make_images, table, write_result


def per_image_ms(paths: list[Path], preprocess, draft: int | None) -> float:
    from stages.extract.images import load_rgb

    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for p in paths:
            preprocess(load_rgb(p, draft=draft))
        runs.append((time.perf_counter() - start) / len(paths) * 1000)
    return statistics.median(runs)


@click.command()
@click.option("--sizes", default="500x375,1000x750,2000x1500", show_default=True)
@click.option("--images", default=16, show_default=True, help="JPEGs per size.")
@click.option("--model", default="ViT-B-32", show_default=True)
@click.option("--work", default="/tmp/cmm-bench-decode", show_default=True, type=click.Path(path_type=Path))
def main(sizes: str, images: int, model: str, work: Path) -> None:
    from stages.extract.images import load_rgb
    from stages.extract.models import load_model

    torch.set_num_threads(1)
    loaded = load_model(model, "none")
    net, prep, draft = loaded.model.eval(), loaded.preprocess, loaded.image_size
    rows = []
    for size in sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        paths = sorted(make_images(work / f"{size}-{images}", images, n_classes=1, size=(w, h)).glob("*/*.jpg"))
        exact_ms, fast_ms = per_image_ms(paths, prep, None), per_image_ms(paths, prep, draft)
        exact = torch.stack([prep(load_rgb(p)) for p in paths])
        fast = torch.stack([prep(load_rgb(p, draft=draft)) for p in paths])
        with torch.inference_mode():
            fe, ff = net.encode_image(exact), net.encode_image(fast)
            one_by_one = torch.cat([net.encode_image(x[None]) for x in exact])
        cos = torch.nn.functional.cosine_similarity(fe, ff)
        noise = torch.nn.functional.cosine_similarity(fe, one_by_one)
        decoded = load_rgb(paths[0], draft=draft).size
        rows.append({"size": size, "decoded_as": f"{decoded[0]}x{decoded[1]}", "images": len(paths),
                     "exact_ms": round(exact_ms, 2), "fast_ms": round(fast_ms, 2),
                     "speedup": round(exact_ms / fast_ms, 2),
                     "pixel_max_abs": round(float((exact - fast).abs().max()), 4),
                     "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                     "feature_max_abs": float((fe - ff).abs().max()), "feature_scale": float(fe.abs().max()),
                     "noise_cosine_min": float(noise.min()), "noise_max_abs": float((fe - one_by_one).abs().max())})
        print(table([(k, v) for k, v in rows[-1].items()]), "\n", flush=True)
    print(f"written to {write_result('decode_cost', {'model': model, 'weights': 'none', 'rows': rows})}")


if __name__ == "__main__":
    main()
