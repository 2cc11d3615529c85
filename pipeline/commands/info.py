"""``pipeline info``: what a cache file holds."""

from __future__ import annotations

from pathlib import Path

import click

from cache import CacheReader
from cache.reader import incomplete_arrays


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
    click.echo(f"schema:  {attrs.get('format')} v{attrs.get('schema_version')}")
    for name in ("dataset", "model", "weights", "created"):
        if name in attrs:
            click.echo(f"{name + ':':<9}{attrs[name]}")
    if attrs.get("random_weights"):
        click.secho("weights: RANDOM (--pretrained none): features are not CLIP features", fg="yellow")
    click.echo(f"key:     {reader.key}")
    for name, value in sorted(reader.key_fields.items()):
        click.echo(f"  {name} = {value}")
    click.echo("arrays:")
    for name, shape, dtype in reader.datasets():
        click.echo(f"  {name:<36} {dtype:<8} {'x'.join(map(str, shape)) or 'scalar'}")
    missing = incomplete_arrays(reader.file)
    click.echo("complete: yes" if not missing else f"complete: NO (unfinished: {', '.join(missing)})")
