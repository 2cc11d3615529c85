"""``pipeline download``: fetch, verify and lay out benchmark datasets in the layout ``pipeline extract`` reads."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.failures import EXIT_INTERRUPTED
from pipeline.settings import DATA_ROOT_ENV, MANIFEST_ENV, MIRROR_ENV


@click.command(short_help="Fetch, verify and lay out benchmark datasets.")
@click.argument("datasets", nargs=-1, required=True)
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), envvar=DATA_ROOT_ENV, required=True,
              help=f"Folder that holds the dataset folders (CoOp's DATA layout) [env {DATA_ROOT_ENV}].")
@click.option("--mirror", "mirrors", multiple=True, metavar="URL", envvar=MIRROR_ENV,
              help=f"Look for every archive by its file name under URL (or a local folder) first; repeatable "
                   f"[env {MIRROR_ENV}, space-separated].")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), envvar=MANIFEST_ENV,
              help='JSON of the built-in manifest\'s form, overriding or adding entries, e.g. '
                   f'{{"dtd": {{"files": [{{"url": "...", "sha256": "..."}}]}}}} [env {MANIFEST_ENV}].')
@click.option("--keep-archives", is_flag=True, help="Keep the downloaded archives (under DATA/.pipeline-download/).")
@click.option("--dry-run", is_flag=True, help="Only say what would be fetched, its size and where it would go.")
def download(datasets, data_root, mirrors, manifest, keep_archives, dry_run) -> None:
    """Fetch, verify and lay out DATASETS (caltech101 dtd eurosat ... imagenet_r) under --data-root.

    Archives are checked against their published checksums before anything is unpacked, unpacked safely
    and arranged into the exact folders and split files `pipeline extract` reads. A dataset already in
    place is verified against its split file and not fetched again; an interrupted run resumes.
    Downloads and unpacking stop at size bounds; PIPELINE_DOWNLOAD_MAX_BYTES, PIPELINE_UNPACK_MAX_RATIO and
    PIPELINE_UNPACK_MAX_BYTES raise them for a source you trust (docs/datasets.md, Limits).
    ImageNet needs your own copy (the command says where to put it).

    \b
    Examples:
      pipeline download dtd eurosat --data-root ~/data
      pipeline download caltech101 --data-root ~/data --mirror https://lab.example.org/datasets
      pipeline download sun397 --data-root ~/data --dry-run
    """
    from stages.extract.download import DOWNLOADABLE, DownloadInterrupted, DownloadRequest
    from stages.extract.download import download as run_download

    unknown = [name for name in datasets if name not in DOWNLOADABLE]
    if unknown:
        raise click.BadParameter(f"unknown dataset '{unknown[0]}' (choose from {', '.join(DOWNLOADABLE)})",
                                 param_hint="'DATASETS'")

    request = DownloadRequest(datasets=tuple(datasets), data_root=data_root, manifest=manifest, mirrors=tuple(mirrors),
                              keep_archives=keep_archives, dry_run=dry_run)
    try:
        run_download(request, echo=click.echo)
    except DownloadInterrupted as exc:  # the stage names what it kept; the generic Ctrl-C line would not
        click.secho(f"error: interrupted; {exc}", fg="red", err=True)
        sys.exit(EXIT_INTERRUPTED)
