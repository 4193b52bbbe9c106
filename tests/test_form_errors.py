"""Errors speak the page's language (issue 12): they name the field as the page labels it, say the
allowed range, sit next to the field, and keep everything typed — the propose form, the rule form,
the clerk's cart and number box; the API's messages use the same words."""
from __future__ import annotations

import html as htmllib
import re

import pytest

from support import csrf_from
from test_awards_web import form_key, ids_of, login, page

API = "/api/v1"


def text(response) -> str:
    return htmllib.unescape(response.get_data(as_text=True))


@pytest.mark.clock("2026-12-01 10:00")
def test_propose_form_names_the_field_says_the_range_and_keeps_what_was_typed(app, client, auth):
    login(auth, "grid")
    html = page(client, "/awards/new")
    rule = re.search(r'<option value="(\d+)" >', html.split('id="rule_id"', 1)[1]).group(1)
    (household,) = ids_of(app, "BLM-002")
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "household_id": str(household),
            "rule_id": rule, "quantity": "-5", "note": "帮邻居修好了水管", "occurred_on": "2026-11-30"}
    refused = client.post("/awards/new", data=data)
    assert refused.status_code == 422
    shown = text(refused)
    assert "「次数」要填 1 到 50 的整数" in shown and "「quantity」" not in shown
    assert re.search(r'id="quantity-error">次数：要填 1 到 50 的整数', shown), "said next to the field"
    assert 'value="-5"' in shown and "帮邻居修好了水管" in shown and 'value="2026-11-30"' in shown
    assert re.search(rf'<option value="{household}" selected>', shown) and re.search(
        rf'<option value="{rule}" selected>', shown)

    refused = client.post("/awards/new", data=dict(data, household_id="", quantity="1",
                                                   idempotency_key=form_key(shown)))
    assert refused.status_code == 422
    shown = text(refused)
    assert "请选择「哪一户」" in shown and "「household_id」" not in shown
    assert re.search(r'id="household_id-error">哪一户：请选择', shown)


def test_rule_form_keeps_what_was_typed_and_says_the_range_by_the_field(app, client, auth, api):
    login(auth, "committee")
    html = page(client, "/committee/rules")
    assert 'action="/committee/rules/new#rule-new"' in html, "the page comes back at the form that was sent"
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "category": "volunteer",
            "title": "帮五保户挑水", "points": "99999", "cap_count": "2", "cap_period": "month",
            "photo_required": "1"}
    refused = client.post("/committee/rules/new", data=data)
    assert refused.status_code == 422
    shown = text(refused)
    new_form = shown.split('id="rule-new"', 1)[1]
    assert re.search(r'id="points-new-error">分值：要填 -1000 到 1000 之间、不为 0 的整数', new_form)
    assert 'value="帮五保户挑水"' in new_form and 'value="99999"' in new_form and 'value="2"' in new_form
    assert '<option value="month" selected>' in new_form and 'name="photo_required" value="1" checked' in new_form

    # a revision refused: its own form opens, with the typed values and the problem by its field
    rule = re.search(r'action="/committee/rules/(\d+)/revise', shown).group(1)
    data = {"csrf_token": csrf_from(shown), "idempotency_key": form_key(shown, f"-r{rule}"), "category": "volunteer",
            "title": "改过的名字", "points": "5", "cap_count": "500", "cap_period": "year"}
    refused = client.post(f"/committee/rules/{rule}/revise", data=data)
    assert refused.status_code == 422
    shown = text(refused)
    opened = shown.split(f'id="rule-{rule}" open', 1)[1].split("</details>", 1)[0]
    assert 'value="改过的名字"' in opened and 'value="500"' in opened
    assert re.search(rf'id="cap_count-{rule}-error">上限：要填 1 到 100 的整数', opened)

    # the API says the same, in its envelope
    error = api.post(f"{API}/villages/BLM/rules", "committee",
                     json={"category": "volunteer", "title": "帮五保户挑水", "points": 99999}).get_json()["error"]
    assert "「分值」" in error["message"] and "-1000 到 1000" in error["message"] and "points" in error["fields"]


def test_the_number_box_keeps_what_the_clerk_typed_and_never_a_token(app, api, client, auth):
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    code = api.post(f"{API}/redemption-codes", "resident").get_json()
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": code["code"], "points": 1}).status_code == 201
    login(auth, "clerk")
    scanned = client.get(f"/shop/redeem?t={code['token']}")
    assert scanned.status_code == 409
    assert code["token"] not in text(scanned) and 'value=""' in text(scanned).split('id="code"', 1)[1][:200]
    typed = client.get(f"/shop/redeem?code={code['code']}")
    assert f'value="{code["code"]}"' in text(typed).split('id="code"', 1)[1][:200]


def test_the_api_names_fields_by_their_labels_and_ranges(app, api):
    rules = api.get(f"{API}/villages/BLM/rules", "grid").get_json()["items"]
    rule = next(r for r in rules if r["points"] > 0 and not r["photo_required"])
    households = api.get(f"{API}/villages/BLM/households", "grid").get_json()["items"]
    error = api.post(f"{API}/awards", "grid", json={"household_id": households[0]["id"], "rule_id": rule["id"],
                                                   "quantity": -5}).get_json()["error"]
    assert error["code"] == "invalid" and error["message"] == "「次数」要填 1 到 50 的整数"
    assert error["fields"] == {"quantity": ["要填 1 到 50 的整数"]}
    error = api.post(f"{API}/awards", "grid", json={"household_id": "x", "rule_id": rule["id"],
                                                   "quantity": 0}).get_json()["error"]
    assert "「哪一户」" in error["message"] and "「次数」" in error["message"]
