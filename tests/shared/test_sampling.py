"""CoOp's few-shot sampler, checked item for item against a transcription of Dassl's procedure."""

from __future__ import annotations

import json
import random
from collections import defaultdict

import numpy as np
import pytest

from stages.shared.errors import FitError
from stages.shared.sampling import coop_sample, read_subset, write_subsets


def dassl_reference(train_items: list, val_items: list, shots: int, seed: int) -> tuple[list, list]:
    """CoOp: ``random.seed(seed)``, then Dassl's ``generate_fewshot_dataset`` on train, then on val with
    min(K, 4) shots, on the global random state, returning the sampled ITEMS (not positions)."""
    def generate(items: list, k: int) -> list:
        tracker = defaultdict(list)
        for item in items:
            tracker[item[1]].append(item)
        out = []
        for _, group in tracker.items():
            out.extend(random.sample(group, k) if len(group) >= k else group)
        return out

    state = random.getstate()
    try:
        random.seed(seed)
        return generate(train_items, shots), generate(val_items, min(shots, 4))
    finally:
        random.setstate(state)


def split_list(rng: np.random.Generator, sizes: list[int], prefix: str) -> list[tuple[str, int]]:
    """A shuffled split list of (path, label) with the given per-class sizes."""
    items = [(f"{prefix}/{c}/{i}.jpg", c) for c, n in enumerate(sizes) for i in range(n)]
    return [items[i] for i in rng.permutation(len(items))]


@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_positions_equal_dassl_items(shots, seed):
    rng = np.random.default_rng(shots * 10 + seed)
    sizes = [int(n) for n in rng.integers(3, 30, size=12)]  # several classes shorter than K
    train, val = split_list(rng, sizes, "train"), split_list(rng, [max(2, n // 4) for n in sizes], "val")
    expected_train, expected_val = dassl_reference(train, val, shots, seed)
    got = coop_sample([label for _, label in train], [label for _, label in val], shots, seed)
    assert [train[p] for p in got["train"]] == expected_train
    assert [val[p] for p in got["val"]] == expected_val


def test_short_classes_keep_all_items_and_labels_follow_first_seen_order():
    labels = [2, 2, 0, 1, 0, 2, 1, 1, 1, 1]
    got = coop_sample(labels, [0, 1, 2], 3, 1)
    per_class = [labels[p] for p in got["train"]]
    assert per_class == [2, 2, 2, 0, 0, 1, 1, 1]  # class 2 seen first; class 0 has only 2 items: both kept
    assert sorted(p for p in got["train"] if labels[p] == 0) == [2, 4]
    assert got["val"] == [0, 1, 2]


def test_global_random_state_untouched():
    random.seed(123)
    before = random.random()
    random.seed(123)
    coop_sample([0, 1, 0, 1], [0, 1], 1, 7)
    assert random.random() == before


def test_shots_below_one_refused():
    with pytest.raises(FitError, match="shots must be >= 1"):
        coop_sample([0, 1], [0, 1], 0, 1)


def test_written_subsets_read_back(tmp_path):
    train, val = [0, 1, 2] * 10, [0, 1, 2] * 3
    paths = write_subsets(train, val, [1, 4], [1, 2], tmp_path)
    assert sorted(p.name for p in paths) == ["shots1_seed1.json", "shots1_seed2.json", "shots4_seed1.json",
                                             "shots4_seed2.json"]
    subset = read_subset(tmp_path / "shots4_seed2.json", len(train), len(val))
    assert subset == {k: coop_sample(train, val, 4, 2)[k] for k in ("train", "val")}


@pytest.mark.parametrize("content, message", [
    ("not json", "is not a subset file"),
    (json.dumps({"train": [0, 1]}), "is not a subset file"),
    (json.dumps({"train": [0, 99], "val": [0]}), "outside the split list"),
    (json.dumps({"train": [0, 0], "val": [0]}), "repeat"),
    (json.dumps({"train": [], "val": [0]}), "empty"),
])
def test_bad_subset_files_named(tmp_path, content, message):
    path = tmp_path / "shots1_seed1.json"
    path.write_text(content)
    with pytest.raises(FitError, match=message) as info:
        read_subset(path, 10, 5)
    assert str(path) in str(info.value)


def test_missing_subset_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FitError, match="pipeline subsets"):
        read_subset(tmp_path / "shots1_seed1.json", 10, 5)
