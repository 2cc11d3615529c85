"""What the commands print: progress lines that ``-q`` silences, and summaries that it keeps."""

from __future__ import annotations

from typing import Callable

import click


def quiet() -> bool:
    """Whether ``pipeline -q`` was given (False outside a click command, e.g. in tests calling stages)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("quiet"))


def progress_echo() -> Callable[[str], None]:
    """``click.echo`` for progress lines, or a function that drops them under ``-q`` (warnings use logging)."""
    if quiet():
        return lambda message: None
    return click.echo
