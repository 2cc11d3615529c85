"""``--decode tensor`` against ``--decode pil``: Pillow's resampling as tensor operations, which files the
device decoder may take, and whole extractions of real-looking JPEGs (photos, EXIF-rotated, CMYK, greyscale,
progressive, PNG with alpha, truncated) that must make the same decisions and the same features.

On the CPU the tensor path decodes JPEGs with torchvision's libjpeg-turbo (the same IDCT and upsampling as
Pillow's) and resizes with Pillow's own integer weights: its features equal pil's up to Pillow 13's choice of
pass order (a few levels in a few pixels; bit-identical here and with Pillow <= 12). On CUDA nvjpeg decodes
instead (tests/gpu/ checks that path against a stated tolerance).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from cache import FeatureCache
from stages.extract.jpeg_header import device_decodable, read_header
from stages.extract.pil_resample import resize, weights
from stages.extract.tensor_transform import UnsupportedTransform, augment_transform, eval_transform
from stages.extract.views import augment_transform as pil_augment, seeded
from tests.reliability.helpers import CACHE_NAME, error_line, extract_args, run_cli

FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS, "box": Image.BOX,
           "hamming": Image.HAMMING}


def photo(index: int, size: tuple[int, int] = (500, 375)) -> Image.Image:
    """A crop of one of scikit-learn's two sample photographs (real JPEG content), resized to ``size``."""
    pictures = load_sample_images().images
    rng = np.random.default_rng(index)
    pixels = pictures[index % 2]
    height, width = pixels.shape[:2]
    scale = rng.uniform(0.5, 0.95)
    h, w = int(height * scale), int(width * scale)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return Image.fromarray(pixels[top:top + h, left:left + w]).resize(size, Image.BICUBIC)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif


# --- Pillow's resampling as tensor operations -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FILTERS))
def test_one_pass_resampling_gives_pillows_bytes(name):
    rng = np.random.default_rng(3)
    for _ in range(12):
        height, width, new = (int(v) for v in rng.integers(2, 300, 3))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for size in ((height, new), (new, width)):  # one axis changes: a single pass
            expected = np.asarray(Image.fromarray(pixels).resize(size[::-1], FILTERS[name]))
            found = resize(torch.from_numpy(pixels).permute(2, 0, 1), size, name).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(found, expected, err_msg=f"{name} {pixels.shape} -> {size}")


def test_two_pass_resampling_is_pillows_up_to_the_pass_order():
    """Both axes change: horizontal first (Pillow <= 12, and Pillow 13 for many sizes) is exact; where the
    installed Pillow runs the vertical pass first, Pillow's bytes are exactly that order's (checked on noise,
    where the orders always differ). On photographs resized keeping their aspect (what CLIP's transform
    does), the orders differ by at most 3 levels in a few pixels (measured: 0.015 levels on average)."""
    rng = np.random.default_rng(4)
    exact = 0
    for trial in range(40):
        height, width, new_h, new_w = (int(v) for v in rng.integers(8, 260, 4))
        noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        short = min(new_h, new_w)
        kept_aspect = (short, int(short * width / height)) if height <= width else (int(short * height / width), short)
        for pixels in (noise, np.asarray(photo(trial, (width, height))).copy()):
            if pixels is not noise:
                new_h, new_w = kept_aspect
            expected = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.BICUBIC)).astype(int)
            found = resize(torch.from_numpy(pixels).permute(2, 0, 1), (new_h, new_w)).permute(1, 2, 0).numpy()
            if pixels is noise and np.array_equal(found, expected):
                exact += 1
            elif pixels is noise:
                np.testing.assert_array_equal(_vertical_first(pixels, new_h, new_w), expected)
            else:
                difference = np.abs(found.astype(int) - expected)
                assert difference.max() <= 3 and difference.mean() < 0.25, (pixels.shape, new_h, new_w)
    assert exact >= 10  # horizontal-first covers a good share of sizes even under Pillow 13


def _vertical_first(pixels: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    x = torch.from_numpy(weights(height, new_h, "bicubic")) @ torch.from_numpy(pixels).permute(2, 0, 1).double()
    x = x.add(2**21).div(2**22).floor().clamp(0, 255)
    x = (x @ torch.from_numpy(weights(width, new_w, "bicubic")).T).add(2**21).div(2**22).floor().clamp(0, 255)
    return x.permute(1, 2, 0).numpy()


def test_crop_rows_and_columns_are_the_same_bytes_as_resize_then_crop():
    pixels = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (3, 375, 500), dtype=np.uint8))
    whole = resize(pixels, (224, 298))
    np.testing.assert_array_equal(resize(pixels, (224, 298), rows=slice(0, 224), cols=slice(37, 261)),
                                  whole[:, :, 37:261])


# --- which files the device decoder may take -------------------------------------------------------------

