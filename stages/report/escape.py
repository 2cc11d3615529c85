"""Making text from run records safe in each output the report writes (Markdown, CSV, LaTeX, plot text,
terminal lines).

Records are checked when read (stages.shared.record: names are single-line and NUL-free), and every renderer
escapes again at write time, so a value that slips past one layer still cannot add a heading or a row,
start a spreadsheet formula, run a TeX command or break a plot.
"""

from __future__ import annotations

import re
import unicodedata

# CSV: a cell starting with one of these is a formula to a spreadsheet (OWASP "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_MD_SPECIAL = re.compile(r"([\\|`*<>\[\]])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # emphasis can start or end here
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
          "—": "---", "–": "--", "→": r"$\rightarrow$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$",
          "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def one_line(text: object) -> str:
    """``text`` on one line: every control character and line separator (newline, CR, tab, NUL, ESC, U+2028)
    shown as its escape (``\\n``, ``\\x00``), so nothing read from a file can start a new line or a terminal
    sequence."""
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in str(text))


def markdown_text(text: object) -> str:
    """Text for a Markdown line or table cell: one line, with the characters that would end a cell (``|``) or
    start code, emphasis, a link or HTML backslash-escaped (an underscore only where it could open emphasis)."""
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line(text))
    return _MD_UNDERSCORE.sub(r"\\_", escaped)


def csv_cell(text: object) -> str:
    """A CSV text cell: one line, and prefixed with ``'`` when it starts like a spreadsheet formula (= + - @,
    tab, CR), as OWASP recommends; a plain number ('-0.5', '1e-05') is left as it is: it computes nothing."""
    raw = str(text)
    if raw.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(raw):
        return "'" + one_line(raw)
    return one_line(raw)


def latex_escape(text: object) -> str:
    """Text safe in a LaTeX table: one line, specials escaped, '±' as '$\\pm$', dashes as TeX dashes."""
    return "".join(_LATEX.get(ch, ch) for ch in one_line(text))


def plot_text(text: object) -> str:
    """Text for a matplotlib title, label or legend: one line, and ``$`` escaped so that a name is never read
    as mathtext (an unbalanced or invalid formula makes matplotlib fail when it draws)."""
    return one_line(text).replace("$", r"\$")
