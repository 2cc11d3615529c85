"""``pipeline report``: stage three, run records -> tables and plots."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.settings import RUNS_DIR_ENV, default_runs_dir
from stages.report.render import FORMATS


@click.command(short_help="Write result tables and plots from run records.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), envvar=RUNS_DIR_ENV,
              default=default_runs_dir, show_default=f"work_dir/runs, env {RUNS_DIR_ENV}",
              help="Where pipeline fit wrote its run records.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: <runs-dir>/../report).")
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS), default=FORMATS,
              show_default=True, help="Table formats (repeat the option for several).")
@click.option("--no-plots", is_flag=True, help="Tables only (plots need matplotlib).")
@click.option("--no-published", is_flag=True, help="Leave out the published reference numbers.")
@click.option("--metric", default="top1", show_default=True, type=click.Choice(["top1", "top5", "mean_per_class"]),
              help="What the accuracy tables and plots show: top-1, top-5 (datasets with >= 5 classes) or mean "
                   "per-class accuracy.")
@click.option("--no-bands", is_flag=True, help="Draw the accuracy curves without their ± std bands (bands are "
              "drawn only in figures of at most 4 curves anyway).")
@click.option("--methods", "methods", multiple=True, metavar="LIST",
              help="Report only these runs: comma-separated run labels (cmm+no_triplet), method names (tip_adapter: "
                   "the method and all its variants) or patterns ('cmm+*'). Default: every run.")
@click.option("--exclude", "exclude", multiple=True, metavar="LIST",
              help="Leave these runs out (same forms as --methods), e.g. --exclude 'cmm+*' for no ablations.")
def report(runs_dir: Path, out_dir: Path | None, formats: tuple[str, ...], no_plots: bool, no_published: bool,
           metric: str, no_bands: bool, methods: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Write result tables (Markdown, CSV, JSON, LaTeX) and plots from run records.

    Reads records only: it never re-fits or re-encodes. Means and stds are over seeds; a cell with a
    missing seed is shown as missing, not averaged. The main tables hold the methods at their defaults (one
    column per dataset and the average, one table per shot count); CMM's ablations and other variants get
    tables and plots of their own. The index (README.md) opens with the headline table (methods x shots,
    averaged over datasets) and lists the package versions of the records.

    \b
    Examples:
      pipeline report --runs-dir work_dir/runs --out work_dir/report
      pipeline report --metric mean_per_class --no-bands --format md --format tex
      pipeline report --methods cmm,zero_shot,tip_adapter_f --exclude cmm+val_search
    """
    from stages.report import build_report

    from pipeline.failures import check_writable_dir

    out_dir = out_dir or runs_dir.parent / "report"
    check_writable_dir(out_dir, "--out")
    written = build_report(runs_dir, out_dir, formats=formats, plots=not no_plots, published=not no_published,
                           metric=metric, bands=not no_bands, methods=_items(methods), exclude=_items(exclude),
                           progress=click.echo)
    count = sum(len(paths) for paths in written.values())
    click.echo(f"wrote {count} files under {out_dir} (index: {out_dir / 'README.md'})")


def _items(values: tuple[str, ...]) -> list[str]:
    """The items of comma-separated, possibly repeated options: ('cmm,gda', 'lp_pp') -> ['cmm', 'gda', 'lp_pp']."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]
