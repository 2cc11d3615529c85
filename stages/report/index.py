"""The report's index (``README.md`` in the output folder): what was read, what was written, conventions."""

from __future__ import annotations

import os
from pathlib import Path

from stages.shared.safe_io import atomic_write
from stages.report.groups import RANDOM_LABEL, Family
from stages.report.render import to_markdown
from stages.report.stats import STD_NOTE
from stages.report.table import Table


def _link(path: Path, out_dir: Path, text: str | None = None) -> str:
    rel = Path(os.path.relpath(path, out_dir)).as_posix()
    return f"[{text or rel}]({rel})"


def write_index(out_dir: Path, runs_dir: Path, *, n_records: int, skipped: list[Path], families: list[Family],
                tables: list[tuple[Table, dict[str, Path]]], plots: list[Path], plot_note: str | None) -> Path:
    """Write ``out_dir/README.md`` listing every table (with its formats) and plot; returns its path."""
    lines = ["# Report", "", f"Built from {n_records} run records under `{runs_dir}`; the report reads records "
             "only (no fitting, no encoding).", ""]
    random = [f.describe() for f in families if f.random_weights]
    if random:
        lines += [f"**{RANDOM_LABEL}:** {', '.join(random)}. These runs use randomly initialised encoders; "
                  "their numbers test the pipeline, not CLIP.", ""]
    headlines = [t for t, _ in tables if t.meta.get("kind") == "headline"]
    if headlines:
        lines += ["## Headline", ""]
        for table in headlines:  # the Markdown table itself, one level down
            lines += ["#" + to_markdown(table).rstrip("\n"), ""]
    paired = [t for t, _ in tables if t.meta.get("kind") == "paired"]
    if paired:
        lines += ["## CMM against each method (paired)", ""]
        lines += [line for table in paired for line in ("#" + to_markdown(table).rstrip("\n"), "")]
    lines += ["Conventions:", "", f"- {STD_NOTE}.",
              "- A cell lacking a seed that its run group has elsewhere is shown as — with a footnote and is "
              "never averaged; an Average is given only where every row has a complete cell.",
              "- Published numbers (copied from the anchors' repositories, sources in each table's notes) appear "
              "only for the same backbone, in their own columns or dashed curves, never inside measured means.",
              ""]
    if skipped:
        lines += [f"Skipped {len(skipped)} invalid or duplicate record(s):", ""]
        lines += [f"- `{p}`" for p in skipped] + [""]
    lines += ["## Tables", ""]
    for table, paths in tables:
        formats = " · ".join(_link(p, out_dir, fmt) for fmt, p in paths.items())
        lines.append(f"- {table.title} — {formats}")
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
