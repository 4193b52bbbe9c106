"""`flask import-households FILE --village CODE`: a CSV or XLSX roster, all rows or none."""
from __future__ import annotations

import csv
import re

import pytest
from sqlalchemy import func, select

from moralbank.extensions import db
from support import session_of

HEADER = ["户号", "户主", "屯组", "电话", "身份证号", "家庭成员"]
ID_NUMBER = "220322198001011234"
GOOD_ROWS = [
    ["BLM-101", "王大山", "八里庙屯", "13911110001", ID_NUMBER, "李秀兰(配偶)、王小明(子)"],
    ["BLM-102", "张福来", "前进屯", "139 1111 0002", "22032219750203451X", "刘桂芝（配偶）；张一诺(女)"],
    ["BLM-103", "赵铁军", "BLM-03", "", "", ""],
    ["BLM-104", "孙玉山", "西沟屯", "+86 13911110004", "", "孙子轩"],
]




def write_csv(path, rows, encoding="utf-8", header=HEADER):
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path, rows, header=HEADER):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "花名册"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def reported_rows(output: str) -> dict[int, str]:
    """{row number: message} of the rows the import names as bad."""
    return {int(match.group(1)): match.group(2)
            for match in re.finditer(r"^第 (\d+) 行\s*(?:\(row \d+\))?:?\s*(.*)$", output, re.MULTILINE)}


def run_import(app, path, village="BLM"):
    return app.test_cli_runner().invoke(args=["import-households", str(path), "--village", village])


def household_count(app, village="BLM") -> int:
    from moralbank.people.models import Area, Household

    with session_of(app) as session:
        return session.scalar(select(func.count()).select_from(Household).join(Area, Area.id == Household.village_id)
                              .where(Area.code == village))


def imported(app, number, village="BLM") -> dict | None:
    """What the database holds for one household: hamlet, members, account balance."""
    from moralbank.ledger.models import Account
    from moralbank.people.models import Area, Household, Resident

    with session_of(app) as session:
        household = session.scalar(select(Household).join(Area, Area.id == Household.village_id)
                                   .where(Area.code == village, Household.number == number))
        if household is None:
            return None
        members = session.scalars(select(Resident).where(Resident.household_id == household.id)
                                  .order_by(Resident.is_head.desc(), Resident.id)).all()
        account = session.scalar(select(Account).where(Account.household_id == household.id))
        return {
            "id": household.id,
            "hamlet": household.hamlet.name,
            "head": [(m.name, m.phone, m.id_number_masked) for m in members if m.is_head],
            "members": [(m.name, m.relation) for m in members if not m.is_head],
            "balance": None if account is None else account.balance,
            "account_kind": None if account is None else account.kind,
        }


def assert_all_good_rows_imported(app, before):
    assert household_count(app) == before + 4
    first = imported(app, "BLM-101")
    assert first["hamlet"] == "八里庙屯"
    assert first["head"] == [("王大山", "13911110001", "2203**********1234")]
    assert first["members"] == [("李秀兰", "配偶"), ("王小明", "子")]
    assert (first["balance"], first["account_kind"]) == (0, "household")
    second = imported(app, "BLM-102")
    assert second["hamlet"] == "前进屯"
    assert second["head"] == [("张福来", "13911110002", "2203**********451X")]
    assert second["members"] == [("刘桂芝", "配偶"), ("张一诺", "女")]
    third = imported(app, "BLM-103")
    assert third["hamlet"] == "东岗屯"  # by hamlet code
    assert third["head"] == [("赵铁军", None, None)] and third["members"] == []
    fourth = imported(app, "BLM-104")
    assert fourth["head"][0][1] == "13911110004"
    assert fourth["members"] == [("孙子轩", "家庭成员")]
    for number in ("BLM-102", "BLM-103", "BLM-104"):
        assert imported(app, number)["balance"] == 0


def assert_id_numbers_never_stored_in_full(app):
    from moralbank.people.models import Resident

    with session_of(app) as session:
        stored = session.scalars(select(Resident.id_number_masked).where(Resident.id_number_masked.is_not(None))).all()
        assert stored, "no ID number stored at all"
        assert ID_NUMBER not in stored and "22032219750203451X" not in stored
        for value in stored:
            assert "*" in value and sum(ch.isdigit() for ch in value) <= 8, value
        # Nowhere else in the household tables either (e.g. the audit detail of the import).
        from moralbank.audit.models import AuditEntry
        for detail in session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "household.import")):
            assert ID_NUMBER not in str(detail)


