"""Regression tests for a security and correctness review: each was a real failure before its fix."""
from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from sqlalchemy import func, select

from support import PHONES, csrf_from, session_of
from moralbank.database import utcnow, write_transaction
from moralbank.ledger.models import Transfer
from moralbank.people.models import User
from moralbank.stores.models import Settlement

ZONE = ZoneInfo("Asia/Shanghai")


def last_month() -> str:
    first = utcnow().astimezone(ZONE).replace(day=1)
    previous = first - timedelta(days=1)
    return f"{previous.year}-{previous.month:02d}"


def store_of_clerk(api) -> int:
    return api.get("/api/v1/me", "clerk").get_json()["store"]["id"]


def test_a_month_is_settled_once_whatever_its_spelling(app, api, client, auth):
    store = store_of_clerk(api)
    month = last_month()
    year, number = month.split("-")
    for spelling in (f"{year}-0{number}", f"{month} ", f"{month}-01", f"{year}{number}"):
        response = api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": spelling})
        assert response.status_code == 422, (spelling, response.get_json())
    assert api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": month}).status_code == 201
    # The web form with another spelling of the same month is refused, not paid a second time.
    auth.login("committee")
    page = client.get(f"/stores/{store}/statement?period={month}").get_data(as_text=True)
    key = page.split('name="idempotency_key" value="')[1].split('"')[0] if 'name="idempotency_key"' in page else "k"
    client.post(f"/stores/{store}/statement", data={"csrf_token": csrf_from(page), "idempotency_key": key + "x",
                                                    "period": f"{year}-0{number}", "confirm": "1"})
    with session_of(app) as session:
        assert session.scalar(select(func.count()).select_from(Settlement).where(Settlement.store_id == store)) == 1


def test_settled_redemptions_and_settlements_are_not_reversed(app, api):
    store = store_of_clerk(api)
    month = last_month()
    with session_of(app) as session:
        from moralbank.ledger.service import store_account
        account = store_account(store).id
        start = datetime(int(month[:4]), int(month[5:]), 1, tzinfo=ZONE)
        end = (start + timedelta(days=32)).replace(day=1)
        redemption = session.scalar(select(Transfer.id).where(
            Transfer.credit_account_id == account, Transfer.code == "redemption", Transfer.created_at >= start,
            Transfer.created_at < end).order_by(Transfer.id.desc()).limit(1))
    assert redemption is not None, "the demo history has a redemption last month"
    assert api.post(f"/api/v1/stores/{store}/settlements", "committee", json={"period": month}).status_code == 201
    refused = api.post(f"/api/v1/transfers/{redemption}/reversal", "committee", json={"reason": "退货"})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "period_settled"
    with session_of(app) as session:
        settlement = session.scalar(select(Transfer.id).where(Transfer.code == "settlement"))
    refused = api.post(f"/api/v1/transfers/{settlement}/reversal", "committee", json={"reason": "错了"})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_reversible"
    # …and the next month can still be settled later: the store's account was not drained.


@pytest.mark.parametrize("path", [
    "/api/v1/ranking-snapshots/99999999999999999999999",
    "/v/BLM/rankings/99999999999999999999999",
    "/v/BLM?hamlet=99999999999999999999999",
    "/v/BLM?period=0000",
    "/api/v1/rankings?village=BLM&period=9999-12",
    "/api/v1/stores/1/redemptions?before=99999999999999999999999",
])
def test_huge_numbers_and_odd_periods_are_not_server_errors(client, api, path):
    assert client.get(path, headers=api.headers("committee")).status_code < 500


@pytest.mark.parametrize("path", [
    "/api/v1/households/99999999999999999999999",
    "/api/v1/households/1/transfers?before=99999999999999999999999",
    "/api/v1/villages/BLM/households?after=99999999999999999999999",
    "/api/v1/villages/BLM/awards?household_id=99999999999999999999999",
    "/api/v1/villages/BLM/dashboard?month=0001-01",
    "/api/v1/overview?month=9999-12",
    "/api/v1/stores/1/statement?period=0001-01",
])
def test_staff_api_refuses_out_of_range_values_with_4xx(api, path):
    response = api.get(path, "committee")
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert "error" in response.get_json()


