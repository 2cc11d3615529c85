"""GPU figures: ViT-B-16 extraction images/s end to end and bare forward (fp16, batch 256), and the CMM fit
at 1000 classes x 16 shots; prints and records the card. Run it whenever a GPU is available:

    .venv/bin/python benchmarks/gpu_extract.py [--images 4096] [--batch-size 256] [--workers N]

End to end is ``extract()`` on generated 500x375 JPEGs (decode, preprocess, DataLoader with pinned memory,
fp16 forward, HDF5 writes); bare forward encodes the same images already preprocessed and resident on the
GPU. Weights are random (``--pretrained none``): speed does not depend on their values.
``--device cpu --model tests/assets/tiny-test-clip.json --images 16 --batch-size 8 --classes 20`` is a
smoke run of the script itself on a machine without a GPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from common import make_images, table, write_result
from extract_efficiency import preprocessed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(model: torch.nn.Module, pixels: torch.Tensor, batch_size: int, device: torch.device,
                 dtype: torch.dtype) -> float:
    """Images/s of ``encode_image`` on images already on the device, one sync at the end."""
    pixels = pixels.to(device, dtype)
    with torch.inference_mode():
        model.encode_image(pixels[:batch_size])  # warm-up: kernel selection, allocator
        sync(device)
        start = time.perf_counter()
        for first in range(0, len(pixels), batch_size):
            model.encode_image(pixels[first : first + batch_size])
        sync(device)
    return len(pixels) / (time.perf_counter() - start)


def cmm_fit_seconds(classes: int, device: str) -> float:
    """Seconds of one CMMClassifier.fit (with its val checkpoint and alpha search) at ``classes`` x 16 shots."""
    from stages.fit.cmm import CMMClassifier
    from stages.fit.synthetic import make_clip_like

    source = make_clip_like(n_classes=classes, dim=512, train_per_class=16, val_per_class=4, test_per_class=1)
    (x, y), (xv, yv) = source.image["train"], source.image["val"]
    classifier = CMMClassifier(prototypes=source.text["coop"], logit_scale=source.logit_scale, device=device)
    sync(torch.device(device))
    start = time.perf_counter()
    classifier.fit(x, y, xv, yv)
    sync(torch.device(device))
    return time.perf_counter() - start


@click.command()
@click.option("--images", default=4096, show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--model", default="ViT-B-16", show_default=True)
@click.option("--precision", default="fp16", show_default=True, type=click.Choice(["fp16", "amp", "bf16", "fp32"]))
@click.option("--workers", type=int, help="DataLoader workers (default: the pipeline's default).")
@click.option("--classes", default=1000, show_default=True, help="Classes of the CMM fit.")
@click.option("--device", default="cuda", show_default=True)
@click.option("--work", default="/tmp/cmm-bench-gpu", show_default=True, type=click.Path(path_type=Path))
def main(images: int, batch_size: int, model: str, precision: str, workers: int | None, classes: int, device: str,
         work: Path) -> None:
    from stages.extract.models import load_model
    from stages.extract.run import ExtractRequest, _runtime, extract

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_extract: torch sees no CUDA device; run this on a GPU machine "
                         "(or pass --device cpu for a smoke run of the script)")
    target = torch.device(device)
    folder = make_images(work / f"images-{images}", images)
    request = ExtractRequest(dataset="folder", model=model, pretrained="none", cache_dir=work / "cache",
                             data_root=folder, batch_size=batch_size, workers=workers, device=device,
                             precision=precision, force=True)
    start = time.perf_counter()
    result = extract(request, progress=lambda _: None)
    sync(target)
    command_seconds = time.perf_counter() - start

    loaded = load_model(model, "none", device=device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    bare_model = loaded.model.to(target, dtype if precision in ("fp16", "bf16") else torch.float32).eval()
    pixels = preprocessed(folder, loaded.preprocess)
    if precision == "amp":
        with torch.autocast(target.type, dtype=torch.float16):
            bare = bare_forward(bare_model, pixels, batch_size, target, torch.float32)
    else:
        bare = bare_forward(bare_model, pixels, batch_size, target, dtype)
    del bare_model, loaded
    fit_seconds = cmm_fit_seconds(classes, device)

    figures = {
        "card": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu (smoke run)",
        "model": model, "precision": precision, "images": images, "batch_size": batch_size,
        "workers": _runtime(request).workers,
        "extract_encoding_img_s": round(result.images_per_second, 1),
        "extract_command_seconds": round(command_seconds, 2),
        "bare_forward_img_s": round(bare, 1), "ratio": round(result.images_per_second / bare, 3),
        "cmm_fit_classes": classes, "cmm_fit_seconds": round(fit_seconds, 2),
    }
    print(table([(k, v) for k, v in figures.items()]))
    name = "gpu_extract" if target.type == "cuda" else "gpu_extract_cpu_smoke"
    print(f"written to {write_result(name, figures)}")


if __name__ == "__main__":
    main()