def test_good_csv_imports_every_row(app, tmp_path):
    before = household_count(app)
    result = run_import(app, write_csv(tmp_path / "roster.csv", GOOD_ROWS))
    assert result.exit_code == 0, result.output
    assert "4" in result.output and "BLM" in result.output
    assert_all_good_rows_imported(app, before)
    assert_id_numbers_never_stored_in_full(app)
    assert household_count(app, "XLC") == 20  # the other village is untouched


def test_imported_households_are_visible_to_the_committee(app, api, tmp_path):
    run_import(app, write_csv(tmp_path / "roster.csv", GOOD_ROWS))
    household_id = imported(app, "BLM-101")["id"]
    body = api.get(f"/api/v1/households/{household_id}", "committee").get_json()
    assert body["number"] == "BLM-101" and body["head"] == "王大山" and body["hamlet"] == "八里庙屯"
    assert body["balance"] == 0 and body["score"] == 0 and body["stars"] == 0
    assert ID_NUMBER not in str(body)
    listing = api.get("/api/v1/villages/BLM/households?limit=200", "committee").get_json()["items"]
    assert len(listing) == 64


def test_good_xlsx_imports_every_row(app, tmp_path):
    before = household_count(app)
    # Excel stores phone numbers as numbers; they still count.
    rows = [[cell if index != 3 or not cell or " " in cell or "+" in cell else int(cell)
             for index, cell in enumerate(row)] for row in GOOD_ROWS]
    result = run_import(app, write_xlsx(tmp_path / "roster.xlsx", rows))
    assert result.exit_code == 0, result.output
    assert_all_good_rows_imported(app, before)
    assert_id_numbers_never_stored_in_full(app)


def test_gbk_csv_imports(app, tmp_path):
    before = household_count(app)
    result = run_import(app, write_csv(tmp_path / "roster-gbk.csv", GOOD_ROWS, encoding="gbk"))
    assert result.exit_code == 0, result.output
    assert_all_good_rows_imported(app, before)


def test_utf8_csv_with_bom_and_english_headers_imports(app, tmp_path):
    before = household_count(app)
    header = ["number", "head", "hamlet", "phone", "id_number", "members"]
    result = run_import(app, write_csv(tmp_path / "roster.csv", GOOD_ROWS, encoding="utf-8-sig", header=header))
    assert result.exit_code == 0, result.output
    assert_all_good_rows_imported(app, before)


def test_blank_lines_are_skipped(app, tmp_path):
    before = household_count(app)
    rows = [GOOD_ROWS[0], ["", "", "", "", "", ""], GOOD_ROWS[1], GOOD_ROWS[2], [], GOOD_ROWS[3], []]
    result = run_import(app, write_csv(tmp_path / "roster.csv", rows))
    assert result.exit_code == 0, result.output
    assert household_count(app) == before + 4


BAD_ROWS = {
    "unknown hamlet": (["BLM-105", "钱广才", "新立屯", "13911110005", "", ""], "新立屯"),
    "duplicate number in the file": (["BLM-102", "钱广才", "东岗屯", "13911110005", "", ""], "BLM-102"),
    "bad phone": (["BLM-105", "钱广才", "东岗屯", "1391111", "", ""], "1391111"),
    "existing number": (["BLM-001", "钱广才", "东岗屯", "13911110005", "", ""], "BLM-001"),
    "bad id number": (["BLM-105", "钱广才", "东岗屯", "13911110005", "2203221980", ""], "身份证"),
    "empty head": (["BLM-105", "", "东岗屯", "13911110005", "", ""], "户主"),
    "empty number": (["", "钱广才", "东岗屯", "13911110005", "", ""], "户号"),
    "bad member": (["BLM-105", "钱广才", "东岗屯", "", "", "王五(子"], "王五(子"),
}


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_one_bad_row_imports_nothing_and_names_the_row(app, tmp_path, kind):
    for number, (problem, (bad_row, needle)) in enumerate(BAD_ROWS.items()):
        rows = GOOD_ROWS[:3] + [bad_row] + GOOD_ROWS[3:]  # the bad row is line 5 (the header is line 1)
        path = (write_csv(tmp_path / f"roster{number}.csv", rows) if kind == "csv"
                else write_xlsx(tmp_path / f"roster{number}.xlsx", rows))
        result = run_import(app, path)
        assert result.exit_code == 1, (problem, result.output)
        assert isinstance(result.exception, SystemExit), (problem, repr(result.exception))
        reported = reported_rows(result.output)
        assert set(reported) == {5}, (problem, result.output)  # only the bad row is named
        assert needle in reported[5], (problem, result.output)
        assert household_count(app) == 60, problem
        assert imported(app, "BLM-101") is None, problem


