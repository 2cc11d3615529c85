"""The ``pipeline`` command: a click group whose subcommands live in ``pipeline/commands/``."""

from __future__ import annotations

import logging
import os
import sys

import click

from pipeline import __version__
from pipeline.commands import COMMANDS
from pipeline.hints import with_hint
from stages.shared.errors import UserError


class _Group(click.Group):
    """Lists commands in pipeline order; turns user errors into one red line and exit code 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            message = " ".join(with_hint(exc, ctx.invoked_subcommand).split())  # one line, whatever the cause
            click.secho(f"error: {message}", fg="red", err=True)
            from cache.errors import CacheWriteError  # loaded already whenever one was raised

            if isinstance(exc, CacheWriteError):  # skip HDF5's at-exit retry of the failed flush (it can crash)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pipeline")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Few-shot CLIP classification with Cross-Modal Mapping, from a feature cache.

    \b
    0. pipeline download  fetch, verify and lay out the benchmark datasets (optional)
    1. pipeline extract   encode a dataset's images and class prompts once, into HDF5
    2. pipeline fit       train CMM and baselines on the cached features, per shots and seed
    3. pipeline report    turn run records into tables and plots
    """
    ours = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    # third-party loggers (open_clip logs to the root logger) speak only with -v
    others = logging.WARNING if quiet or not verbose else ours
    logging.basicConfig(level=others, format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in ("pipeline", "stages", "cache"):
        logging.getLogger(name).setLevel(ours)
    for noisy in ("PIL", "matplotlib", "h5py", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(max(others, logging.WARNING))


for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pipeline")


if __name__ == "__main__":
    main()
