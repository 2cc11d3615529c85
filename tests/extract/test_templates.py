"""Prompt template sets, user template files, and prompt formatting."""

from __future__ import annotations

import pytest

from stages.shared.errors import DatasetError
from stages.extract.datasets import DATASETS
from stages.extract.templates import TEMPLATE_SETS, format_prompts, templates_for

PROTOCOL_TABLE = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "imagenet": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "ucf101": "a photo of a person doing {}.",
}


@pytest.mark.parametrize("key", sorted(PROTOCOL_TABLE))
def test_coop_templates_match_protocol(key):
    assert templates_for(key, "coop") == [PROTOCOL_TABLE[key]]


def test_coop_for_shifts_digits_and_others():
    for key in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r", "folder", "anything"):
        assert templates_for(key, "coop") == ["a photo of a {}."]
    assert templates_for("digits", "coop") == ['a photo of the number: "{}".']
    assert all(len(templates_for(key, "coop")) == 1 for key in DATASETS)


def test_imagenet_ensembles():
    seven = templates_for("imagenet", "imagenet7")
    assert seven[0] == "itap of a {}." and seven[-1] == "a photo of the small {}." and len(seven) == 7
    assert templates_for("dtd", "imagenet8") == seven + ["a photo of a {}."]


def test_openai80_are_format_strings():
    templates = templates_for("imagenet", "openai80")
    assert len(templates) == 80 == len(set(templates))
    assert templates[0] == "a bad photo of a {}."
    assert all(t.count("{}") == 1 for t in templates)
    assert set(TEMPLATE_SETS) == {"coop", "imagenet7", "imagenet8", "openai80"}


def test_template_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("a drawing of a {}.\n\n  {} in the wild.  \n")
    assert templates_for("dtd", f"file:{path}") == ["a drawing of a {}.", "{} in the wild."]


@pytest.mark.parametrize("line, message", [
    ("no slot here.", r"must contain \{\} exactly once \(found 0\)"),
    ("{} and {}", r"found 2"),
    ("a {} of {kind}", "no brace other than"),
    ("a {0} thing {}", "no brace other than"),
])
def test_template_file_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"a photo of a {{}}.\n{line}\n")
    with pytest.raises(DatasetError, match=f"template file {path} line 2: .*{message}"):
        templates_for("dtd", f"file:{path}")


def test_template_file_missing_or_empty(tmp_path):
    with pytest.raises(DatasetError, match="cannot read template file"):
        templates_for("dtd", f"file:{tmp_path / 'absent.txt'}")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(DatasetError, match="holds no templates"):
        templates_for("dtd", f"file:{tmp_path / 'empty.txt'}")


def test_unknown_set():
    with pytest.raises(DatasetError, match="unknown template set 'imagenet9'"):
        templates_for("dtd", "imagenet9")


def test_format_prompts_is_classes_by_templates():
    prompts = format_prompts(["a {}.", "{} texture."], ["banded", "curly {brace}"])
    assert prompts == [["a banded.", "banded texture."], ["a curly {brace}.", "curly {brace} texture."]]
