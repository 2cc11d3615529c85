"""Decode + preprocess cost per image on the CPU: exact (open_clip's preprocessing on a full decode), fast (JPEG
draft mode, ``extract --fast-decode``) and the tensor path of ``--decode tensor`` on the CPU (torchvision's
libjpeg-turbo decode and Pillow's resampling as tensor operations); how far fast moves the image features, and
whether the tensor path's pixels equal the exact ones.

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

    return _median_ms(paths, lambda p: preprocess(load_rgb(p, draft=draft)))


def tensor_pixels(paths: list[Path], preprocess) -> torch.Tensor:
    """The tensor path's model input on the CPU: decode_jpeg, then the model's transform as tensor operations."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from stages.extract.tensor_transform import eval_transform

    form = eval_transform(preprocess)
    return form([decode_jpeg(torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB)
                 for p in paths])


def _median_ms(paths: list[Path], work) -> float:
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for p in paths:
            work(p)
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
        tensor_ms = _median_ms(paths, lambda p: tensor_pixels([p], prep))
        exact = torch.stack([prep(load_rgb(p)) for p in paths])
        tensor = tensor_pixels(paths, prep)
        fast = torch.stack([prep(load_rgb(p, draft=draft)) for p in paths])
        with torch.inference_mode():
            fe, ff = net.encode_image(exact), net.encode_image(fast)
            one_by_one = torch.cat([net.encode_image(x[None]) for x in exact])
        cos = torch.nn.functional.cosine_similarity(fe, ff)
        noise = torch.nn.functional.cosine_similarity(fe, one_by_one)
        decoded = load_rgb(paths[0], draft=draft).size
        rows.append({"size": size, "decoded_as": f"{decoded[0]}x{decoded[1]}", "images": len(paths),
                     "exact_ms": round(exact_ms, 2), "fast_ms": round(fast_ms, 2),
                     "speedup": round(exact_ms / fast_ms, 2), "tensor_cpu_ms": round(tensor_ms, 2),
                     "tensor_pixel_max_abs": round(float((exact - tensor).abs().max()), 6),
                     "pixel_max_abs": round(float((exact - fast).abs().max()), 4),
                     "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                     "feature_max_abs": float((fe - ff).abs().max()), "feature_scale": float(fe.abs().max()),
                     "noise_cosine_min": float(noise.min()), "noise_max_abs": float((fe - one_by_one).abs().max())})
        print(table([(k, v) for k, v in rows[-1].items()]), "\n", flush=True)
    print(f"written to {write_result('decode_cost', {'model': model, 'weights': 'none', 'rows': rows})}")


if __name__ == "__main__":
    main()
