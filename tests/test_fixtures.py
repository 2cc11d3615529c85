"""The shared fixtures themselves work: the tiny model encodes, the generated dataset is readable."""

from __future__ import annotations

import json
import time

import torch
from PIL import Image


def test_tiny_model_builds_fast_and_encodes(tiny_model_name):
    import open_clip

    start = time.perf_counter()
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_model_name, pretrained=None)
    assert time.perf_counter() - start < 5.0
    tokenizer = open_clip.get_tokenizer(tiny_model_name)
    with torch.inference_mode():
        image = model.encode_image(preprocess(Image.new("RGB", (50, 40))).unsqueeze(0))
        text = model.encode_text(tokenizer(["a photo of a cat."]))
    assert image.shape == (1, 32) and text.shape == (1, 32)


def test_coop_dataset_matches_its_split_file(coop_dataset):
    split = json.loads(coop_dataset.read_text())
    assert len(split["train"]) == 18 and len(split["test"]) == 9
    rel, label, name = split["val"][-1]
    assert (label, name) == (2, "green frog")
    assert Image.open(coop_dataset.parent / "images" / rel).size == (40, 40)
