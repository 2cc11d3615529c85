"""Builders of miniature copies of the real dataset layouts (tiny generated JPEGs in tmp_path)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from stages.extract.datasets.coop import COOP_LAYOUTS

# How each CoOp benchmark names its files (relative to its image folder), mirroring the real split files.
COOP_PATHS = {
    "caltech101": lambda cls, split, n: f"{cls}/image_{n:04d}.jpg",
    "dtd": lambda cls, split, n: f"{cls}/{cls}_{n:04d}.jpg",
    "eurosat": lambda cls, split, n: f"{cls}/{cls}_{n}.jpg",
    "oxford_flowers": lambda cls, split, n: f"image_{n:05d}.jpg",
    "oxford_pets": lambda cls, split, n: f"{cls}_{n}.jpg",
    "stanford_cars": lambda cls, split, n: f"cars_{'test' if split == 'test' else 'train'}/{cls[:3]}{n:05d}.jpg",
    "ucf101": lambda cls, split, n: f"{cls}/v_{cls.replace('_', '')}_g{n:02d}_c01.jpg",
    "food101": lambda cls, split, n: f"{cls}/{1000 + n}.jpg",
    "sun397": lambda cls, split, n: f"{cls[0]}/{cls}/sun_{n:04d}.jpg",
}
SPLITS = ("train", "val", "test")
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")
NAMES = ("tench", "goldfish", "great_white shark", "tiger shark")


def jpeg_bytes(size: tuple[int, int] = (6, 4), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A tiny valid JPEG."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


class Miniatures:
    """Writes miniature dataset layouts under one data folder ($DATA)."""

    WNIDS = WNIDS  # the miniature ImageNet's classes, as tests see them through the fixture
    NAMES = NAMES

    def __init__(self, data: Path) -> None:
        self.data = data
        self._jpeg = jpeg_bytes()

    def image(self, path: Path) -> Path:
        """Write a tiny JPEG at ``path`` (parents created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self._jpeg)
        return path

    def coop(self, key: str, classes: tuple[str, ...] = ("first_class", "second", "third one"),
             per_split: int = 2) -> dict[str, list[list]]:
        """A CoOp benchmark folder with its split JSON and images; returns the JSON written."""
        layout = COOP_LAYOUTS[key]
        folder = self.data / layout.dirname
        split = {name: [] for name in SPLITS}
        count = 0
        for label, cls in reversed(list(enumerate(classes))):  # not label-sorted, like Flowers' real file
            for name in SPLITS:
                for _ in range(per_split):
                    count += 1
                    split[name].append([COOP_PATHS[key](cls.replace(" ", "_"), name, count), label, cls])
        self.write_json(folder / layout.split_file, split)
        for rows in split.values():
            for relpath, _, _ in rows:
                self.image(folder / layout.image_dir / relpath)
        return split

    def write_json(self, path: Path, data: object) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        return path

    def aircraft(self, variants: tuple[str, ...] = ("707-320", "A300B4", "F/A-18", "Cessna 172"),
                 per_split: int = 2) -> dict[str, list[tuple[str, str]]]:
        """fgvc_aircraft/ with variants.txt, images_variant_*.txt and images/; returns {split: [(id, variant)]}."""
        folder = self.data / "fgvc_aircraft"
        folder.mkdir(parents=True)
        (folder / "variants.txt").write_text("\n".join(variants) + "\n")
        lines = {}
        count = 1000000
        for split in SPLITS:
            rows = []
            for variant in reversed(variants):
                for _ in range(per_split):
                    count += 1
                    rows.append((f"{count:07d}", variant))
                    self.image(folder / "images" / f"{count:07d}.jpg")
            (folder / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
            lines[split] = rows
        return lines

    def classnames_txt(self, path: Path, wnids: tuple[str, ...] = WNIDS, names: tuple[str, ...] = NAMES) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{w} {n}\n" for w, n in zip(wnids, names)))
        return path

    def class_tree(self, folder: Path, classes: tuple[str, ...], per_class: int = 2) -> None:
        """``folder/<class>/<image>`` with ``per_class`` images per class (names in reverse creation order)."""
        for cls in classes:
            for n in reversed(range(per_class)):
                self.image(folder / cls / f"img_{n:04d}.JPEG")

    def imagenet(self, per_class: int = 3) -> Path:
        """imagenet/ with classnames.txt and images/{train,val}/n*/; returns the dataset folder."""
        folder = self.data / "imagenet"
        self.classnames_txt(folder / "classnames.txt")
        self.class_tree(folder / "images" / "train", WNIDS, per_class)
        self.class_tree(folder / "images" / "val", WNIDS, 2)
        return folder


@pytest.fixture
def mini(tmp_path: Path) -> Miniatures:
    """Miniature layouts under ``tmp_path / "data"``."""
    data = tmp_path / "data"
    data.mkdir()
    return Miniatures(data)
