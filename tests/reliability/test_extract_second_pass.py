"""Holes of the second pass on the extract side: fp16 overflow, huge labels, elongated images, messages, fsync.

Each test drives the real ``pipeline`` command (or the real writer) and checks the one-line error or the right
result, and that nothing already written was lost or changed.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from cache import CacheWriter, FeatureCache, partial_path
from stages.shared.errors import ModelError
from stages.extract.images import MAX_ASPECT_RATIO, BadImageError, load_rgb
from stages.extract.models import load_model
from tests.conftest import TINY_MODEL_CONFIG
from tests.reliability.helpers import CACHE_NAME, ROOT, error_line, extract_args, run_cli


def _checkpoint(tmp_path, scale: float):
    """The tiny model's weights with the image projection multiplied by ``scale`` (features grow with it)."""
    state = load_model(str(TINY_MODEL_CONFIG), "none").model.state_dict()
    state["visual.proj"] = state["visual.proj"] * scale
    path = tmp_path / "loud.pt"
    torch.save(state, path)
    return path


def test_float16_overflow_is_refused_after_the_cast(small_dataset, tmp_path):
    """Item 1: features above 65,504 would land as Inf in a float16 cache; the check runs on what is stored."""
    checkpoint = _checkpoint(tmp_path, 1e6)
    args = extract_args(small_dataset, tmp_path / "cache", "--store-dtype", "float16")
    args[args.index("--pretrained") + 1] = str(checkpoint)
    result = run_cli(*args)
    assert result.exit_code == 1
    line = error_line(result.output)
    assert "NaN/Inf" in line and "overflow float16" in line and "--store-dtype float32" in line
    partials = list((tmp_path / "cache" / "folder").glob("tiny-test-clip__loud-*.h5.partial"))  # weights: stem-sha
    assert len(partials) == 1
    cache = partials[0].with_name(partials[0].name[: -len(".partial")])
    assert not cache.exists() and partial_path(cache).exists()  # never committed as a cache

    args[args.index("float16")] = "float32"  # the fix the message names
    fixed = run_cli(*args)
    assert fixed.exit_code == 0, fixed.output
    features = FeatureCache(cache).features("train")
    assert np.isfinite(features).all() and np.abs(features).max() > 65504


