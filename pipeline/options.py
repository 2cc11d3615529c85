"""Parsing helpers shared by the subcommands: comma lists and integer lists with clear errors."""

from __future__ import annotations

import click


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """'1,2,4' -> (1, 2, 4); a bad item is a usage error (exit 2) naming the option and the value."""
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers") from None
    if not items:
        raise click.BadParameter("give at least one integer")
    return items


def positive_int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    items = int_list(ctx, param, value)
    if items is not None and min(items) < 1:
        raise click.BadParameter(f"every value must be >= 1, got {value}")
    return items


def name_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("give at least one name")
    return items


def torch_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """'auto', 'cpu', 'cuda', 'cuda:1', ...: a malformed device is a usage error (exit 2).

    Whether the device exists is checked when the command runs (pipeline.failures.check_device, exit 1).
    """
    if value is None or value == "auto":
        return value
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"'{value}' is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    return value
