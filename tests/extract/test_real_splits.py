"""The CoOp readers and sampler against CoOp's real split files (reference data, never needed in CI).

The real ``split_zhou_*.json`` files live outside the project (``$PIPELINE_REAL_SPLITS``, default
``<repo>/../shared/data/coop_splits``); the module is skipped when that folder is absent. For each file a
tree of empty files with exactly the listed paths is built in the real folder layout, so the reader sees
the real file names, class names and label order without any image.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from stages.extract.datasets import open_dataset
from stages.extract.datasets.base import DatasetReader, readable
from stages.extract.datasets.checks import path_problem
from stages.extract.datasets.coop import COOP_LAYOUTS
from stages.shared.sampling import VAL_SHOTS_CAP, coop_sample

REPO = Path(__file__).resolve().parents[2]
REAL_SPLITS = Path(os.environ.get("PIPELINE_REAL_SPLITS", REPO.parent / "shared" / "data" / "coop_splits"))
if not REAL_SPLITS.is_dir():
    pytest.skip(f"no real CoOp split files at {REAL_SPLITS} (reference data, absent in CI)",
                allow_module_level=True)

# protocol.md's table: classes, train, val, test
PROTOCOL = {
    "caltech101": (100, 4128, 1649, 2465), "dtd": (47, 2820, 1128, 1692), "eurosat": (10, 13500, 5400, 8100),
    "oxford_flowers": (102, 4093, 1633, 2463), "oxford_pets": (37, 2944, 736, 3669),
    "stanford_cars": (196, 6509, 1635, 8041), "ucf101": (101, 7639, 1898, 3783),
    "food101": (101, 50500, 20200, 30300), "sun397": (397, 15880, 3970, 19850),
}
SPLITS = ("train", "val", "test")
SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)
KEYS = sorted(key for key, layout in COOP_LAYOUTS.items() if (REAL_SPLITS / layout.split_file).is_file())
if not KEYS:
    pytest.skip(f"{REAL_SPLITS} holds no CoOp split file", allow_module_level=True)


@pytest.fixture(scope="module", params=KEYS)
def real(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[str, dict[str, list[list]], DatasetReader]:
    """(key, the real split JSON, the reader opened on a tree of empty files listed by it)."""
    key = request.param
    layout = COOP_LAYOUTS[key]
    split = json.loads((REAL_SPLITS / layout.split_file).read_text(encoding="utf-8"))
    data = tmp_path_factory.mktemp(f"real_{key}")
    folder = data / layout.dirname
    folder.mkdir()
    (folder / layout.split_file).write_text(json.dumps(split), encoding="utf-8")
    _touch_all(folder / layout.image_dir, [row[0] for rows in split.values() for row in rows])
    return key, split, open_dataset(key, data)


def _touch_all(root: Path, relpaths: list[str]) -> None:
    """Create an empty file at each ``root/relpath`` (each folder made once: tens of thousands of files)."""
    for parent in sorted({os.path.dirname(relpath) for relpath in relpaths}):
        (root / parent).mkdir(parents=True, exist_ok=True)
    flags = os.O_CREAT | os.O_WRONLY
    for relpath in relpaths:
        os.close(os.open(root / relpath, flags, 0o644))


def test_split_sizes_equal_the_file(real):
    key, split, reader = real
    sizes = {name: len(reader.items(name)) for name in reader.splits}
    print(f"{key}: {sizes}, {len(reader.classnames)} classes")
    assert reader.splits == SPLITS
    assert sizes == {name: len(split[name]) for name in SPLITS}
    classes, *split_sizes = PROTOCOL[key]
    assert [sizes[name] for name in SPLITS] == split_sizes


def test_items_match_the_file_item_for_item(real):
    _key, split, reader = real
    for name in SPLITS:
        listed = [(i.relpath, i.label, i.classname) for i in reader.items(name)]
        assert listed == [(relpath, label, readable(classname)) for relpath, label, classname in split[name]]


def test_class_count_and_names(real):
    key, split, reader = real
    assert len(reader.classnames) == PROTOCOL[key][0]
    assert sorted({label for name in SPLITS for _p, label, _c in split[name]}) == list(range(PROTOCOL[key][0]))
    first_name = {}
    for _relpath, label, classname in split["train"]:
        first_name.setdefault(label, readable(classname))
    assert reader.classnames == [first_name[label] for label in range(len(first_name))]
    assert all("_" not in name and name == name.strip() for name in reader.classnames)


def test_no_path_escapes_and_validate_passes(real):
    _key, _split, reader = real
    root = os.path.normpath(reader.image_root)
    for name in SPLITS:
        for item in reader.items(name):
            assert path_problem(item.relpath) is None
            assert os.path.normpath(os.path.join(root, item.relpath)).startswith(root + os.sep)
    reader.validate()  # also resolves symlinks: every listed file is a regular file inside the image folder


def test_coop_sample_counts_are_min_k_n_and_deterministic(real):
    _key, _split, reader = real
    train = [i.label for i in reader.items("train")]
    val = [i.label for i in reader.items("val")]
    n_train, n_val = Counter(train), Counter(val)
    for shots in SHOTS:
        for seed in SEEDS:
            subset = coop_sample(train, val, shots, seed)
            assert subset == coop_sample(train, val, shots, seed)
            got_train = Counter(train[p] for p in subset["train"])
            got_val = Counter(val[p] for p in subset["val"])
            assert got_train == {c: min(shots, n) for c, n in n_train.items()}
            assert got_val == {c: min(shots, VAL_SHOTS_CAP, n) for c, n in n_val.items()}
            assert len(set(subset["train"])) == len(subset["train"])
            assert len(set(subset["val"])) == len(subset["val"])
    assert coop_sample(train, val, 1, 1) != coop_sample(train, val, 1, 2)