def test_every_bad_row_is_named(app, tmp_path):
    rows = [GOOD_ROWS[0], BAD_ROWS["unknown hamlet"][0], GOOD_ROWS[1], BAD_ROWS["bad phone"][0]]
    rows[3] = ["BLM-106"] + rows[3][1:]
    result = run_import(app, write_csv(tmp_path / "roster.csv", rows))
    assert result.exit_code == 1
    reported = reported_rows(result.output)
    assert set(reported) == {3, 5}, result.output
    assert "新立屯" in reported[3] and "1391111" in reported[5]
    assert household_count(app) == 60


def test_a_row_with_several_problems_names_them_all(app, tmp_path):
    rows = [["BLM-001", "钱广才", "新立屯", "123", "", ""]]
    result = run_import(app, write_csv(tmp_path / "roster.csv", rows))
    assert result.exit_code == 1
    line = reported_rows(result.output)[2]
    assert "BLM-001" in line and "新立屯" in line and "123" in line


def test_missing_required_column_is_an_error(app, tmp_path):
    for missing in ("户号", "户主", "屯组"):
        index = HEADER.index(missing)
        header = [name for name in HEADER if name != missing]
        rows = [[cell for position, cell in enumerate(row) if position != index] for row in GOOD_ROWS]
        result = run_import(app, write_csv(tmp_path / f"no-{index}.csv", rows, header=header))
        assert result.exit_code == 1, (missing, result.output)
        assert missing in result.output, result.output
        assert household_count(app) == 60


def test_optional_columns_may_be_absent(app, tmp_path):
    rows = [row[:3] for row in GOOD_ROWS]
    result = run_import(app, write_csv(tmp_path / "roster.csv", rows, header=HEADER[:3]))
    assert result.exit_code == 0, result.output
    assert household_count(app) == 64
    assert imported(app, "BLM-101")["head"] == [("王大山", None, None)]


def test_unknown_village_is_an_error(app, tmp_path):
    result = run_import(app, write_csv(tmp_path / "roster.csv", GOOD_ROWS), village="NOPE")
    assert result.exit_code != 0
    assert "NOPE" in result.output and "Traceback" not in result.output
    assert household_count(app) == 60


def test_import_into_the_other_village(app, tmp_path):
    rows = [["XLC-101", "钱广才", "南洼屯", "", "", ""]]
    result = run_import(app, write_csv(tmp_path / "roster.csv", rows), village="xlc")
    assert result.exit_code == 0, result.output
    assert household_count(app, "XLC") == 21 and household_count(app) == 60
    # A BLM hamlet is not a hamlet of XLC.
    result = run_import(app, write_csv(tmp_path / "again.csv", [["XLC-102", "孙殿臣", "八里庙屯", "", "", ""]]),
                        village="XLC")
    assert result.exit_code == 1 and household_count(app, "XLC") == 21


def test_empty_or_unsupported_files(app, tmp_path):
    for name, content in [("empty.csv", b""), ("header-only.csv", "户号,户主,屯组\n".encode()),
                          ("roster.txt", "户号,户主,屯组\nBLM-101,王大山,八里庙屯\n".encode())]:
        path = tmp_path / name
        path.write_bytes(content)
        result = run_import(app, path)
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, repr(result.exception))
        assert household_count(app) == 60
        if name == "header-only.csv":
            assert result.exit_code == 0 and "imported 0" in result.output, result.output
        else:
            assert result.exit_code == 1, (name, result.output)


def test_missing_file_is_an_error(app, tmp_path):
    result = run_import(app, tmp_path / "nope.csv")
    assert result.exit_code != 0
    assert household_count(app) == 60


def test_unreadable_files_are_refused_with_a_message(app, tmp_path):
    for name, content in [
        # Excel's "Unicode text" export is UTF-16: neither UTF-8 nor GBK
        ("unicode.csv", "户号,户主,屯组\nBLM-101,王大山,八里庙屯\n".encode("utf-16")),
        # a damaged workbook, or an old .xls renamed to .xlsx
        ("broken.xlsx", b"this is not a zip archive"),
        ("renamed.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        result = run_import(app, path)
        assert result.exit_code == 1, (name, result.output)
        assert isinstance(result.exception, SystemExit), (name, repr(result.exception))  # a message, not a crash
        assert name in result.output
        assert household_count(app) == 60
