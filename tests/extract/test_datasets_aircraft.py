"""FGVC-Aircraft: variants.txt order defines the classes; split text files list "<id> <variant>"."""

from __future__ import annotations

import pytest

from stages.shared.errors import DatasetError
from stages.extract.datasets import open_dataset


def test_reads_miniature_of_real_layout(mini):
    lines = mini.aircraft()
    reader = open_dataset("fgvc_aircraft", mini.data)
    assert reader.classnames == ["707-320", "A300B4", "F/A-18", "Cessna 172"]
    assert reader.image_root == mini.data / "fgvc_aircraft" / "images"
    assert reader.splits == ("train", "val", "test")
    for split, rows in lines.items():
        items = reader.items(split)
        assert [i.relpath for i in items] == [f"{image_id}.jpg" for image_id, _ in rows]
        assert [reader.classnames[i.label] for i in items] == [variant for _, variant in rows]
        assert items[0].label == 3  # file order kept: the miniature lists the last variant first
    reader.validate()
    assert reader.load_image(reader.items("val")[0].relpath).mode == "RGB"


def test_dataset_folder_itself_and_blank_lines(mini):
    mini.aircraft()
    folder = mini.data / "fgvc_aircraft"
    (folder / "variants.txt").write_text("707-320\nA300B4\n\nF/A-18\nCessna 172\n\n")
    assert open_dataset("fgvc_aircraft", folder).classnames[3] == "Cessna 172"


def test_unknown_variant_names_file_and_line(mini):
    mini.aircraft()
    path = mini.data / "fgvc_aircraft" / "images_variant_val.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].split(" ")[0] + " Boeing 999"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=f"{path} line 3: variant 'Boeing 999' is not in variants.txt"):
        open_dataset("fgvc_aircraft", mini.data)


def test_line_without_variant(mini):
    mini.aircraft()
    path = mini.data / "fgvc_aircraft" / "images_variant_test.txt"
    path.write_text("1234567\n")
    with pytest.raises(DatasetError, match="line 1: no variant name after the image id"):
        open_dataset("fgvc_aircraft", mini.data)


def test_missing_split_file_named(mini):
    mini.aircraft()
    path = mini.data / "fgvc_aircraft" / "images_variant_train.txt"
    path.unlink()
    with pytest.raises(DatasetError, match=f"split file missing: {path} — download fgvc-aircraft-2013b"):
        open_dataset("fgvc_aircraft", mini.data)


def test_repeated_variant_rejected(mini):
    mini.aircraft()
    (mini.data / "fgvc_aircraft" / "variants.txt").write_text("707-320\nA300B4\n707-320\n")
    with pytest.raises(DatasetError, match="line 3: variant '707-320' listed twice"):
        open_dataset("fgvc_aircraft", mini.data)


def test_missing_image_is_reported_by_validate(mini):
    mini.aircraft()
    reader = open_dataset("fgvc_aircraft", mini.data)
    (reader.image_root / reader.items("test")[-1].relpath).unlink()
    with pytest.raises(DatasetError, match=r"fgvc_aircraft test item 7 .*missing file"):
        reader.validate()