def test_bad_json_values_get_the_envelope(api, client):
    # A lone surrogate cannot be stored as UTF-8.
    response = client.post("/api/v1/auth/tokens", data='{"phone": "\\udcff", "password": "\\udcff"}',
                           content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_json"
    response = api.post("/api/v1/awards", "grid", json={"household_id": 10**30, "rule_id": 1})
    assert response.status_code == 422


@pytest.mark.parametrize("path, data", [
    ("/committee/audit?before=99999999999999999999", None),
    ("/committee/audit?to=9999-12-31", None),
    ("/grid/sheet?rules=²", None),
    ("/exports/awards.csv?period=0000", None),
    ("/dashboard?month=0001-01", None),
])
def test_committee_pages_survive_odd_input(client, auth, path, data):
    auth.login("committee")
    assert client.get(path).status_code < 500


PAST_INT4 = 2**31  # one past PostgreSQL's integer: the query itself failed there, then the error page


@pytest.mark.parametrize("path", [
    f"/v/BLM/rankings/{PAST_INT4}",
    f"/stores/{PAST_INT4}/statement",
    f"/committee/households/{PAST_INT4}/card",
    f"/v/BLM?hamlet={PAST_INT4}",
    f"/committee/audit?before={PAST_INT4}",
    f"/committee/audit?actor={PAST_INT4}",
])
def test_ids_past_the_integer_columns_are_not_server_errors(client, auth, path):
    auth.login("committee")
    response = client.get(path)
    assert response.status_code < 500, (path, response.status_code)


@pytest.mark.parametrize("period", ["2026-10\n", "20２６-10", "2026-1０", " 2026-10"])
def test_a_month_spelled_with_odd_characters_is_not_a_month(app, period):
    from moralbank import periods
    from moralbank.errors import Invalid

    with app.app_context():
        with pytest.raises(Invalid):
            periods.check_month(period)  # settlement keys: one spelling per month
        with pytest.raises(Invalid):
            periods.check(period)  # rankings too: one period, one key


def test_a_phone_typed_with_full_width_digits_logs_in(client):
    response = client.post("/api/v1/auth/tokens", json={"phone": "１３８００００００01", "password": "demo-pass-2026"})
    assert response.status_code == 201


def test_shop_form_numbers_must_be_plain_digits(client, auth, api):
    auth.login("clerk")
    page = client.get("/shop/items").get_data(as_text=True)
    response = client.post("/shop/items", data={"csrf_token": csrf_from(page), "idempotency_key": "x1",
                                                "item_id": "1", "stock": "²"}, follow_redirects=True)
    assert response.status_code < 500 and "要填整数" in response.get_data(as_text=True)
    response = client.post("/shop/items", data={"csrf_token": csrf_from(page), "idempotency_key": "x2",
                                                "item_id": "abc", "stock": "3"}, follow_redirects=True)
    assert response.status_code < 500


def test_idempotency_key_is_required_where_points_move(client, api):
    headers = api.headers("grid")  # no Idempotency-Key
    response = client.post("/api/v1/awards", headers=headers, json={"household_id": 1, "rule_id": 11})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "idempotency_key_required"


def test_a_decompression_bomb_photo_is_refused_before_decoding(api, client):
    buffer = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buffer, "PNG")  # 36 megapixels in a few KB
    rules = api.get("/api/v1/villages/BLM/rules", "grid").get_json()["items"]
    rule = next(r for r in rules if r["points"] < 0 and r["cap"] is None)  # a deduction: no cap in the way
    response = client.post("/api/v1/awards", content_type="multipart/form-data",
                           headers=api.headers("grid", **{"Idempotency-Key": "bomb"}),
                           data={"household_id": "1", "rule_id": str(rule["id"]),
                                 "photo": (io.BytesIO(buffer.getvalue()), "x.png")})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "photo_too_large"


def test_language_switch_by_get_writes_nothing(app, client, auth):
    auth.login("resident")
    client.get("/lang/en")
    with session_of(app) as session:
        assert session.scalar(select(User.locale).where(User.phone == PHONES["resident"])) is None
    assert "Log out" in client.get("/home").get_data(as_text=True)


def test_a_deactivated_user_loses_the_web_session(app, client, auth):
    auth.login("resident")
    assert client.get("/home").status_code == 200
    with session_of(app):
        with write_transaction() as session:
            session.scalar(select(User).where(User.phone == PHONES["resident"])).active = False
    assert client.get("/home").status_code == 302


def test_logins_and_failures_are_in_the_audit_log_with_the_phone_masked(app, client, auth):
    from moralbank.audit.models import AuditEntry

    auth.login("committee", password="wrong-password")
    auth.login("committee")
    with session_of(app) as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.detail).where(
            AuditEntry.action.like("auth.%")).order_by(AuditEntry.id)).all()
    assert [action for action, _detail in rows][-2:] == ["auth.login_failed", "auth.login"]
    assert all(detail["phone"] == "138****0001" for _action, detail in rows[-2:])
    html = client.get("/committee/audit?action=auth").get_data(as_text=True)
    assert "登录失败" in html and "138****0001" in html and "13800000001" not in html  # the action in words
