"""A format-neutral table: titled columns of typed cells, notes, and footnotes for missing cells."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence, TypeVar

from stages.report.stats import Cell, Missing, Stat, Value

T = TypeVar("T")


@dataclass(frozen=True)
class Column:
    """A column: ``kind`` is 'text' (labels), 'stat' (mean ± std over seeds) or 'value' (single numbers)."""

    name: str
    kind: str = "stat"
    digits: int = 2


@dataclass
class Table:
    """One table of the report; every renderer (md, csv, json, tex) reads this and nothing else."""

    name: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rule_before: set[int] = field(default_factory=set)  # row indices preceded by a horizontal rule
    meta: dict[str, Any] = field(default_factory=dict)
    best: str | None = None  # 'row' or 'column': bold the highest measured mean along each row / column

    def best_cells(self) -> set[tuple[int, int]]:
        """(row, column) of the best measured result ('stat' cells only, never published values) along each row
        or column, as ``best`` says; ties are all best; a line with fewer than two results has none."""
        if self.best not in ("row", "column"):
            return set()
        stat_columns = [j for j, c in enumerate(self.columns) if c.kind == "stat"]

        def mean(i: int, j: int) -> float | None:
            cell = self.rows[i][j]
            return round(cell.mean, self.columns[j].digits) if isinstance(cell, Stat) and cell.complete else None

        lines = ([[(i, j) for j in stat_columns] for i in range(len(self.rows))] if self.best == "row"
                 else [[(i, j) for i in range(len(self.rows))] for j in stat_columns])
        best: set[tuple[int, int]] = set()
        for line in lines:
            values = {ij: v for ij in line if (v := mean(*ij)) is not None}
            if len(values) >= 2:
                top = max(values.values())
                best |= {ij for ij, v in values.items() if v == top}
        return best

    def row_label(self, row: list[Cell]) -> str:
        """The row's text cells joined, to name it in a footnote ('dtd', 'imagenet / cmm / 16')."""
        parts = [str(c) for c, col in zip(row, self.columns) if col.kind == "text" and c not in (None, "")]
        return " / ".join(parts)

    def footnotes(self) -> dict[tuple[int, int], tuple[int, str]]:
        """(row, column) -> (number, text) for every cell shown as missing for a reason, in reading order."""
        notes: dict[tuple[int, int], tuple[int, str]] = {}
        for i, row in enumerate(self.rows):
            for j, cell in enumerate(row):
                text = None
                if isinstance(cell, Missing):
                    text = cell.note
                elif isinstance(cell, Stat) and not cell.empty and not cell.complete:
                    text = f"{self.row_label(row)}, {self.columns[j].name}: {cell.shortfall()}"
                if text is not None:
                    notes[(i, j)] = (len(notes) + 1, text)
        return notes


def format_number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def cell_text(cell: Cell, column: Column, plus_minus: str = "±") -> str | None:
    """Display text of a cell that has a value, or None when it is shown as missing ('—')."""
    if isinstance(cell, Stat):
        if not cell.complete:
            return None
        mean = format_number(cell.mean, column.digits)
        if len(cell.values) == 1:
            return mean
        return f"{mean} {plus_minus} {format_number(cell.std, column.digits)}"
    if isinstance(cell, Value):
        return format_number(cell.value, column.digits)
    if isinstance(cell, Missing) or cell is None:
        return None
    return str(cell)


def split_evenly(items: Sequence[T], n: int) -> list[list[T]]:
    """``items`` in order in ``n`` parts whose sizes differ by at most one (the first parts the larger)."""
    size, extra = divmod(len(items), n)
    parts, start = [], 0
    for k in range(n):
        end = start + size + (k < extra)
        parts.append(list(items[start:end]))
        start = end
    return parts
