"""``build_report``: run records in, tables (md/csv/json/tex), plots (png/svg) and an index out."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from stages.shared.errors import ReportError
from stages.report.groups import Family, group_records
from stages.report.index import index_path, write_index
from stages.report.plot_common import have_matplotlib
from stages.report.paired import paired_table
from stages.report.published import PublishedSeries, load_published
from stages.report.records import load_records
from stages.shared.record import RECORD_GLOB
from stages.report.render import FORMATS, write_table
from stages.report.table import Table
from stages.report.style import METRICS
from stages.report.versions import mixed_warning, version_sets
from stages.report.sections import choose, sections
from stages.report.tables_accuracy import method_table, section_shots, shots_table, summary_table
from stages.report.tables_gap import gap_table
from stages.report.tables_hparams import hparams_table
from stages.report.tables_shift import shift_table


def build_tables(families: list[Family], published: list[PublishedSeries]) -> list[Table]:
    """Every table, family by family: the summaries (main methods x shots averaged over datasets: the headline;
    CMM's ablations; other variants), CMM's paired differences, each section at each shot count, per-run-group
    accuracy, shift, gap, hyper-params."""
    tables: list[Table] = []
    for family in families:
        parts = sections(family)
        tables += [t for section, blocks in parts.items() if (t := summary_table(family, section, blocks)) is not None]
        tables += [t for t in (paired_table(family),) if t is not None]
        tables += [t for section, blocks in parts.items() for k in section_shots(blocks)
                   if (t := shots_table(family, section, blocks, k, published)) is not None]
        tables += [method_table(g) for g in family.groups]
        tables += [t for t in (shift_table(family), gap_table(family)) if t is not None]
        tables += [t for g in family.groups if (t := hparams_table(g)) is not None]
    return tables


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown table format {', '.join(map(repr, unknown))}: choose from {', '.join(FORMATS)}")
    return chosen


def _plots(families: list[Family], published: list[PublishedSeries], out_dir: Path,
           warn: Callable[[str], None], bands: bool = True) -> list[Path]:
    from stages.report.plot_curves import accuracy_plots
    from stages.report.plot_gap import gap_plots

    paths: list[Path] = []
    for family in families:
        paths += accuracy_plots(family, published, out_dir, bands)
        paths += gap_plots(family, out_dir, warn)
    return paths


def _not_written(out_dir: Path, written: dict[str, list[Path]]) -> list[Path]:
    """Files in the report's tables/ and plots/ folders that this report did not write (never deleted here:
    they may be a user's)."""
    ours = {path.resolve() for paths in written.values() for path in paths}
    return sorted(path for folder in ("tables", "plots") if (out_dir / folder).is_dir()
                  for path in (out_dir / folder).iterdir() if path.is_file() and path.resolve() not in ours)


def build_report(runs_dir: Path, out_dir: Path, *, formats: Iterable[str] = FORMATS, plots: bool = True,
                 published: bool = True, metric: str = "top1", bands: bool = True,
                 methods: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
                 progress: Callable[[str], None] = print) -> dict[str, list[Path]]:
    """Read every run record under ``runs_dir`` and write the report into ``out_dir``.

    ``metric`` (top1, top5, mean_per_class) is what the accuracy tables and plots show; ``bands`` draws the
    ± std bands in the accuracy plots (stages.report.plot_curves says when); ``methods`` / ``exclude`` choose
    the run labels that go in (stages.report.sections.choose).

    Invalid or duplicate records are skipped with a warning through ``progress``; no valid record at all
    raises ReportError. Returns the written paths by kind: each table format, 'png', 'svg' and 'index'.
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    formats = _check_formats(formats)
    if metric not in METRICS:
        raise ReportError(f"unknown metric '{metric}': choose from {', '.join(METRICS)}")
    if not runs_dir.is_dir():
        raise ReportError(f"runs folder {runs_dir} does not exist: pass the RUNS folder that `pipeline fit` wrote")
    records, skipped = load_records(runs_dir, progress)
    if not records:
        bad = f" ({len(skipped)} invalid, see the warnings above)" if skipped else ""
        raise ReportError(f"no valid run records ({RECORD_GLOB}) under {runs_dir}{bad}: run `pipeline fit` "
                          f"first or point the report at the folder it wrote")
    records = choose(records, methods, exclude)
    versions = version_sets(records)
    if (mixed := mixed_warning(versions)) is not None:
        progress(f"warning: {mixed}")
    families = group_records(records, metric)
    series = load_published() if published else []
    written: dict[str, list[Path]] = {fmt: [] for fmt in formats} | {"png": [], "svg": [], "index": []}

    tables = build_tables(families, series)
    index_path(out_dir).unlink(missing_ok=True)  # a report killed from here on leaves no index that lies
    table_paths = []
    for table in tables:
        paths = write_table(table, out_dir / "tables", formats)
        table_paths.append((table, paths))
        for fmt, path in paths.items():
            written[fmt].append(path)

    plot_paths: list[Path] = []
    plot_note = None
    if plots and have_matplotlib():
        plot_paths = _plots(families, series, out_dir / "plots", progress, bands)
    elif plots:
        plot_note = "matplotlib is not installed: plots skipped (install the 'plots' extra); tables are complete"
        progress(f"note: {plot_note}")
    for path in plot_paths:
        written[path.suffix.lstrip(".")].append(path)

    index = write_index(out_dir, runs_dir, n_records=len(records), skipped=skipped, families=families,
                        tables=table_paths, plots=plot_paths, plot_note=plot_note, versions=versions)
    written["index"].append(index)
    if stale := _not_written(out_dir, written):
        progress(f"note: {len(stale)} files under {out_dir} are not this report's (an earlier report's, e.g. "
                 f"{stale[0].relative_to(out_dir)}) and the index does not list them: remove them, or write the "
                 f"report to a new --out folder")
    progress(f"report: {len(records)} records -> {len(tables)} tables, {len(written['png'])} plots; "
             f"index {index}")
    return written
