"""The report's index (``README.md`` in the output folder): what was read, what was written, conventions.

Every name and path in it goes through stages.report.escape: nothing read from a record or a folder name can
add a heading, a row or a line.
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.shared.safe_io import atomic_write
from stages.report.escape import markdown_text
from stages.report.groups import RANDOM_LABEL, Family
from stages.report.render import to_markdown
from stages.report.stats import STD_NOTE
from stages.report.table import Table
from stages.report.versions import describe_set, mixed_warning

# index sections that show tables in full: (heading, the meta kind of the tables shown under it)
SHOWN = (("Headline", "headline"), ("CMM against each method (paired)", "paired"), ("CMM ablations", "ablations_summary"),
         ("Method variants", "variants_summary"))


def _link(path: Path, out_dir: Path, text: str | None = None) -> str:
    rel = Path(os.path.relpath(path, out_dir)).as_posix()  # report file names are safe (stages.shared.naming)
    return f"[{markdown_text(text or rel)}]({rel})"


def write_index(out_dir: Path, runs_dir: Path, *, n_records: int, skipped: list[Path], families: list[Family],
                tables: list[tuple[Table, dict[str, Path]]], plots: list[Path], plot_note: str | None,
                versions: list[tuple[dict[str, str], int]]) -> Path:
    """Write ``out_dir/README.md``: the summary tables in full, conventions, the package versions of the records
    (one line per distinct set), then every table (with its formats) and plot; returns its path."""
    lines = ["# Report", "", f"Built from {n_records} run records under {markdown_text(runs_dir)}; the report reads "
             "records only (no fitting, no encoding).", ""]
    random = [f.describe() for f in families if f.random_weights]
    if random:
        lines += [f"**{RANDOM_LABEL}:** {markdown_text(', '.join(random))}. These runs use randomly initialised "
                  "encoders; their numbers test the pipeline, not CLIP.", ""]
    for heading, kind in SHOWN:
        shown = [t for t, _ in tables if t.meta.get("kind") == kind]
        if shown:
            lines += [f"## {heading}", ""]
            for table in shown:  # the Markdown table itself, one level down
                lines += ["#" + to_markdown(table).rstrip("\n"), ""]
    lines += ["Conventions:", "", f"- {STD_NOTE}.",
              "- A cell lacking a seed that its run group has elsewhere is shown as — with a footnote and is "
              "never averaged; an Average is given only where every row has a complete cell.",
              "- Main tables hold the methods at their defaults; CMM's ablations and other methods' variants "
              "(augmented views, template sets) have tables and plots of their own.",
              "- Published numbers (copied from the anchors' repositories, sources in each table's notes) appear "
              "only for the same backbone, in their own rows or dashed curves, never inside measured means.",
              ""]
    lines += ["## Versions", "", "Package versions the records were made with (from each record):", ""]
    lines += [f"- {markdown_text(describe_set(v))}: {n} record{'' if n == 1 else 's'}" for v, n in versions]
    if (warning := mixed_warning(versions)) is not None:
        lines += ["", f"**Warning:** {markdown_text(warning)}."]
    lines.append("")
    if skipped:
        lines += [f"Skipped {len(skipped)} invalid or duplicate record(s):", ""]
        lines += [f"- {markdown_text(p)}" for p in skipped] + [""]
    lines += ["## Tables", ""]
    for table, paths in tables:
        formats = " · ".join(_link(p, out_dir, fmt) for fmt, p in paths.items())
        lines.append(f"- {markdown_text(table.title)} — {formats}")
    lines += ["", "## Plots", ""]
    if plot_note:
        lines.append(plot_note)
    pngs = [p for p in plots if p.suffix == ".png"]
    for png in pngs:
        svg = png.with_name(png.name[: -len(".png")] + ".svg")
        extra = f" ({_link(svg, out_dir, 'svg')})" if svg in plots else ""
        lines.append(f"- {_link(png, out_dir, png.name)}{extra}")
    if not pngs and not plot_note:
        lines.append("No plots were written.")
    return atomic_write(index_path(out_dir), "\n".join(lines) + "\n")


def index_path(out_dir: Path) -> Path:
    """The index: removed when a report starts and written last, so it exists only for a complete report."""
    return out_dir / "README.md"
