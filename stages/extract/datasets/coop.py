"""The nine benchmarks CoOp ships split files for: one JSON file plus one image folder each."""

from __future__ import annotations

import os
from typing import NamedTuple

from stages.extract.datasets.base import DatasetReader, ListedReader
from stages.extract.datasets.locate import COOP_DATASETS_MD, dataset_dir, require_dir, require_file
from stages.extract.datasets.split_json import read_split_json


class CoopLayout(NamedTuple):
    """Where a CoOp benchmark lives under $DATA, and what to download when it is not there."""

    dirname: str     # the dataset folder under $DATA
    image_dir: str   # the folder (relative to the dataset folder) that split paths resolve against
    split_file: str  # CoOp's split_zhou_*.json, inside the dataset folder
    download: str    # where the images come from


COOP_LAYOUTS: dict[str, CoopLayout] = {
    "caltech101": CoopLayout("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                             "101_ObjectCategories.tar.gz from https://data.caltech.edu/records/mzrjq-6wc02"),
    "dtd": CoopLayout("dtd", "images", "split_zhou_DescribableTextures.json",
                      "dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/"),
    "eurosat": CoopLayout("eurosat", "2750", "split_zhou_EuroSAT.json",
                          "EuroSAT.zip (RGB) from https://github.com/phelber/EuroSAT"),
    "oxford_flowers": CoopLayout("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                                 "102flowers.tgz from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"),
    "oxford_pets": CoopLayout("oxford_pets", "images", "split_zhou_OxfordPets.json",
                              "images.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/"),
    "stanford_cars": CoopLayout("stanford_cars", ".", "split_zhou_StanfordCars.json",
                                f"the Stanford Cars cars_train/ and cars_test/ folders (mirrors: {COOP_DATASETS_MD})"),
    "ucf101": CoopLayout("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                         f"UCF-101-midframes.zip (link in {COOP_DATASETS_MD})"),
    "food101": CoopLayout("food-101", "images", "split_zhou_Food101.json",
                          "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"),
    "sun397": CoopLayout("sun397", "SUN397", "split_zhou_SUN397.json",
                         "SUN397.tar.gz from https://vision.princeton.edu/projects/2010/SUN/"),
}


def open_coop(key: str, root: str | os.PathLike[str] | None) -> DatasetReader:
    """Reader for one of the CoOp benchmarks in ``COOP_LAYOUTS`` (splits train, val, test)."""
    layout = COOP_LAYOUTS[key]
    markers = (layout.split_file,) + ((layout.image_dir,) if layout.image_dir != "." else ())
    folder, _ = dataset_dir(key, root, layout.dirname, markers, layout.download)
    split_path = require_file(key, folder / layout.split_file, "split file",
                              f"{layout.split_file} (CoOp's split, linked in {COOP_DATASETS_MD})")
    image_root = require_dir(key, folder / layout.image_dir, "image folder", layout.download)
    classnames, listings = read_split_json(key, split_path)
    return ListedReader(key, folder, image_root, classnames, listings)
