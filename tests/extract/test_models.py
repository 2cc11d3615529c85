"""The real weight-loading paths, offline: checkpoint files, local-dir folders, random init."""

from __future__ import annotations

import json

import pytest
import torch

from stages.shared.errors import ModelError
from stages.extract.models import load_model
from tests.conftest import TINY_MODEL_CONFIG


@pytest.fixture(scope="module")
def trained_like():
    """A tiny model with weights different from the seeded random init, as a 'pretrained' model."""
    torch.manual_seed(123)
    loaded = load_model(str(TINY_MODEL_CONFIG), "none", seed=123)
    return loaded


def probe(loaded) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model.encode_text(loaded.tokenizer(["a photo of a dog."]))


def test_checkpoint_file_loads_its_weights(tmp_path, trained_like):
    path = tmp_path / "tiny.pt"
    torch.save(trained_like.model.state_dict(), path)
    loaded = load_model(str(TINY_MODEL_CONFIG), str(path))
    assert loaded.weights.startswith("file:tiny.pt@") and not loaded.random_weights
    torch.testing.assert_close(probe(loaded), probe(trained_like))
    assert not torch.allclose(probe(load_model(str(TINY_MODEL_CONFIG), "none")), probe(trained_like))


def test_local_dir_loads_config_and_weights(tmp_path, trained_like):
    folder = tmp_path / "tiny-dir"
    folder.mkdir()
    config = json.loads(TINY_MODEL_CONFIG.read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    torch.save(trained_like.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    loaded = load_model(f"local-dir:{folder}", None)
    assert loaded.weights.startswith("local-dir:tiny-dir@")
    torch.testing.assert_close(probe(loaded), probe(trained_like))


def test_local_dir_without_weights_is_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weights"):
        load_model(f"local-dir:{folder}", None)


def test_random_weights_are_seeded_and_flagged():
    a, b = load_model(str(TINY_MODEL_CONFIG), "none"), load_model(str(TINY_MODEL_CONFIG), "none")
    assert a.random_weights and a.weights == "none"
    torch.testing.assert_close(probe(a), probe(b))


@pytest.mark.parametrize("pretrained, message", [
    ("no-such-tag", "unknown pretrained tag 'no-such-tag'"),
    ("./missing.pt", "weights file not found"),
])
def test_bad_weights_are_named(pretrained, message):
    with pytest.raises(ModelError, match=message):
        load_model("RN50", pretrained)


def test_unknown_model_suggests_names():
    with pytest.raises(ModelError, match="did you mean"):
        load_model("vit-b-32-foo", "none")


def test_local_dir_with_pretrained_none_is_its_architecture_with_random_weights(tmp_path, trained_like):
    folder = tmp_path / "tiny-dir"
    folder.mkdir()
    config = json.loads(TINY_MODEL_CONFIG.read_text())
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}))
    torch.save(trained_like.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    random = load_model(f"local-dir:{folder}", "none")
    assert random.random_weights and random.weights == "none" and random.mean == (0.5, 0.5, 0.5)
    assert not torch.allclose(probe(random), probe(trained_like))  # the folder's weights were not loaded
    torch.testing.assert_close(probe(random), probe(load_model(f"local-dir:{folder}", "none")))  # seeded
    config_json = load_model(str(folder / "open_clip_config.json"), "none")  # the same file as a model config
    assert config_json.name == "tiny-dir" and config_json.std == (0.25, 0.25, 0.25)
    torch.testing.assert_close(probe(config_json), probe(random))


def test_hf_hub_id_with_and_without_its_weights(tmp_path, trained_like, monkeypatch):
    """An hf-hub: id served from a hand-built Hugging Face cache (offline): its own weights by default, random
    weights of its architecture with --pretrained none."""
    import huggingface_hub.constants

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--me--tiny-clip"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    config = {"model_cfg": json.loads(TINY_MODEL_CONFIG.read_text()), "preprocess_cfg": {}}
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(trained_like.model.state_dict(), snapshot / "open_clip_pytorch_model.bin")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    own = load_model("hf-hub:me/tiny-clip", None)
    assert own.weights == "hf-hub:me/tiny-clip" and not own.random_weights
    torch.testing.assert_close(probe(own), probe(trained_like))
    random = load_model("hf-hub:me/tiny-clip", "none")
    assert random.weights == "none" and random.random_weights
    assert not torch.allclose(probe(random), probe(trained_like))