def test_header_decisions_follow_the_image_policy():
    rgb = photo(0, (64, 48))
    decodable = {
        "baseline": jpeg_bytes(rgb, quality=90),
        "greyscale": jpeg_bytes(rgb.convert("L")),
        "4:4:4": jpeg_bytes(rgb, subsampling=0),
    }
    left_to_pillow = {
        "progressive": jpeg_bytes(rgb, progressive=True),
        "cmyk": jpeg_bytes(rgb.convert("CMYK")),
        "exif-rotated": jpeg_bytes(rgb, exif=rotated_exif()),
        "truncated": jpeg_bytes(rgb)[:-200],
        "png": _png(rgb),
        "empty": b"",
        "not an image": b"hello",
    }
    header = read_header(decodable["baseline"])
    assert (header.width, header.height, header.components, header.orientation) == (64, 48, 3, 1)
    for name, data in decodable.items():
        assert device_decodable(read_header(data)), name
    for name, data in left_to_pillow.items():
        assert not device_decodable(read_header(data)), name
    assert read_header(left_to_pillow["exif-rotated"]).orientation == 6


def test_a_header_past_the_pixel_limits_is_left_to_pillow():
    huge = bytearray(jpeg_bytes(photo(1, (64, 48))))
    at = huge.index(b"\xff\xc0")
    huge[at + 5:at + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")  # height, width in the SOF
    assert not device_decodable(read_header(bytes(huge)))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# --- the model's transforms as tensor operations ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["shortest", "squash", "longest"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_eval_transform_follows_the_models_preprocess_config(mode, interpolation):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = PreprocessCfg(size=(40, 40), resize_mode=mode, interpolation=interpolation, mean=(0.4, 0.5, 0.6),
                        std=(0.2, 0.3, 0.25))
    preprocess = image_transform_v2(cfg, is_train=False)
    tensor_form = eval_transform(preprocess)
    for index, size in enumerate([(90, 60), (60, 90), (77, 77)]):
        image = photo(index, size)
        expected = preprocess(image)
        found = tensor_form([torch.from_numpy(np.asarray(image)).permute(2, 0, 1).contiguous()])[0]
        assert found.shape == expected.shape
        # the pass order's few levels at most (above), in normalised units
        assert (found - expected).abs().max() <= 3 / 255 / min(cfg.std) + 1e-6, (mode, interpolation, size)


def test_augmented_views_draw_the_same_crops_and_flips():
    preprocess = open_clip.image_transform(32, is_train=False)
    pil_views = pil_augment(32, preprocess.transforms[-1].mean, preprocess.transforms[-1].std)
    tensor_views = augment_transform(pil_views)
    for seed in range(8):
        image = photo(seed, (120, 90))
        expected = seeded(pil_views, seed)(image)
        found = tensor_views([torch.from_numpy(np.asarray(image)).permute(2, 0, 1).contiguous()], [seed])[0]
        assert (found - expected).abs().max() <= 3 / 255 / 0.26 + 1e-6


