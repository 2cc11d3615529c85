"""Stage one on a GPU: ``pipeline extract`` images/s beside the bare forward and the decode ceilings, per
model and decoder, the feature difference between the decoders on photographs, and every default method's fit.

    .venv/bin/python benchmarks/gpu_extract.py [--models ViT-B-16,ViT-L-14] [--images 16384] [--out NAME]

For each model (fp16, batch 256, random weights: speed does not depend on their values):
- bare forward: ``encode_image`` on preprocessed images already on the GPU;
- ``extract()`` end to end on generated 500x375 JPEGs (the size of a typical benchmark photo) with
  ``--decode pil`` and ``--decode tensor`` at the default worker count (and, for the first model, pil with the
  previous default of 8 workers); images/s from the start (workers' start-up included) and steady
  (after the first block); the first model also on photo-like JPEGs of mixed sizes;
- the ceilings without a model: a plain DataLoader with open_clip's val transform (the CPU's decode
  ceiling) and the tensor path's decode + resize on the GPU.
The feature check encodes crops of real photographs (scikit-learn's sample photos, and scikit-image's when
installed) with ViT-B-16 in fp32 and amp, pil and tensor, and reports per split the cosine and largest
absolute difference of the features, and how many zero-shot predictions change: the decoder's change
beside amp's (the default precision's float noise).

Last, each of ``pipeline fit``'s default methods is fitted once at ``--classes`` (1000) x 16 shots of the
ImageNet-like regime with ImageNet's released grids: seconds, peak device memory, test top-1.

``--device cpu --models tests/assets/tiny-test-clip.json --images 48 --photos 24 --classes 20`` is a smoke
run of the script itself on a machine without a GPU.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import time
from pathlib import Path

import click
import numpy as np
import torch

from common import ROOT, table, write_result


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write_jpeg(task: tuple[Path, int, tuple[int, int], int]) -> None:
    from PIL import Image

    path, seed, size, quality = task
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0: size[1], 0: size[0]].astype(np.float32)
    a, b, c = rng.uniform(0.005, 0.05, 3)
    base = np.stack([np.sin(a * xx + seed), np.cos(b * yy), np.sin(c * (xx + yy))], axis=-1) * 100 + 128
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=quality)


def generated(folder: Path, count: int, mixed: bool = False) -> Path:
    """``folder/<class>/<i>.jpg``: ``count`` photo-like JPEGs, 500x375 or of mixed sizes; made in parallel, reused.

    Up to 10 classes of at least 3 images, so that the folder reader gives every class a train, val and test
    image whatever the count (fewer than 6 images cannot make such a dataset)."""
    if count < 6:
        raise SystemExit(f"gpu_extract: --images must be at least 6 (2 classes x 3 images), got {count}")
    classes = max(2, min(10, count // 3))
    marker = folder / f".made-{count}-{'mixed' if mixed else '500x375'}"
    if marker.exists():
        return folder
    rng = np.random.default_rng(1)
    common = [(500, 375), (375, 500), (500, 333), (333, 500), (640, 480), (500, 500)]
    tasks = []
    for i in range(count):
        if not mixed:
            size = (500, 375)
        elif rng.random() < 0.7:
            size = common[int(rng.integers(len(common)))]
        else:
            size = (int(rng.integers(250, 900)), int(rng.integers(250, 900)))
        tasks.append((folder / f"class_{i % classes:02d}" / f"{i:06d}.jpg", i, size, 90))
    with multiprocessing.get_context("fork").Pool() as pool:
        pool.map(_write_jpeg, tasks, chunksize=64)
    marker.touch()
    return folder


def photo_split(root: Path, count: int) -> Path:
    """A folder dataset of crops of real photographs, one class per photograph, as JPEGs of many sizes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    pictures = list(load_sample_images().images)
    try:
        import skimage.data as sk
    except ImportError:  # scikit-image is optional here
        sk = None
    for name in ("astronaut", "coffee", "chelsea", "rocket") if sk is not None else ():
        try:  # bundled photographs; any that would need a download is skipped
            picture = getattr(sk, name)()
        except Exception:
            continue
        if picture.ndim == 3 and picture.shape[2] == 3:
            pictures.append(picture)
    rng = np.random.default_rng(0)
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    for i in range(count):
        label = i % len(pictures)
        pixels = pictures[label]
        height, width = pixels.shape[:2]
        scale = rng.uniform(0.35, 0.9)
        h, w = int(height * scale), int(width * scale)
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        crop = Image.fromarray(pixels[top:top + h, left:left + w])
        side = int(rng.integers(240, 640))
        crop = crop.resize((side, int(side * h / w)), Image.BICUBIC)
        part = ("train", "val", "test")[i % 3]
        rel = f"{part}/{label}/{i:05d}.jpg"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        crop.save(root / "images" / rel, quality=int(rng.integers(75, 96)))
        split[part].append([rel, label, f"photo {label}"])
    (root / "split.json").write_text(json.dumps(split))
    return root / "split.json"


