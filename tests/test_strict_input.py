"""Strict JSON input (issue 10): a boolean field took 0/1, and ``household_id: 1.5`` was taken as
household 1. A JSON body's integers must be integers and its booleans true or false: anything
else is a 422 naming the field, and nothing changes."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from moralbank.awards.models import Award, Rule
from support import session_of

API = "/api/v1"


def counts(app) -> tuple[int, int]:
    with session_of(app) as session:
        return session.scalar(select(func.count(Award.id))), session.scalar(select(func.count(Rule.id)))


def refused(response, field: str) -> None:
    assert response.status_code == 422, (field, response.status_code, response.get_json())
    error = response.get_json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], (field, error)


@pytest.fixture
def ids(api):
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    rule = next(rule for rule in api.get(f"{API}/villages/BLM/rules", "grid").get_json()["items"]
                if not rule["photo_required"] and rule["points"] > 0)
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    item = api.get(f"{API}/stores/{store}/items", "clerk").get_json()["items"][0]
    return {"household": household, "rule": rule["id"], "store": store, "item": item["id"]}


@pytest.mark.parametrize("field,value", [("household_id", 1.5), ("household_id", True), ("household_id", "1"),
                                         ("rule_id", 2.0), ("quantity", 1.5), ("quantity", True)])
def test_award_numbers_must_be_integers(app, api, ids, field, value):
    before = counts(app)
    body = {"household_id": ids["household"], "rule_id": ids["rule"], field: value}
    refused(api.post(f"{API}/awards", "grid", json=body), field)
    assert counts(app) == before


@pytest.mark.parametrize("value", [0, 1, "true", "yes", None])
def test_booleans_must_be_true_or_false(app, api, client, ids, value):
    before = counts(app)
    rule = {"category": "volunteer", "title": "帮五保户挑水", "points": 3, "photo_required": value}
    refused(api.post(f"{API}/villages/BLM/rules", "committee", json=rule), "photo_required")
    headers = api.headers("committee")
    refused(client.patch(f"{API}/rules/{ids['rule']}", json={"active": value}, headers=headers), "active")
    refused(client.patch(f"{API}/items/{ids['item']}", json={"active": value}, headers=headers), "active")
    assert counts(app) == before
    assert api.get(f"{API}/stores/{ids['store']}/items", "clerk").get_json()["items"][0]["active"] is True


def test_other_body_numbers_are_strict_and_true_false_still_work(app, api, client, ids):
    headers = api.headers("committee")
    refused(client.patch(f"{API}/villages/BLM", json={"notice_days": 1.5}, headers=headers), "notice_days")
    refused(api.post(f"{API}/stores/{ids['store']}/redemptions", "clerk", json={"code": "12345678", "points": 2.5}),
            "points")
    refused(client.patch(f"{API}/items/{ids['item']}", json={"stock": 3.5}, headers=headers), "stock")
    # the real thing still passes
    created = api.post(f"{API}/villages/BLM/rules", "committee",
                       json={"category": "volunteer", "title": "帮五保户挑水", "points": 3, "photo_required": False})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["photo_required"] is False
    award = api.post(f"{API}/awards", "grid", json={"household_id": ids["household"],
                                                    "rule_id": created.get_json()["id"], "quantity": 2})
    assert award.status_code == 201, award.get_json()