def test_a_transform_without_an_exact_tensor_form_is_refused():
    import torchvision.transforms as T

    with pytest.raises(UnsupportedTransform, match="nearest"):
        eval_transform(T.Compose([T.Resize(32, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(32),
                                  T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))
    with pytest.raises(UnsupportedTransform, match="Grayscale"):
        eval_transform(T.Compose([T.Resize(32), T.Grayscale(3), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))


# --- whole extractions: the same decisions, the same features, the decoder in the key -------------------------

@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory) -> Path:
    return write_odd_dataset(tmp_path_factory.mktemp("odd"))


def write_odd_dataset(root: Path) -> Path:
    """A two-class split of real-looking files: photos as baseline, progressive, 4:4:4, greyscale, CMYK and
    EXIF-rotated JPEGs, a PNG with alpha, and one truncated JPEG in test (a bad file); returns the split file."""
    images = root / "images"
    images.mkdir()
    variants = {
        "baseline.jpg": lambda im: jpeg_bytes(im, quality=85),
        "progressive.jpg": lambda im: jpeg_bytes(im, progressive=True),
        "full_chroma.jpg": lambda im: jpeg_bytes(im, subsampling=0, quality=92),
        "grey.jpg": lambda im: jpeg_bytes(im.convert("L")),
        "cmyk.jpg": lambda im: jpeg_bytes(im.convert("CMYK")),
        "rotated.jpg": lambda im: jpeg_bytes(im, exif=rotated_exif()),
        "alpha.png": lambda im: _png(im.convert("RGBA")),
    }
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    index = 0
    for part, per_class in (("train", 1), ("val", 1), ("test", 1)):
        for label in (0, 1):
            for _ in range(per_class):
                for name, encode in variants.items():
                    rel = f"{part}/{label}_{index}_{name}"
                    (images / rel).parent.mkdir(parents=True, exist_ok=True)
                    size = (160, 120) if index % 2 else (120, 160)
                    (images / rel).write_bytes(encode(photo(index, size)))
                    split[part].append([rel, label, ["china", "flower"][label]])
                    index += 1
    truncated = "test/truncated.jpg"
    (images / truncated).write_bytes(jpeg_bytes(photo(99, (160, 120)))[:-300])
    split["test"].append([truncated, 0, "china"])
    (root / "split.json").write_text(json.dumps(split))
    return root / "split.json"


def extract_with(decode: str, split_file: Path, cache_dir: Path, *extra: str):
    return run_cli(*extract_args(split_file, cache_dir, "--decode", decode, "--device", "cpu", "--skip-bad",
                                 *extra, batch_size=5))


def test_tensor_and_pil_decoders_make_the_same_decisions_and_features(odd_dataset, tmp_path):
    for decode in ("pil", "tensor"):
        result = extract_with(decode, odd_dataset, tmp_path / decode, "--aug-views", "2")
        assert result.exit_code == 0, result.output
    pil, tensor = FeatureCache(tmp_path / "pil" / CACHE_NAME), FeatureCache(tmp_path / "tensor" / CACHE_NAME)
    for split in ("train", "val", "test"):
        assert tensor.skipped_paths(split) == pil.skipped_paths(split)
        assert_same_features(tensor.features(split), pil.features(split))
    assert pil.skipped_paths("test") == ["test/truncated.jpg"]
    assert_same_features(tensor.aug_features(np.arange(14)), pil.aug_features(np.arange(14)))
    assert tensor.key_fields["decode"] == "tensor-cpu" and "decode" not in pil.key_fields
    with h5py.File(tmp_path / "tensor" / CACHE_NAME, "r") as f:
        assert str(f.attrs["decoder"]).startswith("tensor:")

    info = run_cli("info", str(tmp_path / "tensor" / CACHE_NAME))
    assert "decoder: tensor:" in info.output and "decode = tensor-cpu" in info.output
    assert "decoder: pil" in run_cli("info", str(tmp_path / "pil" / CACHE_NAME)).output


def assert_same_features(found: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to the pass order's few levels in a few pixels (measured here: bit-identical)."""
    scale = np.abs(expected).max()
    assert np.abs(found - expected).max() <= 1e-3 * scale


def test_the_decoders_never_mix_in_one_cache(odd_dataset, tmp_path):
    assert extract_with("pil", odd_dataset, tmp_path / "cache").exit_code == 0
    mixed = extract_with("tensor", odd_dataset, tmp_path / "cache")
    assert mixed.exit_code == 1
    line = error_line(mixed.output)
    assert "decode" in line and "tensor-cpu" in line


def test_a_bad_file_is_the_same_one_line_error_with_either_decoder(odd_dataset, tmp_path):
    lines = []
    for decode in ("pil", "tensor"):
        result = run_cli(*extract_args(odd_dataset, tmp_path / decode, "--decode", decode, "--device", "cpu",
                                       batch_size=5))
        assert result.exit_code == 1
        lines.append(error_line(result.output))
    assert lines[0] == lines[1] and "truncated.jpg" in lines[0]


def test_fast_decode_is_a_pillow_option(odd_dataset, tmp_path):
    result = run_cli(*extract_args(odd_dataset, tmp_path / "cache", "--decode", "tensor", "--fast-decode"))
    assert result.exit_code != 0 and "--fast-decode" in error_line(result.output)


# --- bounded device memory and the decode-ahead thread ------------------------------------------------------

def test_pixel_chunks_bound_what_is_decoded_at_once():
    from stages.extract.device_decode import pixel_chunks

    samples = [("jpeg", None, "", area) for area in (40, 40, 30, 100, 0, 10)]
    assert pixel_chunks(samples, budget=80) == [[0, 1], [2], [3], [4, 5]]
    assert pixel_chunks(samples, budget=10**6) == [[0, 1, 2, 3, 4, 5]]
    assert pixel_chunks([], budget=80) == []


def test_a_batch_decoded_in_parts_gives_the_same_features(odd_dataset, tmp_path, monkeypatch):
    from stages.extract import device_decode, tensor_transform

    assert extract_with("tensor", odd_dataset, tmp_path / "whole").exit_code == 0
    monkeypatch.setattr(device_decode, "MAX_DECODE_PIXELS", 160 * 120 * 2)  # two photos per part
    monkeypatch.setattr(tensor_transform, "MAX_RESAMPLE_PIXELS", 160 * 120)  # one image per resize
    assert extract_with("tensor", odd_dataset, tmp_path / "parts").exit_code == 0
    whole, parts = FeatureCache(tmp_path / "whole" / CACHE_NAME), FeatureCache(tmp_path / "parts" / CACHE_NAME)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(parts.features(split), whole.features(split))


def test_the_decode_ahead_thread_keeps_order_raises_and_stops():
    import threading

    from stages.extract.encode import _one_batch_ahead

    def batches(fail_at: int | None = None):
        for i in range(6):
            if i == fail_at:
                raise ValueError(f"batch {i} is broken")
            yield ("job", i, torch.zeros(1), [])

    device = torch.device("cpu")
    assert [item[1] for item in _one_batch_ahead(batches(), device)] == list(range(6))
    with pytest.raises(ValueError, match="batch 3 is broken"):
        list(_one_batch_ahead(batches(fail_at=3), device))
    early = _one_batch_ahead(batches(), device)
    assert next(early)[1] == 0
    early.close()  # the consumer stops (an error in the model): the thread must end, not hang on a full queue
    assert not [t for t in threading.enumerate() if t.name == "decode-ahead"]
