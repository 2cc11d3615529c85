"""Opt-in reduced-scale JPEG decoding (extract --fast-decode): smaller decode, same picture, its own cache key."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

from cache import FeatureCache
from stages.extract.images import load_rgb
from stages.extract.run import extract
from tests.extract.test_extract import request_for


def photo(path, size=(960, 720)):
    """A smooth colour field with noise, saved as a JPEG (what draft mode is for)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(0.01 * xx), np.cos(0.013 * yy), np.sin(0.007 * (xx + yy))], axis=-1) * 90 + 128
    noise = np.random.default_rng(0).normal(0, 10, base.shape)
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def test_large_jpeg_decodes_at_reduced_scale_but_never_below_the_model_input(tmp_path):
    path = photo(tmp_path / "big.jpg")
    assert load_rgb(path).size == (960, 720)
    small = load_rgb(path, draft=224)
    assert small.mode == "RGB" and small.size == (480, 360)  # 1/2 keeps both sides >= 224, 1/4 would not
    assert load_rgb(path, draft=100).size == (240, 180)


def test_draft_changes_the_preprocessed_pixels_only_a_little(tmp_path):
    path = photo(tmp_path / "big.jpg")
    prep = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor()])
    exact, fast = prep(load_rgb(path)), prep(load_rgb(path, draft=224))
    diff = (exact - fast).abs()
    assert 0 < float(diff.mean()) < 0.02  # different bits, same picture (pixel values in 0..1)


def test_other_formats_and_small_jpegs_are_decoded_in_full(tmp_path):
    photo(tmp_path / "big.jpg")
    Image.open(tmp_path / "big.jpg").save(tmp_path / "big.png")
    assert load_rgb(tmp_path / "big.png", draft=224).size == (960, 720)
    small = photo(tmp_path / "small.jpg", size=(400, 300))
    np.testing.assert_array_equal(np.asarray(load_rgb(small, draft=224)), np.asarray(load_rgb(small)))


def test_fast_decode_is_part_of_the_cache_key(coop_dataset, tmp_path):
    exact = extract(request_for(coop_dataset, tmp_path / "cache"), progress=lambda _: None)
    assert "decode" not in FeatureCache(exact.path).key_fields
    from cache import CacheError

    with pytest.raises(CacheError, match="decode"):  # never mixed into an exactly decoded cache
        extract(request_for(coop_dataset, tmp_path / "cache", fast_decode=True), progress=lambda _: None)
    fast = extract(request_for(coop_dataset, tmp_path / "cache", fast_decode=True, force=True),
                   progress=lambda _: None)
    assert FeatureCache(fast.path).key_fields["decode"] == "jpeg-draft"