@pytest.mark.parametrize("label", [10**8, 10**18])
def test_huge_label_is_one_line_without_exhausting_memory(small_dataset, tmp_path, label):
    """Item 2: a huge label used to build range(label); now a one-line error, under a 3 GB data-segment cap."""
    split = json.loads(small_dataset.read_text())
    split["train"][0][1] = label
    small_dataset.write_text(json.dumps(split))
    limit = 3 * 1024**3

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))  # AS would not fit torch's CUDA maps

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    child = subprocess.run([sys.executable, "-m", "pipeline", "-q", *extract_args(small_dataset, tmp_path / "c")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, preexec_fn=cap)
    assert child.returncode == 1, child.stderr
    line = error_line(child.stderr)
    assert "never occurs in 'train'" in line and f"largest, {label}" in line
    assert not (tmp_path / "c").exists()


def _png(path, size) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def test_elongated_image_is_refused_before_resize(tmp_path):
    """Item 3: a 1 x 20000 PNG would resize to 224 x 4.5M; the ratio is checked at decode time."""
    bomb = tmp_path / "bomb.png"
    _png(bomb, (1, 20000))
    assert bomb.stat().st_size < 1000
    with pytest.raises(BadImageError, match=f"too elongated.*1x20000.*{MAX_ASPECT_RATIO}:1"):
        load_rgb(bomb)
    ok = tmp_path / "wide.png"
    _png(ok, (MAX_ASPECT_RATIO * 4, 4))  # exactly at the limit: accepted
    assert load_rgb(ok).size == (MAX_ASPECT_RATIO * 4, 4)


def test_elongated_image_stops_extract_or_is_skipped_and_listed(small_dataset, tmp_path):
    """Items 3 and 10: one line naming the file; with --skip-bad it is skipped and pipeline info lists it."""
    split = json.loads(small_dataset.read_text())
    relpath = split["train"][0][0]
    _png(small_dataset.parent / "images" / relpath, (20000, 1))
    stopped = run_cli(*extract_args(small_dataset, tmp_path / "c"))
    assert stopped.exit_code == 1
    assert "too elongated" in error_line(stopped.output) and relpath in error_line(stopped.output)
    skipped = run_cli(*extract_args(small_dataset, tmp_path / "c", "--skip-bad"))
    assert skipped.exit_code == 0, skipped.output
    assert "pipeline info lists them" in skipped.output
    info = run_cli("info", str(tmp_path / "c" / CACHE_NAME))
    assert info.exit_code == 0 and "skipped: 1 unreadable train image(s)" in info.output and relpath in info.output


def test_disk_full_reason_is_one_line(tmp_path):
    """Item 10: HDF5's write error carries a ctime() with a newline; the message is one line all the same."""
    writer = CacheWriter(tmp_path / "x.h5", {"a": 1})
    hdf5_text = ("Can't synchronously write data (file write failed: time = Mon Nov 30 07:29:08 2026\n, "
                 "filename = 'x.h5.partial', errno = 28, error message = 'No space left on device')")
    for exc in (OSError(28, hdf5_text), RuntimeError(hdf5_text)):
        message = str(writer._write_failure(exc))
        assert "\n" not in message and "[Errno 28]" in message and "unchanged" in message
    result = run_cli("info", str(tmp_path / "missing\nfile.h5"))  # the CLI prints any message on one line
    assert result.exit_code == 1 and error_line(result.output).count("missing") == 1


def test_refused_local_dir_pickle_names_the_folder(tmp_path):
    """Item 10: the refusal names the local-dir folder, not the default --pretrained tag."""
    folder = tmp_path / "evil-dir"
    folder.mkdir()
    config = json.loads(TINY_MODEL_CONFIG.read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    with open(folder / "open_clip_pytorch_model.bin", "wb") as handle:
        pickle.dump({"state_dict": {"x": torch.zeros(1)}, "code": print}, handle)
    with pytest.raises(ModelError) as caught:
        load_model(f"local-dir:{folder}", "openai")
    message = str(caught.value)
    assert message.startswith(f"refusing {folder}:") and "openai" not in message


def test_big_vision_npz_as_pretrained_is_one_line(small_dataset, tmp_path):
    """Item 9: a big_vision .npz (or any foreign .npz) passed as --pretrained: a one-line error, nothing written."""
    npz = tmp_path / "vit.npz"
    np.savez(npz, **{"params/img/embedding/kernel": np.zeros((2, 2))})
    args = extract_args(small_dataset, tmp_path / "cache")
    args[args.index("--pretrained") + 1] = str(npz)
    result = run_cli(*args)
    assert result.exit_code == 1
    assert "cannot load model" in error_line(result.output) and "vit.npz" in error_line(result.output)
    assert not (tmp_path / "cache").exists()


def test_each_block_is_fsynced_before_its_flag(tmp_path, monkeypatch):
    """Item 12: the resume logic trusts a done flag only if the rows under it reached the disk first."""
    path = tmp_path / "x.h5"
    order: list[str] = []
    real_fsync = os.fsync
    with CacheWriter(path, {"a": 1}) as writer:
        array = writer.array("image/train/features", (6, 4), "float32", block_rows=2)

        def fsync(fd: int) -> None:  # records whether the flag of the block being written is already set
            if writer.file is not None:  # while blocks are written (not the commit's own fsync)
                order.append(f"fsync flags={int(array.done[()].sum())}")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        for block, (index, rows) in enumerate(array.blocks()):
            array.write(index, np.full((rows.stop - rows.start, 4), block, np.float32))
            order.append(f"flag {block}")
        writer.commit()
    assert order[:6] == ["fsync flags=0", "flag 0", "fsync flags=1", "flag 1", "fsync flags=2", "flag 2"]
    assert not partial_path(path).exists()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["image/train/features"][:, 0], [0, 0, 1, 1, 2, 2])


def test_checkpoint_with_a_broken_logit_scale_is_refused_before_writing(small_dataset, tmp_path):
    """Item 9: a checkpoint whose logit scale is NaN would give chance accuracy; refused at load, no cache."""
    state = load_model(str(TINY_MODEL_CONFIG), "none").model.state_dict()
    state["logit_scale"] = torch.tensor(float("nan"))
    checkpoint = tmp_path / "nan_scale.pt"
    torch.save(state, checkpoint)
    args = extract_args(small_dataset, tmp_path / "cache")
    args[args.index("--pretrained") + 1] = str(checkpoint)
    result = run_cli(*args)
    assert result.exit_code == 1
    assert "logit scale nan" in error_line(result.output)
    assert not (tmp_path / "cache").exists()
