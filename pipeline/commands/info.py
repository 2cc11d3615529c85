"""``pipeline info``: what a cache file holds."""

from __future__ import annotations

from pathlib import Path

import click

from cache import CacheReader
from cache.reader import incomplete_arrays
from stages.shared.naming import model_name


@click.command(short_help="Show what a cache file holds.")
@click.argument("cache_file", type=click.Path(dir_okay=False, path_type=Path))
def info(cache_file: Path) -> None:
    """Print a cache file's key, datasets with shapes and dtypes, template sets and completeness.

    \b
    Example:
      pipeline info work_dir/cache/dtd/ViT-B-16__openai.h5
    """
    reader = CacheReader(cache_file, require_complete=False)
    attrs = reader.attrs
    click.echo(f"file:    {cache_file}")
    click.echo(f"schema:  {_text(attrs.get('format'))} v{_text(attrs.get('schema_version'))}")
    for name in ("dataset", "model", "weights", "created"):
        if name in attrs:
            click.echo(f"{name + ':':<9}{_text(attrs[name])}")
    if "model" in attrs and "weights" in attrs:
        name = _text(model_name(str(attrs["model"]), str(attrs["weights"])))
        click.echo(f"name:    {name}  (runs and report files use it)")
    if attrs.get("random_weights"):
        click.secho("weights: RANDOM (--pretrained none): features are not CLIP features", fg="yellow")
    click.echo(f"decoder: {_decoder(attrs, reader.key_fields)}")
    click.echo(f"key:     {_text(reader.key)}")
    for name, value in sorted(reader.key_fields.items()):
        click.echo(f"  {_text(name)} = {_text(value)}")
    click.echo("arrays:")
    for name, shape, dtype in reader.datasets():
        click.echo(f"  {name:<36} {dtype:<8} {'x'.join(map(str, shape)) or 'scalar'}")
    _skipped(cache_file, reader)
    missing = incomplete_arrays(reader.file)
    click.echo("complete: yes" if not missing else f"complete: NO (unfinished: {', '.join(missing)})")


def _decoder(attrs: dict, key_fields: dict) -> str:
    """How the images were decoded: the provenance line, else the key's ``decode`` field (absent: Pillow)."""
    if "decoder" in attrs:
        return _text(attrs["decoder"])
    return _text(key_fields.get("decode", "pil"))


def _skipped(cache_file: Path, reader: CacheReader) -> None:
    """List the images skipped as unreadable (--skip-bad), per split, when the cache is complete."""
    from cache import FeatureCache

    if reader.incomplete():
        return
    cache = FeatureCache(cache_file)
    for split in cache.splits:
        paths = cache.skipped_paths(split)
        if paths:
            click.echo(f"skipped: {len(paths)} unreadable {split} image(s)")
            for path in paths:
                click.echo(f"  {_text(path, 1000)}")


def _text(value: object, limit: int = 200) -> str:
    """An attribute as printable text: undecodable bytes escaped, long values cut (a crafted file can hold both)."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."
