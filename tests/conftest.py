"""Shared fixtures: offline mode, a tiny random open_clip model, and generated image datasets."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before open_clip / huggingface_hub are imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A runner started in the background without job control (`nohup ... &`, some CI shells) ignores SIGINT, and the
# processes the tests start would inherit that: the Ctrl-C tests need the disposition a terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ASSETS = Path(__file__).parent / "assets"
TINY_MODEL_CONFIG = ASSETS / "tiny-test-clip.json"
TINY_MODEL = "tiny-test-clip"


@pytest.fixture(scope="session")
def tiny_model_name() -> str:
    """Name of a tiny randomly initialised open_clip config, registered with open_clip."""
    import open_clip

    open_clip.add_model_config(ASSETS)
    return TINY_MODEL


@pytest.fixture(scope="session")
def tiny_model(tiny_model_name):
    """(model, eval preprocess, tokenizer) of the tiny config, random weights, eval mode."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_model_name, pretrained=None)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(tiny_model_name)


def class_image(label: int, index: int, size: int = 40) -> Image.Image:
    """A small RGB image whose colour and stripes depend on the class, with per-image noise."""
    rng = np.random.default_rng(label * 1000 + index)
    base = np.array([(label * 67) % 256, (label * 131 + 40) % 256, (label * 29 + 90) % 256], np.float32)
    pixels = np.tile(base, (size, size, 1))
    pixels[:, :: (label % 4) + 2] *= 0.5
    pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_coop_dataset(root: Path, classnames: list[str], counts: dict[str, int], image_dir: str = "images",
                       split_name: str = "split_custom.json") -> Path:
    """Write a CoOp-layout dataset: ``root/<image_dir>/<class>/<n>.png`` plus a split JSON; returns the JSON."""
    split: dict[str, list] = {}
    for split_key, per_class in counts.items():
        entries = []
        for label, name in enumerate(classnames):
            for i in range(per_class):
                rel = f"{name.replace(' ', '_')}/{split_key}_{i:03d}.png"
                path = root / image_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                class_image(label, hash((split_key, i)) % 10_000).save(path)
                entries.append([rel, label, name])
        split[split_key] = entries
    split_file = root / split_name
    split_file.write_text(json.dumps(split))
    return split_file


@pytest.fixture
def coop_dataset(tmp_path) -> Path:
    """A 3-class dataset in CoOp layout (train 6, val 2, test 3 per class); returns its split file."""
    return write_coop_dataset(tmp_path / "toy", ["red fox", "blue_jay", "green frog"], {"train": 6, "val": 2, "test": 3})
