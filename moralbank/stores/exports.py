"""XLSX exports of the shops (openpyxl)."""
from __future__ import annotations

import io

from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Font

from ..export_safety import xlsx_row
from ..i18n import localtime


def statement_workbook(statement, village) -> bytes:
    """A store's month: one row per redemption, then the totals and the money owed.

    Every row goes through ``export_safety.xlsx_row``: item and store names are typed by
    staff and must not become formulas in the supervisor's Excel.
    """
    book = Workbook()
    sheet = book.active
    sheet.title = statement.period

    def append(row):
        sheet.append(xlsx_row(sheet, row))

    append([f"{village.name} · {statement.store.name} · {statement.period} " + _("对账单")])
    sheet["A1"].font = Font(bold=True, size=14)
    append([_("编号"), _("时间"), _("户"), _("积分"), _("已冲正"), _("商品")])
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for row in statement.redemptions:
        goods = "、".join(f"{line['name']}×{line['quantity']}" for line in row["lines"])
        append([row["id"], localtime(row["created_at"]), row["household"], row["points"],
                _("是") if row["reversed"] else "", goods])
    append([])
    append([_("兑换合计"), statement.gross])
    append([_("冲正"), statement.reversed])
    append([_("应结积分"), statement.points])
    append([_("应付金额（元）"), statement.fen / 100])
    if statement.settlement is not None:
        append([_("已结算"), localtime(statement.settlement.created_at)])
    for column, width in zip("ABCDEF", (8, 18, 10, 8, 8, 40)):
        sheet.column_dimensions[column].width = width
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
