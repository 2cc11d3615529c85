"""Stage one end to end with the tiny model: shapes, labels, paths, resume, equality with a direct forward."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cache import FeatureCache
from stages.extract.run import ExtractRequest, extract
from tests.conftest import TINY_MODEL_CONFIG


def request_for(split_file, cache_dir, **overrides) -> ExtractRequest:
    options = dict(dataset="folder", model=str(TINY_MODEL_CONFIG), pretrained="none", cache_dir=cache_dir,
                   data_root=split_file.parent / "images", dataset_options={"split_file": split_file},
                   batch_size=4, workers=0)
    options.update(overrides)
    return ExtractRequest(**options)


def test_cache_matches_split_and_direct_forward(coop_dataset, tmp_path, tiny_model_name):
    # on the CPU in fp32, as the direct forward below (with a GPU, auto means cuda, amp and the tensor decoder)
    result = extract(request_for(coop_dataset, tmp_path / "cache", device="cpu"), progress=lambda _: None)
    split = json.loads(coop_dataset.read_text())
    cache = FeatureCache(result.path)
    assert cache.classes == ["red fox", "blue jay", "green frog"]
    for name in ("train", "val", "test"):
        assert cache.split_paths(name) == [e[0] for e in split[name]]
        assert cache.split_labels(name).tolist() == [e[1] for e in split[name]]
        assert cache.features(name).shape == (len(split[name]), 32)
    text = cache.text_features("coop")
    assert text.shape == (3, 1, 32)
    assert cache.describe()["random_weights"] is True
    assert result.encoded_images == 18 + 6 + 9

    # the cached feature of an image equals a direct encode_image of the same preprocessed image
    from stages.extract.models import load_model

    loaded = load_model(str(TINY_MODEL_CONFIG), "none")
    from PIL import Image

    rel = split["test"][4][0]
    pixels = loaded.preprocess(Image.open(coop_dataset.parent / "images" / rel).convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        direct = loaded.model.encode_image(pixels).numpy()[0]
    np.testing.assert_allclose(cache.features("test", np.array([4]))[0], direct, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        prompt = loaded.model.encode_text(loaded.tokenizer(["a photo of a blue jay."])).numpy()[0]
    np.testing.assert_allclose(text[1, 0], prompt, rtol=1e-4, atol=1e-5)


def test_second_run_encodes_nothing(coop_dataset, tmp_path):
    messages: list[str] = []
    request = request_for(coop_dataset, tmp_path / "cache")
    extract(request, progress=messages.append)
    again = extract(request, progress=messages.append)
    assert again.encoded_images == 0
    assert "nothing to encode" in messages[-1]


def test_adding_views_and_templates_keeps_existing_features(coop_dataset, tmp_path):
    request = request_for(coop_dataset, tmp_path / "cache")
    first = extract(request, progress=lambda _: None)
    before = FeatureCache(first.path).features("train")
    more = request_for(coop_dataset, tmp_path / "cache", aug_views=2, template_sets=("coop", "imagenet7"))
    result = extract(more, progress=lambda _: None)
    assert result.encoded_images == 2 * 18  # only the new views were encoded
    cache = FeatureCache(result.path)
    np.testing.assert_array_equal(cache.features("train"), before)
    aug = cache.aug_features(np.arange(18))
    assert aug.shape == (2, 18, 32)
    assert not np.allclose(aug[0], aug[1])  # two different random views
    assert cache.text_features("imagenet7").shape == (3, 7, 32)


def test_augmented_views_are_reproducible(coop_dataset, tmp_path):
    a = extract(request_for(coop_dataset, tmp_path / "a", aug_views=1), progress=lambda _: None)
    b = extract(request_for(coop_dataset, tmp_path / "b", aug_views=1, batch_size=7), progress=lambda _: None)
    np.testing.assert_allclose(FeatureCache(a.path).aug_features(np.arange(18)),
                               FeatureCache(b.path).aug_features(np.arange(18)), rtol=1e-5, atol=1e-6)


def test_different_request_is_refused_with_field_names(coop_dataset, tmp_path):
    from cache import CacheError

    extract(request_for(coop_dataset, tmp_path / "cache"), progress=lambda _: None)
    with pytest.raises(CacheError, match="store_dtype"):
        extract(request_for(coop_dataset, tmp_path / "cache", store_dtype="float16"), progress=lambda _: None)


def test_coop_benchmark_layout_end_to_end(mini, tmp_path):
    """A benchmark key (dtd) in its real folder layout, not just ``folder``: rows follow the split file."""
    written = mini.coop("dtd")
    result = extract(ExtractRequest(dataset="dtd", model=str(TINY_MODEL_CONFIG), pretrained="none",
                                    cache_dir=tmp_path / "cache", data_root=mini.data, batch_size=4, workers=0),
                     progress=lambda _: None)
    cache = FeatureCache(result.path)
    assert result.path == tmp_path / "cache" / "dtd" / "tiny-test-clip__none.h5"
    assert cache.classes == ["first class", "second", "third one"]
    for name, rows in written.items():
        assert cache.split_paths(name) == [r[0] for r in rows]
        assert cache.split_labels(name).tolist() == [r[1] for r in rows]
        assert cache.features(name).shape == (len(rows), 32)
    assert cache.templates("coop") == ["{} texture."]  # CoOp's DTD template
    assert cache.text_features("coop").shape == (3, 1, 32)


def test_digits_embedded_default_end_to_end(tmp_path):
    """The embedded default needs no download: every digits image is encoded, split as documented."""
    from stages.extract.datasets import open_dataset

    reader = open_dataset("digits", None)
    result = extract(ExtractRequest(dataset="digits", model=str(TINY_MODEL_CONFIG), pretrained="none",
                                    cache_dir=tmp_path / "cache", batch_size=256, workers=0),
                     progress=lambda _: None)
    cache = FeatureCache(result.path)
    sizes = {name: len(reader.items(name)) for name in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and result.encoded_images == 1797
    for name, size in sizes.items():
        assert cache.features(name).shape == (size, 32)
        assert cache.split_labels(name).tolist() == [i.label for i in reader.items(name)]
    assert cache.text_features("coop").shape == (10, 1, 32)
