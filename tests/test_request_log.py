"""Logs as JSON lines: one line per request with its request id (taken from ``X-Request-ID`` or made,
and echoed in the answer), route, status, time and user id; never a token, password, PIN or full
phone number — checked by logging everything a login and a PIN-bearing request produce, at DEBUG,
through the JSON formatter the servers use."""
from __future__ import annotations

import json
import logging

import pytest

from moralbank.requestlog import JsonFormatter, mask_secrets
from support import DEMO_PASSWORD, PHONES, csrf_from

API = "/api/v1"


@pytest.fixture
def lines(caplog):
    """Every record of the test at DEBUG, as the JSON lines a server would write."""
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()

    def read() -> list[dict]:
        return [json.loads(formatter.format(record)) for record in caplog.records]
    return read


def request_lines(lines) -> list[dict]:
    return [line for line in lines() if line["logger"] == "moralbank.request"]


def test_each_request_is_one_json_line_with_its_id_route_status_time_and_user(client, auth, lines):
    response = client.get("/v/BLM", headers={"X-Request-ID": "edge-7f3a"})
    assert response.headers["X-Request-ID"] == "edge-7f3a"
    made = client.get("/v/BLM").headers["X-Request-ID"]
    assert len(made) == 32 and made != "edge-7f3a"
    # an id that is not an id (spaces, a newline) is replaced, not copied into the log
    assert client.get("/v/BLM", headers={"X-Request-ID": "a b\u2028c"}).headers["X-Request-ID"] != "a b\u2028c"
    auth.login("resident")
    client.get("/home")
    logged = request_lines(lines)
    first = next(line for line in logged if line["request_id"] == "edge-7f3a")
    assert first["route"] == "/v/<code>" and first["endpoint"] == "board.public_board"
    assert first["status"] == 200 and first["method"] == "GET" and first["user_id"] is None
    assert isinstance(first["duration_ms"], float) and first["time"].endswith("Z")
    home = [line for line in logged if line["route"] == "/home"][-1]
    assert isinstance(home["user_id"], int) and home["status"] == 200


def test_a_login_never_logs_the_password_or_the_full_phone(app, client, lines):
    secret = "Wrong-Secret-Pass-2026"
    page = client.get("/login")
    for password in (secret, DEMO_PASSWORD):
        client.post("/login?password=" + secret, data={"phone": PHONES["resident"], "password": password,
                                                      "csrf_token": csrf_from(page.get_data(as_text=True))})
    client.post(f"{API}/auth/tokens", json={"phone": PHONES["resident"], "password": secret})
    app.logger.warning("form was %s", {"phone": PHONES["resident"], "password": secret})  # a careless log call
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines())
    assert "moralbank.request" in text
    for leaked in (secret, DEMO_PASSWORD, PHONES["resident"]):
        assert leaked not in text
    assert "138****0003" in text  # the careless call's phone, masked


def test_a_pin_bearing_request_never_logs_the_pin_or_the_card_token(app, api, lines):
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    card = api.post(f"{API}/households/{household}/cards", "committee", json={"pin": "5173"}).get_json()
    assert api.post(f"{API}/stores/{store}/card-unlocks", "clerk",
                    json={"card": card["token"], "pin": "5173"}).status_code == 201
    assert api.post(f"{API}/stores/{store}/card-unlocks", "clerk",
                    json={"card": card["token"], "pin": "9064"}).status_code == 403
    app.test_client().get(f"/shop/card?t={card['token']}&pin=9064")
    unlocks = [line for line in request_lines(lines) if line["endpoint"] == "api.unlock_card"]
    assert [line["status"] for line in unlocks] == [201, 403]
    assert all(isinstance(line["user_id"], int) for line in unlocks)  # the clerk, by token
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines())
    assert "card-unlocks" in text
    for leaked in (card["token"], "5173", "9064"):
        assert leaked not in text


def test_mask_secrets():
    assert mask_secrets("password=hunter2-long&x=1") == "password=***&x=1"
    assert mask_secrets("{'pin': '5173'}") == "{'pin': '***'}"
    assert mask_secrets("Authorization: Bearer abc.def") == "Authorization: ***"
    assert mask_secrets("call 13800000003 now") == "call 138****0003 now"
    assert mask_secrets("/shop/redeem?t=SECRET") == "/shop/redeem?t=***"
    assert mask_secrets("order 2026120113800000003") == "order 2026120113800000003"  # not a phone
