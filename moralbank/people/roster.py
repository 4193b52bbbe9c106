"""Importing a household roster (花名册) from CSV or XLSX: all rows or none.

Columns (Chinese or English headers): 户号/number, 户主/head, 屯组/hamlet,
电话/phone, 身份证号/id_number, 家庭成员/members ("王芳(配偶)、王小明(子)"),
地址/address. Every row is checked first; if any row is bad, the report names
each bad row and nothing is imported.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from ..database import write_transaction
from ..errors import DomainError
from ..extensions import db
from .auth import normalize_phone
from .models import Area, Household
from .service import PHONE_RE, create_household, mask_id_number

HEADERS = {
    "number": ("户号", "number", "household_number"),
    "head": ("户主", "户主姓名", "head", "head_name"),
    "hamlet": ("屯组", "屯/组", "屯", "组", "hamlet"),
    "phone": ("电话", "手机号", "联系电话", "phone"),
    "id_number": ("身份证号", "身份证", "id_number"),
    "members": ("家庭成员", "成员", "members"),
    "address": ("地址", "住址", "address"),
}
REQUIRED = ("number", "head", "hamlet")
MEMBER_RE = re.compile(r"^\s*([^()（）]+?)\s*(?:[(（]\s*([^()（）]+?)\s*[)）])?\s*$")


@dataclass
class RosterReport:
    rows: int = 0
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_rows(path: str | Path) -> list[list[str]]:
    """The rows of a CSV (UTF-8, with or without BOM, or GBK) or XLSX file as strings."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from zipfile import BadZipFile

        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except (BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as error:
            # a renamed .xls or a damaged file: say so instead of a traceback
            raise DomainError(f"无法读取 XLSX 文件 {path.name} (not a valid .xlsx workbook: {error})",
                              code="bad_file") from error
        sheet = workbook.worksheets[0]
        rows = [["" if cell is None else (str(int(cell)) if isinstance(cell, float) and cell.is_integer()
                                          else str(cell)).strip() for cell in row]
                for row in sheet.iter_rows(values_only=True)]
        workbook.close()
        return rows
    if path.suffix.lower() != ".csv":
        raise DomainError(f"unsupported roster file type {path.suffix!r}: use .csv or .xlsx", code="bad_file")
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # e.g. Excel's UTF-16 "Unicode text"
        raise DomainError(f"无法识别 {path.name} 的编码，请另存为 UTF-8 或 GBK 的 CSV "
                          "(encoding not recognised: save as UTF-8 or GBK CSV)", code="bad_file")
    return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]


def _columns(header: list[str]) -> tuple[dict[str, int], list[str]]:
    columns, problems = {}, []
    lookup = {alias.lower(): key for key, aliases in HEADERS.items() for alias in aliases}
    for index, name in enumerate(header):
        key = lookup.get(name.strip().lower())
        if key:
            columns[key] = index
    for key in REQUIRED:
        if key not in columns:
            problems.append(f"缺少列 {HEADERS[key][0]} ({key})")
    return columns, problems


def parse_members(text: str) -> list[tuple[str, str]]:
    members = []
    for part in re.split(r"[、;；,，]", text or ""):
        if not part.strip():
            continue
        match = MEMBER_RE.match(part)
        if not match:
            raise ValueError(part)
        members.append((match.group(1), match.group(2) or "家庭成员"))
    return members


def import_roster(path: str | Path, village: Area) -> RosterReport:
    """Check every row, then import all of them in one transaction, or none."""
    report = RosterReport()
    rows = read_rows(path)
    while rows and not any(rows[-1]):
        rows.pop()
    if not rows:
        report.errors.append((1, "文件是空的"))
        return report
    columns, problems = _columns(rows[0])
    if problems:
        report.errors.extend((1, problem) for problem in problems)
        return report

    hamlets = {h.name: h for h in village.children} | {h.code: h for h in village.children}
    existing = set(db.session.scalars(select(Household.number).where(Household.village_id == village.id)))
    seen: dict[str, int] = {}
    parsed = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(row):
            continue
        report.rows += 1
        cell = {key: (row[index] if index < len(row) else "") for key, index in columns.items()}
        errors = []
        number = cell.get("number", "")
        if not number:
            errors.append("户号为空")
        elif len(number) > 32:
            errors.append("户号太长")
        elif number in existing:
            errors.append(f"户号 {number} 已存在于本村")
        elif number in seen:
            errors.append(f"户号 {number} 与第 {seen[number]} 行重复")
        else:
            seen[number] = line_no
        head = cell.get("head", "")
        if not head:
            errors.append("户主姓名为空")
        elif len(head) > 32:
            errors.append("户主姓名太长")
        hamlet = hamlets.get(cell.get("hamlet", ""))
        if hamlet is None:
            errors.append(f"屯/组「{cell.get('hamlet', '')}」不是本村的")
        phone = normalize_phone(cell.get("phone", ""))
        if cell.get("phone") and not PHONE_RE.fullmatch(phone):
            errors.append(f"电话「{cell.get('phone')}」不是 11 位手机号")
        id_number = cell.get("id_number") or None
        if id_number:
            try:
                mask_id_number(id_number)
            except DomainError:
                errors.append("身份证号格式不对")
        try:
            members = parse_members(cell.get("members", ""))
        except ValueError as bad:
            errors.append(f"家庭成员「{bad}」格式不对，应为 姓名(关系)")
            members = []
        if errors:
            report.errors.append((line_no, "；".join(errors)))
        else:
            parsed.append({"hamlet": hamlet, "number": number, "head_name": head, "head_phone": phone or None,
                           "id_number": id_number, "members": members, "address": cell.get("address") or None})
    if report.errors:
        return report
    with write_transaction():
        for values in parsed:
            create_household(village=village, **values)
        from ..audit.service import record
        record("household.import", village_id=village.id, detail={"file": Path(path).name, "rows": len(parsed)})
    report.imported = len(parsed)
    return report
