"""Exports for the committee and supervisors: rankings, awards and transfers as XLSX or CSV."""
from __future__ import annotations

import csv
import io

from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from ..awards.models import Award, Rule
from ..awards.service import status_label
from ..labels import ACCOUNT_KINDS, CATEGORIES, TRANSFER_CODES, label
from ..export_safety import csv_row, xlsx_row
from ..extensions import db
from ..i18n import localtime
from ..ledger.models import Account, Transfer
from ..people.models import Area, Household, Resident
from .service import full_ranking

MAX_ROWS = 200_000


def ranking_rows(village: Area, period: str, hamlet_id: int | None = None):
    yield [_("名次"), _("户"), _("屯/组"), _("得分"), _("星级")]
    for line in full_ranking(village, period, hamlet_id=hamlet_id):
        yield [line.rank, line.label, line.hamlet, line.score, line.stars]


def award_rows(village: Area, start, end):
    head = aliased(Resident)
    yield [_("编号"), _("户号"), _("户主"), _("项目"), _("类别"), _("次数"), _("分值"), _("状态"), _("发生日期"),
           _("提交时间"), _("入账时间")]
    query = (select(Award, Household.number, head.name, Rule.title, Rule.category)
             .join(Household, Household.id == Award.household_id).join(Rule, Rule.id == Award.rule_id)
             .outerjoin(head, and_(head.household_id == Household.id, head.is_head.is_(True)))
             .where(Award.village_id == village.id, Award.proposed_at >= start, Award.proposed_at < end)
             .order_by(Award.id).limit(MAX_ROWS))
    for award, number, name, title, category in db.session.execute(query):
        yield [award.id, number, name or "", title, label(CATEGORIES, category), award.quantity, award.points,
               status_label(award.status), award.occurred_on.isoformat(), localtime(award.proposed_at),
               localtime(award.posted_at)]


def transfer_rows(village: Area, start, end):
    debit, credit = aliased(Account), aliased(Account)
    debit_hh, credit_hh = aliased(Household), aliased(Household)
    yield [_("编号"), _("时间"), _("类型"), _("积分"), _("转出"), _("转入"), _("原因"), _("冲正的记录")]
    query = (select(Transfer, debit.kind, debit_hh.number, credit.kind, credit_hh.number)
             .join(debit, debit.id == Transfer.debit_account_id).join(credit, credit.id == Transfer.credit_account_id)
             .outerjoin(debit_hh, debit_hh.id == debit.household_id)
             .outerjoin(credit_hh, credit_hh.id == credit.household_id)
             .where(Transfer.village_id == village.id, Transfer.created_at >= start, Transfer.created_at < end)
             .order_by(Transfer.id).limit(MAX_ROWS).execution_options(yield_per=2000))
    for transfer, d_kind, d_number, c_kind, c_number in db.session.execute(query):
        yield [transfer.id, localtime(transfer.created_at), label(TRANSFER_CODES, transfer.code), transfer.amount,
               d_number or label(ACCOUNT_KINDS, d_kind), c_number or label(ACCOUNT_KINDS, c_kind),
               transfer.reason or "", transfer.reverses_id or ""]


def as_csv(rows) -> bytes:
    """UTF-8 with a BOM, so Excel on a village office PC opens the Chinese correctly; texts that
    begin like a formula are neutralised (``export_safety``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(csv_row(row))
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def as_xlsx(rows, title: str) -> bytes:
    """One sheet, the first row bold; texts that begin like a formula stay texts (``export_safety``)."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31] or "sheet")
    for index, row in enumerate(rows):
        sheet.append(xlsx_row(sheet, row, font=Font(bold=True) if index == 0 else None))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
