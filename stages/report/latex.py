"""LaTeX tables in the style of the papers (booktabs, mean with a small ± std), sized to fit a page.

The width rule: a table's natural width is estimated from the longest text of each column (``PT_PER_CHAR``
per character at 10 pt, ``SMALL_PT_PER_CHAR`` for the \\scriptsize std, ``COLUMN_GAP_PT`` of \\tabcolsep per
column) and compared with ``TEXT_WIDTH_PT``, the text width of a NeurIPS/ICLR page (the narrowest common one;
CVPR's two-column \\textwidth is 496.8 pt):

- it fits: the tabular is set at its natural size;
- it fits when scaled by at least ``MIN_SCALE`` (10 pt type no smaller than 7 pt, \\scriptsize, the smallest
  a paper's table uses): the tabular is wrapped in ``\\resizebox{\\linewidth}{!}{...}``;
- else its result columns are split, in order, into the fewest parts of balanced size (counts differ by at
  most one) that each fit at ``MIN_SCALE`` with the leading label columns repeated; every part is a tabular
  of its own in the same float, resized as above when wider than the page. A single column wider than
  that still gets a part of its own, resized below ``MIN_SCALE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stages.report.escape import latex_escape
from stages.report.stats import Stat
from stages.report.table import Column, Table, cell_text, format_number, split_evenly

TEXT_WIDTH_PT = 397.0
MIN_SCALE = 0.7
PT_PER_CHAR = 5.5        # 10 pt Computer Modern: digits are 5 pt, capitals up to 7.5 pt, bold digits 5.75 pt
SMALL_PT_PER_CHAR = 3.9  # \scriptsize (7 pt)
COLUMN_GAP_PT = 12.0     # 2 x \tabcolsep (6 pt)


@dataclass(frozen=True)
class Part:
    """One tabular of a table: the indices of its columns (label columns first) and how it is set."""

    columns: tuple[int, ...]
    width_pt: float  # estimated natural width

    @property
    def resized(self) -> bool:
        return self.width_pt > TEXT_WIDTH_PT

    @property
    def scale(self) -> float:
        return min(1.0, TEXT_WIDTH_PT / self.width_pt)


def _stat_text(cell: Stat, column: Column) -> tuple[str, str]:
    """(mean, std) as shown: the std part is empty for a single seed."""
    mean = format_number(cell.mean, column.digits)
    std = "" if len(cell.values) == 1 else format_number(cell.std, column.digits)
    return mean, std


def cell_latex(table: Table, i: int, j: int, marks: dict, best: set) -> str:
    """One cell: '61.00\\,{\\scriptsize$\\pm$0.82}' (the mean in bold when best), '---' with its footnote mark
    when missing, escaped text otherwise."""
    cell, column = table.rows[i][j], table.columns[j]
    if isinstance(cell, Stat) and cell.complete:
        mean, std = _stat_text(cell, column)
        mean = rf"\textbf{{{mean}}}" if (i, j) in best else mean
        return mean + (rf"\,{{\scriptsize$\pm${std}}}" if std else "")
    text = cell_text(cell, column)
    if text is None:
        return "---" + (rf"\textsuperscript{{{marks[(i, j)][0]}}}" if (i, j) in marks else "")
    return rf"\textbf{{{latex_escape(text)}}}" if (i, j) in best else latex_escape(text)


def cell_width(table: Table, i: int | None, j: int) -> float:
    """Estimated natural width (pt) of a cell's text; ``i`` None for the header."""
    column = table.columns[j]
    if i is None:
        return len(column.name) * PT_PER_CHAR
    cell = table.rows[i][j]
    if isinstance(cell, Stat) and cell.complete:
        mean, std = _stat_text(cell, column)
        return len(mean) * PT_PER_CHAR + (len(std) + 1) * SMALL_PT_PER_CHAR + (2.0 if std else 0.0)
    text = cell_text(cell, column)
    return len(text if text is not None else "---0") * PT_PER_CHAR


def column_widths(table: Table) -> list[float]:
    """Estimated natural width (pt) of every column: its widest cell or header plus the column gap."""
    return [max(cell_width(table, i, j) for i in [None, *range(len(table.rows))]) + COLUMN_GAP_PT
            for j in range(len(table.columns))]


def layout(table: Table) -> list[Part]:
    """The tabulars a table is set in, by the width rule of the module docstring."""
    widths = column_widths(table)
    labels = []
    for j, column in enumerate(table.columns):
        if column.kind != "text":
            break
        labels.append(j)
    results = list(range(len(labels), len(table.columns)))
    label_width = sum(widths[j] for j in labels)
    limit = TEXT_WIDTH_PT / MIN_SCALE

    def part(chunk: list[int]) -> Part:
        return Part(tuple(labels + chunk), label_width + sum(widths[j] for j in chunk))

    whole = part(results)
    if whole.width_pt <= limit or len(results) <= 1:
        return [whole]
    for n in range(2, len(results) + 1):
        parts = [part(chunk) for chunk in split_evenly(results, n)]
        if all(p.width_pt <= limit for p in parts):
            return parts
    return [part([j]) for j in results]  # some column alone is wider than the limit: one part per column


def to_latex(table: Table) -> str:
    """A booktabs ``table`` float: caption, label, one tabular per part of ``layout``, then the footnotes and
    notes."""
    marks = table.footnotes()
    best = table.best_cells()
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", table.name)
    parts = layout(table)
    lines = [r"% requires \usepackage{booktabs} and \usepackage{graphicx}" if any(p.resized for p in parts)
             else r"% requires \usepackage{booktabs}",
             r"\begin{table}[htbp]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
             rf"\label{{tab:{label}}}"]
    for n, part in enumerate(parts):
        if n:
            lines.append(r"\par\medskip")
        spec = "".join("l" if table.columns[j].kind == "text" else "r" for j in part.columns)
        begin = rf"\begin{{tabular}}{{{spec}}}"
        lines.append(rf"\resizebox{{\linewidth}}{{!}}{{{begin}" if part.resized else begin)
        lines += [r"\toprule", " & ".join(latex_escape(table.columns[j].name) for j in part.columns) + r" \\",
                  r"\midrule"]
        for i in range(len(table.rows)):
            if i in table.rule_before and i > 0:
                lines.append(r"\midrule")
            lines.append(" & ".join(cell_latex(table, i, j, marks, best) for j in part.columns) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}}" if part.resized else r"\end{tabular}"]
    footer = [rf"\textsuperscript{{{n}}}~{latex_escape(text)}" for n, text in sorted(marks.values())]
    footer += [latex_escape(n) for n in table.notes]
    if footer:
        lines += [r"\par\smallskip", r"{\footnotesize"]
        lines += [line + r"\par" for line in footer]
        lines.append("}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
