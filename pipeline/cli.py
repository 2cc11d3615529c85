"""The ``pipeline`` command: a click group whose subcommands live in ``pipeline/commands/``."""

from __future__ import annotations

import logging
import os
import sys

import click

from pipeline import __version__
from pipeline.commands import COMMANDS
from pipeline.failures import EXIT_INTERRUPTED, interrupted_line, os_error_line
from pipeline.hints import with_hint
from stages.shared.errors import UserError


# click >= 8.2 raises this for a group called without a command (8.1 prints the help itself and exits 0)
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """Lists commands in pipeline order; turns user errors, OS errors and Ctrl-C into one red line.

    Exit codes: 1 for user and environment failures, 2 for bad arguments (click), 130 for Ctrl-C.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def main(self, *args, **kwargs):
        """Click's own handling, except that a bad argument is one line too (click prints three), exit 2."""
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _NO_ARGS_IS_HELP as exc:  # `pipeline` alone: the help, laid out, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "pipeline"
            _say_error(f"{exc.format_message()} (see {where} --help)")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _say_error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort:
            _say_error(interrupted_line(None))
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _say_error(with_hint(exc, ctx.invoked_subcommand))
            from cache.errors import CacheWriteError  # loaded already whenever one was raised

            if isinstance(exc, CacheWriteError):  # skip HDF5's at-exit retry of the failed flush (it can crash)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            sys.exit(1)
        except OSError as exc:  # unwritable or missing folders, full disks: the environment, not a bug
            _say_error(os_error_line(exc))
            sys.exit(1)
        except KeyboardInterrupt:
            _say_error(interrupted_line(ctx.invoked_subcommand))
            sys.exit(EXIT_INTERRUPTED)


def _say_error(message: str) -> None:
    """The one place a failure reaches the user: one red line on stderr, whatever the message holds."""
    click.secho(f"error: {' '.join(str(message).split())}", fg="red", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pipeline")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and each command's closing summary.")
def cli(verbose: int, quiet: bool) -> None:
    """Few-shot CLIP classification with Cross-Modal Mapping, from a feature cache.

    \b
    0. pipeline download  fetch, verify and lay out the benchmark datasets (optional)
    1. pipeline extract   encode a dataset's images and class prompts once, into HDF5
    2. pipeline fit       train CMM and baselines on the cached features, per shots and seed
    3. pipeline report    turn run records into tables and plots
       pipeline predict   classify new images with a fitted run
       pipeline subsets   write CoOp's few-shot subsets as shareable JSON files
       pipeline info      show what a cache file holds

    \b
    Example (the embedded default, offline with random weights):
      pipeline extract --pretrained none
      pipeline fit --pretrained none --shots 1,2,4 --seeds 1,2,3
      pipeline report

    Errors are one line; exit code 1 for failures, 2 for bad arguments, 130 when interrupted (a rerun resumes).
    Run pipeline COMMAND --help for a command's options and examples.
    """
    ours = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    # third-party loggers (open_clip logs to the root logger) speak only with -v
    others = logging.WARNING if quiet or not verbose else ours
    logging.basicConfig(level=others, format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in ("pipeline", "stages", "cache"):
        logging.getLogger(name).setLevel(ours)
    for noisy in ("PIL", "matplotlib", "h5py", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(max(others, logging.WARNING))
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_said_twice)


def _not_said_twice(record: logging.LogRecord) -> bool:
    """Drop open_clip's 'initialized randomly' warning: stages.extract.models says it, as RANDOM WEIGHTS."""
    return not (record.name == "root" and str(record.msg).startswith("No pretrained weights loaded"))


for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pipeline")


if __name__ == "__main__":
    main()
