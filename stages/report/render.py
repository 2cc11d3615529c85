"""Writing a Table as Markdown, CSV (tidy numbers), JSON (everything, per seed) and LaTeX (booktabs: latex.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable

from stages.shared.safe_io import atomic_write
from stages.report.escape import csv_cell, markdown_text
from stages.report.latex import to_latex
from stages.report.stats import Missing, Stat, Value
from stages.report.table import Table, cell_text

MISSING = "—"
FORMATS = ("md", "csv", "json", "tex")


def to_markdown(table: Table) -> str:
    """A '###' title, a pipe table, footnotes for missing cells, then the notes; every text escaped
    (stages.report.escape), so no value can add a line, a row or a cell."""
    marks = table.footnotes()
    best = table.best_cells()
    lines = [f"### {markdown_text(table.title)}", ""]
    lines.append("| " + " | ".join(markdown_text(c.name) for c in table.columns) + " |")
    lines.append("|" + "|".join(":---" if c.kind == "text" else "---:" for c in table.columns) + "|")
    for i, row in enumerate(table.rows):
        texts = []
        for j, (cell, col) in enumerate(zip(row, table.columns)):
            text = cell_text(cell, col)
            if text is None:
                texts.append(MISSING + (f"[{marks[(i, j)][0]}]" if (i, j) in marks else ""))
            else:
                texts.append(f"**{markdown_text(text)}**" if (i, j) in best else markdown_text(text))
        lines.append("| " + " | ".join(texts) + " |")
    footer = [f"[{n}] {markdown_text(text)}" for n, text in sorted(marks.values())]
    footer += [markdown_text(n) for n in table.notes]
    if footer:
        lines.append("")
        lines.extend(f"- {line}" for line in footer)
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Numbers only: a 'stat' column becomes '<name> mean' and '<name> std'; missing cells are empty; text cells
    never start a spreadsheet formula (escape.csv_cell)."""
    header: list[str] = []
    for col in table.columns:
        header += [f"{col.name} mean", f"{col.name} std"] if col.kind == "stat" else [col.name]
    header = [csv_cell(h) for h in header]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        fields: list[Any] = []
        for cell, col in zip(row, table.columns):
            if col.kind == "stat":
                complete = isinstance(cell, Stat) and cell.complete
                fields += [repr(round(cell.mean, 6)), repr(round(cell.std, 6))] if complete else ["", ""]
            elif isinstance(cell, Value):
                fields.append(repr(cell.value))
            else:
                fields.append("" if cell is None or isinstance(cell, (Missing, Stat)) else csv_cell(cell))
        writer.writerow(fields)
    return out.getvalue()


def _cell_json(cell: Any) -> Any:
    if isinstance(cell, Stat):
        return {"mean": cell.mean, "std": cell.std, "n": len(cell.values), "complete": cell.complete,
                "seeds": list(cell.seeds), "expected_seeds": list(cell.expected),
                "values": {str(s): cell.values[s] for s in cell.seeds}}
    if isinstance(cell, Value):
        return {"value": cell.value}
    if isinstance(cell, Missing):
        return {"missing": cell.note}
    return cell


def to_json(table: Table) -> str:
    """The table with every cell's per-seed values; incomplete cells keep their values but no mean."""
    marks = table.footnotes()
    best = table.best_cells()
    rows = []
    for i, row in enumerate(table.rows):
        entry = {}
        for j, (cell, col) in enumerate(zip(row, table.columns)):
            value = _cell_json(cell)
            if (i, j) in marks and isinstance(value, dict):
                value = {**value, "note": marks[(i, j)][1]}
            if (i, j) in best and isinstance(value, dict):
                value = {**value, "best": True}
            entry[col.name] = value
        rows.append(entry)
    doc = {"name": table.name, "title": table.title, "meta": table.meta,
           "columns": [{"name": c.name, "kind": c.kind} for c in table.columns], "rows": rows,
           "notes": [text for _, text in sorted(marks.values())] + list(table.notes)}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


RENDERERS: dict[str, Callable[[Table], str]] = {"md": to_markdown, "csv": to_csv, "json": to_json,
                                                "tex": to_latex}


def write_table(table: Table, directory: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """Write ``<directory>/<table.name>.<fmt>`` for each format; returns format -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        path = directory / f"{table.name}.{fmt}"
        atomic_write(path, RENDERERS[fmt](table))  # never a half-written table, even when killed
        written[fmt] = path
    return written