def bare_forward(model: torch.nn.Module, pixels: torch.Tensor, images: int, batch_size: int,
                 device: torch.device, dtype: torch.dtype) -> float:
    """Images/s of ``encode_image`` on preprocessed images resident on the device (batches cycled to ``images``)."""
    pixels = pixels.to(device, dtype)
    batches = max(1, images // batch_size)
    with torch.inference_mode():
        model.encode_image(pixels[:batch_size])  # warm-up: kernel selection, allocator
        sync(device)
        start = time.perf_counter()
        for b in range(batches):
            first = (b * batch_size) % max(1, len(pixels) - batch_size + 1)
            model.encode_image(pixels[first: first + batch_size])
        sync(device)
    return batches * batch_size / (time.perf_counter() - start)


def cpu_ceiling(folder: Path, preprocess, workers: int, batch_size: int) -> float:
    """Images/s of a plain DataLoader with the model's own transform, no model: the CPU's decode ceiling."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    paths = sorted(folder.glob("*/*.jpg"))

    class Files(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            return preprocess(Image.open(paths[i]).convert("RGB"))

    loader = DataLoader(Files(), batch_size=batch_size, num_workers=workers, prefetch_factor=4 if workers else None)
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch)
    return count / (time.perf_counter() - start)


def gpu_ceiling(folder: Path, preprocess, image_size: int, workers: int, batch_size: int,
                device: torch.device) -> float:
    """Images/s of the tensor path without a model: workers read bytes, the device decodes and resizes."""
    from torch.utils.data import DataLoader

    from stages.extract.datasets import open_dataset
    from stages.extract.device_decode import as_list
    from stages.extract.encode import ImageSet
    from stages.extract.tensor_transform import eval_transform

    reader = open_dataset("folder", folder)
    items = [item for split in reader.splits for item in reader.items(split)]
    images = ImageSet(reader, [i.relpath for i in items], np.arange(len(items)), preprocess, image_size,
                      tensor_transform=eval_transform(preprocess))
    loader = DataLoader(images, batch_size=batch_size, num_workers=workers, collate_fn=as_list,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    start, count = time.perf_counter(), 0
    for index, batch in enumerate(loader):
        first = index * batch_size
        pixels, _ = images.device_pixels(batch, range(first, first + len(batch)), device)
        count += len(pixels)
    sync(device)
    return count / (time.perf_counter() - start)


def extract_rate(folder: Path, model: str, decode: str, work: Path, *, device: str, precision: str,
                 batch_size: int, workers: int | None, split_file: Path | None = None) -> dict[str, float]:
    from stages.extract.run import ExtractRequest, _runtime, extract

    request = ExtractRequest(dataset="folder", model=model, pretrained="none", cache_dir=work / f"cache-{decode}",
                             data_root=folder, batch_size=batch_size, workers=workers, device=device,
                             precision=precision, decode=decode, force=True,
                             dataset_options={"split_file": split_file} if split_file else {})
    start = time.perf_counter()
    result = extract(request, progress=lambda _: None)
    return {"img_s": round(result.images_per_second, 1), "steady_img_s": round(result.steady_images_per_second, 1),
            "seconds": round(time.perf_counter() - start, 2), "workers": _runtime(request).workers,
            "cache": str(result.path)}


def feature_check(model: str, count: int, work: Path, device: str) -> dict[str, object]:
    """Decoders and precisions on crops of real photographs: feature differences and changed predictions."""
    from cache import FeatureCache

    split_file = photo_split(work / "photos", count)
    caches = {}
    for decode in ("pil", "tensor"):
        for precision in ("fp32", "amp"):
            run = extract_rate(split_file.parent / "images", model, decode, work / f"check-{precision}",
                               device=device, precision=precision, batch_size=64, workers=None, split_file=split_file)
            caches[(decode, precision)] = FeatureCache(run["cache"])
    reference = caches[("pil", "fp32")]
    text = reference.text_features("coop").mean(1)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    out: dict[str, object] = {"images": count, "classes": len(reference.classes)}
    for name, other in (("tensor_vs_pil_fp32", ("tensor", "fp32")), ("amp_vs_fp32_pil", ("pil", "amp")),
                        ("auto_default_vs_fp32_pil", ("tensor", "amp"))):
        per_split = {}
        for split in ("train", "val", "test"):
            a, b = caches[other].features(split), reference.features(split)
            an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
            cos = (an * bn).sum(1)
            changed = int(((an @ text.T).argmax(1) != (bn @ text.T).argmax(1)).sum())
            per_split[split] = {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
                                "max_abs": float(np.abs(a - b).max()), "zero_shot_changed": changed,
                                "n": len(a)}
        out[name] = per_split
    return out


def fit_costs(classes: int, methods: list[str], device: str, on_result) -> dict[str, dict[str, float]]:
    """Seconds and peak device memory of each method's fit (its released ImageNet grid) at ``classes`` x 16
    shots of the ImageNet-like regime, val 4 per class; test top-1 on 10 images per class."""
    from stages.fit.methods import make_estimator
    from stages.fit.regimes import make_regime

    source = make_regime("imagenet_like", n_classes=classes, train_per_class=16, val_per_class=4, test_per_class=10)
    (x, y), (xv, yv), (xt, yt) = source.image["train"], source.image["val"], source.image["test"]
    target = torch.device(device)
    out: dict[str, dict[str, float]] = {}
    for method in methods:
        estimator = make_estimator(method, source.text["coop"], source.logit_scale, random_state=1, device=device,
                                   dataset="imagenet")
        if target.type == "cuda":
            torch.cuda.reset_peak_memory_stats(target)
        sync(target)
        start = time.perf_counter()
        estimator.fit(x, y, xv, yv)
        sync(target)
        seconds = time.perf_counter() - start
        peak = round(torch.cuda.max_memory_allocated(target) / 2**30, 2) if target.type == "cuda" else None
        out[method] = {"seconds": round(seconds, 2), "peak_gib": peak,
                       "test_top1": round(100 * float(np.mean(estimator.predict(xt) == yt)), 2)}
        on_result(method, out[method])
    return out


@click.command()
@click.option("--models", default="ViT-B-16,ViT-L-14", show_default=True)
@click.option("--images", default=16384, show_default=True, help="Images for the first model (half for the others).")
@click.option("--photos", default=600, show_default=True, help="Photograph crops for the feature check (0: skip).")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--precision", default="fp16", show_default=True, type=click.Choice(["fp16", "amp", "bf16", "fp32"]))
@click.option("--classes", default=1000, show_default=True, help="Classes of the fits (x 16 shots).")
@click.option("--fit-methods", default=None, help="Methods whose fit is timed (default: pipeline fit's defaults).")
@click.option("--device", default="cuda", show_default=True)
@click.option("--work", default="/tmp/cmm-bench-gpu", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", "out_name", default=None, help="Result file name (default gpu_extract or gpu_extract_cpu_smoke).")
def main(models: str, images: int, photos: int, batch_size: int, precision: str, classes: int,
         fit_methods: str | None, device: str, work: Path, out_name: str | None) -> None:
    from stages.extract.models import load_model
    from stages.extract.run import default_workers

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_extract: torch sees no CUDA device; run this on a GPU machine "
                         "(or pass --device cpu for a smoke run of the script)")
    target = torch.device(device)
    workers = default_workers(device)
    name = out_name or ("gpu_extract" if target.type == "cuda" else "gpu_extract_cpu_smoke")
    figures: dict[str, object] = {"card": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu (smoke run)",
                                  "driver_cuda": torch.version.cuda, "precision": precision, "batch_size": batch_size,
                                  "default_workers": workers, "models": {}}
    for index, model in enumerate(m.strip() for m in models.split(",")):
        count = images if index == 0 else max(batch_size, images // 2)
        folder = generated(work / f"images-{count}", count)
        loaded = load_model(model, "none", device=device)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        net = loaded.model.to(target, dtype).eval()
        sample = sorted(folder.glob("*/*.jpg"))[:max(batch_size * 4, 64)]
        from PIL import Image

        pixels = torch.stack([loaded.preprocess(Image.open(p).convert("RGB")) for p in sample])
        row: dict[str, object] = {"images": count,
                                  "bare_forward_img_s": round(bare_forward(net, pixels, count, batch_size, target, dtype), 1)}
        del net
        for decode in ("pil", "tensor"):
            row[f"extract_{decode}"] = extract_rate(folder, model, decode, work, device=device, precision=precision,
                                                    batch_size=batch_size, workers=None)
            row[f"ratio_{decode}"] = round(row[f"extract_{decode}"]["img_s"] / row["bare_forward_img_s"], 3)
            row[f"steady_ratio_{decode}"] = round(row[f"extract_{decode}"]["steady_img_s"] / row["bare_forward_img_s"], 3)
        if index == 0:
            row["extract_pil_8_workers"] = extract_rate(folder, model, "pil", work, device=device, precision=precision,
                                                        batch_size=batch_size, workers=min(8, workers))
            mixed = generated(work / f"mixed-{count // 2}", count // 2, mixed=True)
            row["extract_tensor_mixed_sizes"] = extract_rate(mixed, model, "tensor", work, device=device,
                                                             precision=precision, batch_size=batch_size, workers=None)
            row["cpu_ceiling_img_s"] = round(cpu_ceiling(folder, loaded.preprocess, workers, batch_size), 1)
            row["gpu_ceiling_img_s"] = round(gpu_ceiling(folder, loaded.preprocess, loaded.image_size, workers,
                                                         batch_size, target), 1)
        figures["models"][model] = row
        print(json.dumps({model: row}, indent=1), flush=True)
        write_result(name, figures)  # kept if a later step runs out of time
    if photos:
        first = models.split(",")[0].strip()
        figures["feature_check"] = {"model": first, **feature_check(first, photos, work, device)}
        print(json.dumps(figures["feature_check"], indent=1), flush=True)
    write_result(name, figures)
    from stages.fit.methods import DEFAULT_METHODS

    figures["fit_classes"] = classes
    figures["fits"] = {}

    def record(method: str, cost: dict) -> None:
        figures["fits"][method] = cost
        print(json.dumps({f"fit {method}": cost}), flush=True)
        write_result(name, figures)

    fit_costs(classes, fit_methods.split(",") if fit_methods else list(DEFAULT_METHODS), device, record)
    print(table([("card", figures["card"])] + [(f"fit {m}", c["seconds"]) for m, c in figures["fits"].items()]))
    print(f"written to {write_result(name, figures)}")


if __name__ == "__main__":
    main()
