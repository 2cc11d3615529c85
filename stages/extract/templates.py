"""Prompt templates: the named sets the anchors use, a user's own file, and prompt formatting.

Sets (``TEMPLATE_SETS``):
- "coop": CoOp's one CUSTOM_TEMPLATE per dataset (Tip-Adapter, APE, LP++, CLAP); ImageNet shifts use
  ImageNet's; ``digits`` uses CLIP's MNIST prompt; every other dataset (``folder`` ...) "a photo of a {}.";
- "imagenet7": Tip-Adapter/APE's 7 ImageNet templates; "imagenet8": CLAP's, those 7 + "a photo of a {}.";
- "openai80": open_clip's 80 OpenAI ImageNet templates;
- "file:<path>": one template per line of a UTF-8 text file (blank lines skipped), each holding ``{}``
  exactly once and no other brace.
Templates are ``str.format`` strings with one ``{}`` for the class name.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from stages.shared.errors import DatasetError

PHOTO = "a photo of a {}."
COOP_TEMPLATES: dict[str, str] = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": PHOTO,
    "sun397": PHOTO,
    "caltech101": PHOTO,
    "imagenet": PHOTO,
    "imagenet_v2": PHOTO,
    "imagenet_sketch": PHOTO,
    "imagenet_a": PHOTO,
    "imagenet_r": PHOTO,
    "food101": "a photo of {}, a type of food.",
    "ucf101": "a photo of a person doing {}.",
    "digits": 'a photo of the number: "{}".',
}
IMAGENET7: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
IMAGENET8: tuple[str, ...] = IMAGENET7 + (PHOTO,)
TEMPLATE_SETS: tuple[str, ...] = ("coop", "imagenet7", "imagenet8", "openai80")
FILE_PREFIX = "file:"


def templates_for(dataset_key: str, template_set: str) -> list[str]:
    """The templates of ``template_set`` (a name in TEMPLATE_SETS or "file:<path>") for ``dataset_key``."""
    if template_set == "coop":
        return [COOP_TEMPLATES.get(dataset_key, PHOTO)]
    if template_set == "imagenet7":
        return list(IMAGENET7)
    if template_set == "imagenet8":
        return list(IMAGENET8)
    if template_set == "openai80":
        return list(openai80())
    if template_set.startswith(FILE_PREFIX):
        return read_template_file(Path(template_set[len(FILE_PREFIX):]).expanduser())
    raise DatasetError(f"unknown template set {template_set!r}; choose one of {', '.join(TEMPLATE_SETS)} "
                       "or file:<path to a text file with one template per line>")


@cache
def openai80() -> tuple[str, ...]:
    """open_clip's 80 OpenAI ImageNet templates as format strings (open_clip stores most as lambdas)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # imports torch: only when asked

    return tuple(t("{}") if callable(t) else t for t in OPENAI_IMAGENET_TEMPLATES)


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a one-slot format string, or None."""
    if template.count("{}") != 1:
        return f"must contain {{}} exactly once (found {template.count('{}')})"
    if "{" in template.replace("{}", "", 1) or "}" in template.replace("{}", "", 1):
        return "must contain no brace other than the one {}"
    return None


def read_template_file(path: Path) -> list[str]:
    """The templates of a user's text file, one per non-blank line, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read template file {path} ({exc}); give an existing UTF-8 text file") from None
    templates = []
    for number, line in enumerate(text.splitlines(), 1):
        template = line.strip()
        if not template:
            continue
        problem = template_problem(template)
        if problem:
            raise DatasetError(f"template file {path} line {number}: {template!r} {problem}; fix the line")
        templates.append(template)
    if not templates:
        raise DatasetError(f"template file {path} holds no templates; write one template with {{}} per line")
    return templates


def format_prompts(templates: list[str], classnames: list[str]) -> list[list[str]]:
    """Prompts as a C x L list: ``prompts[c][l] = templates[l]`` filled with ``classnames[c]``."""
    return [[template.format(name) for template in templates] for name in classnames]
