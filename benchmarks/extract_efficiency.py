"""Extraction efficiency: images/s of `pipeline extract` over the bare model forward, measured in one run.

The bare forward encodes the same images already decoded and preprocessed (one tensor in memory), so the
ratio says how much of the model's speed the pipeline keeps: data loading, writes and bookkeeping hidden
behind the model give a ratio near 1. Bare passes and extractions alternate (bare, extract, bare, ...); each
extraction is compared with the mean of the bare passes around it and the median ratio is reported, which
evens out drifting load from other processes on a shared machine. The extraction's rate is its image
encoding phase (DataLoader start, decoding, forward, writes); ``ratio_whole_command`` also counts the model
build, listing and prompt encoding, fixed costs that a larger dataset amortises.

    .venv/bin/python benchmarks/extract_efficiency.py [--images 256] [--batch-size 64] [--model ViT-B-32]
    .venv/bin/python benchmarks/extract_efficiency.py --size 1000x750 --fast-decode   # reduced-scale JPEG decoding

``decode_ms_per_image`` is the decode + preprocess cost of one image on one thread, as the pipeline does it
(with ``--fast-decode``: JPEG draft mode, see benchmarks/decode_cost.py for what it does to the features).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import torch

from common import make_images, table, write_result

TARGET = 0.9


def bare_forward(model: torch.nn.Module, pixels: torch.Tensor, batch_size: int) -> float:
    """Images/s of ``encode_image`` over ``pixels`` in batches, nothing else."""
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(pixels), batch_size):
            model.encode_image(pixels[first : first + batch_size])
    return len(pixels) / (time.perf_counter() - start)


def preprocessed(folder: Path, preprocess) -> torch.Tensor:
    """Every image under ``folder`` decoded and preprocessed, in the order the folder reader lists them."""
    from PIL import Image

    paths = sorted(folder.glob("*/*.jpg"))
    return torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])


def decode_ms(folder: Path, preprocess, draft: int | None) -> float:
    """Milliseconds per image of the pipeline's decode + preprocess on one thread (median of 3 passes)."""
    from stages.extract.images import load_rgb

    paths, threads, runs = sorted(folder.glob("*/*.jpg"))[:32], torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for _ in range(3):
            start = time.perf_counter()
            for p in paths:
                preprocess(load_rgb(p, draft=draft))
            runs.append((time.perf_counter() - start) / len(paths) * 1000)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(runs)


@click.command()
@click.option("--images", default=256, show_default=True, help="Generated JPEGs (500x375) to encode.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--model", default="ViT-B-32", show_default=True, help="open_clip model (random weights).")
@click.option("--workers", type=int, help="DataLoader workers (default: the pipeline's default).")
@click.option("--rounds", default=2, show_default=True, help="Extractions, each between two bare passes.")
@click.option("--threads", type=int, help="torch.set_num_threads for both measurements (default: torch's).")
@click.option("--size", default="500x375", show_default=True, help="Size of the generated JPEGs (WxH).")
@click.option("--fast-decode", is_flag=True, help="Extract with --fast-decode (reduced-scale JPEG decoding).")
@click.option("--work", default="/tmp/cmm-bench-efficiency", show_default=True, type=click.Path(path_type=Path))
def main(images: int, batch_size: int, model: str, workers: int | None, rounds: int, threads: int | None,
         size: str, fast_decode: bool, work: Path) -> None:
    from stages.extract.models import load_model
    from stages.extract.run import ExtractRequest, _runtime, extract

    if threads:
        torch.set_num_threads(threads)
    width, height = (int(v) for v in size.split("x"))
    folder = make_images(work / f"images-{images}-{size}", images, size=(width, height))
    loaded = load_model(model, "none")
    pixels = preprocessed(folder, loaded.preprocess)
    bare_model = loaded.model.eval()
    with torch.inference_mode():
        bare_model.encode_image(pixels[:2])  # warm-up (allocations, kernel choice)
    request = ExtractRequest(dataset="folder", model=model, pretrained="none", cache_dir=work / "cache",
                             data_root=folder, batch_size=batch_size, workers=workers, device="cpu", force=True,
                             fast_decode=fast_decode)
    bare = [bare_forward(bare_model, pixels, batch_size)]
    encoding, command = [], []
    for _ in range(rounds):  # bare, extract, bare, extract, bare: each extract against its neighbours
        start = time.perf_counter()
        result = extract(request, progress=lambda _: None)
        command.append(result.encoded_images / (time.perf_counter() - start))
        encoding.append(result.images_per_second)
        bare.append(bare_forward(bare_model, pixels, batch_size))
    reference = [(a + b) / 2 for a, b in zip(bare, bare[1:])]
    ratios = [e / r for e, r in zip(encoding, reference)]
    ratio = statistics.median(ratios)
    figures = {
        "images": images, "size": size, "fast_decode": fast_decode,
        "decode_ms_per_image": round(decode_ms(folder, loaded.preprocess, loaded.image_size if fast_decode else None), 2),
        "batch_size": batch_size, "model": model, "workers": _runtime(request).workers,
        "threads": torch.get_num_threads(), "rounds": rounds,
        "bare_forward_img_s": [round(b, 3) for b in bare],
        "extract_encoding_img_s": [round(e, 3) for e in encoding],
        "extract_command_img_s": [round(c, 3) for c in command],
        "ratio_per_round": [round(r, 3) for r in ratios], "ratio": round(ratio, 3),
        "ratio_whole_command": round(statistics.median(c / r for c, r in zip(command, reference)), 3),
        "target": TARGET, "target_met": ratio >= TARGET,
    }
    print(table([(k, v) for k, v in figures.items()]))
    name = "extract_efficiency" + (f"_{size}" if size != "500x375" else "") + ("_fast" if fast_decode else "")
    name += (f"_threads{threads}" if threads else "") + ("" if workers is None else f"_workers{workers}")
    print(f"written to {write_result(name, figures)}")


if __name__ == "__main__":
    main()
