"""One short, safe, unique name per (dataset, model, weights), the same from CLI arguments and from a cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from stages.shared.errors import ModelError
from stages.shared.naming import (cache_file, file_identity, legacy_cache_file, local_dir_identity, model_identity,
                                  model_name, name_part, slug, weights_identity)

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")


@pytest.mark.parametrize("model, weights, expected", [
    ("ViT-B-32", "openai", "ViT-B-32__openai"),
    ("ViT-B-32", "none", "ViT-B-32__none"),
    ("convnext_base_w", "laion2b_s13b_b82k", "convnext_base_w__laion2b_s13b_b82k"),
    ("ViT-B-16", "file:vitb16.pt@0123456789ab", "ViT-B-16__vitb16-01234567"),
    ("hf-hub:timm/ViT-B-16-SigLIP", "hf-hub:timm/ViT-B-16-SigLIP", r"ViT-B-16-SigLIP__hf-hub-[0-9a-f]{8}"),
    ("local-dir:/models/my-clip", "local-dir:my-clip@abcdef123456", "my-clip__local-dir-abcdef12"),
    ("ViT/B:32 @x", "we ird", r"ViT_B_32_x-[0-9a-f]{8}__we_ird-[0-9a-f]{8}"),
])
def test_names_are_short_readable_and_safe(model, weights, expected) -> None:
    name = model_name(model, weights)
    assert re.fullmatch(expected, name), name
    assert SAFE.match(name) and "/" not in name and len(name) < 60


def test_names_differ_where_inputs_differ() -> None:
    names = {
        model_name("hf-hub:timm/ViT-B-16-SigLIP", "hf-hub:timm/ViT-B-16-SigLIP"),
        model_name("hf-hub:other/ViT-B-16-SigLIP", "hf-hub:other/ViT-B-16-SigLIP"),
        model_name("local-dir:/a/my-clip", "local-dir:my-clip@111111111111"),
        model_name("local-dir:/b/my-clip", "local-dir:my-clip@222222222222"),
        model_name("ViT-B-16", "file:w.pt@333333333333"),
        model_name("ViT-B-16", "file:w.pt@444444444444"),
        model_name("a b", "x"), model_name("a_b", "x"), model_name("a:b", "x"),
    }
    assert len(names) == 9
    assert name_part("..") != name_part(".") and SAFE.match(name_part(".."))


def test_the_name_from_cli_arguments_equals_the_name_from_the_identities(tmp_path: Path) -> None:
    checkpoint = tmp_path / "my weights.pt"
    checkpoint.write_bytes(b"weights")
    folder = tmp_path / "my-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    (folder / "open_clip_model.safetensors").write_bytes(b"w")
    for model, pretrained in (("ViT-B-32", "openai"), ("ViT-B-32", None), ("ViT-B-16", str(checkpoint)),
                              (f"local-dir:{folder}", None), ("hf-hub:org/x", "ignored"), ("cfg/tiny.json", "none")):
        identity = (model_identity(model), weights_identity(model, pretrained))
        path = cache_file(tmp_path / "cache", "dtd", model, pretrained)
        assert path == tmp_path / "cache" / "dtd" / f"{model_name(*identity)}.h5"
    assert weights_identity("ViT-B-16", str(checkpoint)) == file_identity(checkpoint)
    assert weights_identity(f"local-dir:{folder}", None) == local_dir_identity(folder)
    with pytest.raises(ModelError, match="model folder not found"):
        weights_identity(f"local-dir:{tmp_path / 'nowhere'}", None)


def test_slug_is_safe_and_never_empty() -> None:
    assert slug("hf-hub:org/x") == "hf-hub_org_x" and slug("..") == "unnamed" and slug("a b") == "a_b"


def test_an_old_cache_name_gets_a_one_line_migration_message(tmp_path: Path) -> None:
    checkpoint = tmp_path / "vitb16.pt"
    checkpoint.write_bytes(b"weights")
    old = legacy_cache_file(tmp_path / "cache", "digits", "ViT-B-16", str(checkpoint))
    new = cache_file(tmp_path / "cache", "digits", "ViT-B-16", str(checkpoint))
    assert old.name == "ViT-B-16__vitb16.h5" and old != new
    old.parent.mkdir(parents=True)
    old.write_bytes(b"")
    result = CliRunner().invoke(cli, ["fit", "--dataset", "digits", "--model", "ViT-B-16", "--pretrained",
                                      str(checkpoint), "--cache-dir", str(tmp_path / "cache"),
                                      "--runs-dir", str(tmp_path / "runs"), "--method", "zero_shot"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert f"mv '{old}' '{new}'" in line


def test_pretrained_none_with_a_hub_or_folder_model_is_named_none(tmp_path: Path) -> None:
    """--pretrained none with hf-hub:/local-dir: is the id's architecture with random weights: ``<name>__none``,
    the same from CLI arguments and from what load_model records (weights "none")."""
    folder = tmp_path / "my-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    (folder / "open_clip_model.safetensors").write_bytes(b"weights")
    for model in ("hf-hub:org/my-clip", f"local-dir:{folder}"):
        assert weights_identity(model, "none") == "none"
        assert model_name(model, "none") == "my-clip__none"
        assert cache_file(tmp_path, "dtd", model, "none") == tmp_path / "dtd" / "my-clip__none.h5"
        assert cache_file(tmp_path, "dtd", model, None).name != "my-clip__none.h5"  # not given: its own weights
    assert model_identity(str(folder / "open_clip_config.json")) == "my-clip"  # named by its folder
    assert cache_file(tmp_path, "dtd", str(folder / "open_clip_config.json"), "none").name == "my-clip__none.h5"
