"""一票否决 (issue 14, part 2): a veto award goes through review and public notice like any award;
once it posts, the household has no stars, is left out of the published red list (and of the
plain ranking where the village hides it), sees why and until when on its home page, and may be
barred from spending; reversing the award lifts the veto, and the veto period's end does too.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from moralbank.database import travel

API = "/api/v1"


def patch(client, api, path, body):
    return client.patch(path, headers=api.headers("committee"), json=body)


def settings(client, api, **changes) -> dict:
    response = patch(client, api, f"{API}/villages/BLM", changes)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def household(api, household_id: int) -> dict:
    response = api.get(f"{API}/households/{household_id}", "committee")
    assert response.status_code == 200
    return response.get_json()


def ranking_line(api, household_id: int, period: str):
    items = api.get(f"{API}/rankings", "committee",
                    query_string={"village": "BLM", "period": period, "limit": 200}).get_json()["items"]
    return next((item for item in items if item["household_id"] == household_id), None)


def post_due(runner) -> None:
    result = runner.invoke(args=["awards", "post-due"])
    assert result.exit_code == 0, result.output


@pytest.mark.clock("2026-12-01 10:00")
def test_a_veto_item_is_a_deduction(client, api):
    refused = api.post(f"{API}/villages/BLM/rules", "committee",
                       json={"category": "volunteer", "title": "好人好事", "points": 5, "veto": True})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "veto_not_deduction"
    assert "veto" in refused.get_json()["error"]["fields"]
    settings(client, api, veto_period="quarter")
    bad = patch(client, api, f"{API}/villages/BLM", {"veto_period": "week", "veto_blocks_redemption": 1})
    assert bad.status_code == 422 and set(bad.get_json()["error"]["fields"]) == {"veto_period", "veto_blocks_redemption"}
    assert settings(client, api)["veto_period"] == "quarter"


@pytest.mark.clock("2026-12-01 10:00")
def test_a_posted_veto_award_bars_stars_and_honours_until_the_year_ends(app, client, api, auth, runner):
    me = api.get(f"{API}/me", "resident").get_json()["household"]
    hid = me["id"]
    assert me["veto"] is None and me["stars"] > 0
    rule = api.post(f"{API}/villages/BLM/rules", "committee",
                    json={"category": "deduction", "title": "聚众赌博被查处", "points": -5, "veto": True})
    assert rule.status_code == 201 and rule.get_json()["veto"] is True
    rule = rule.get_json()

    award = api.post(f"{API}/awards", "grid", json={"household_id": hid, "rule_id": rule["id"]}).get_json()
    approved = api.post(f"{API}/awards/{award['id']}/approve", "committee").get_json()
    assert approved["status"] == "approved"
    assert household(api, hid)["veto"] is None  # in public notice: open to objection, no veto yet
    travel(timedelta(days=4))
    post_due(runner)
    body = household(api, hid)
    assert body["veto"] == {"until": "2026-12-31", "rule_id": rule["id"], "award_id": award["id"],
                            "title": "聚众赌博被查处"}
    assert body["stars"] == 0
    line = ranking_line(api, hid, "2026-12")
    assert line is not None and line["stars"] == 0  # still ranked with its score, without stars

    auth.login("resident")
    home = client.get("/home").get_data(as_text=True)
    assert "聚众赌博被查处" in home and "2026-12-31" in home and 'data-testid="veto"' in home
    auth.logout()

    # The red list the committee publishes leaves it out; a village that hides it leaves it out of the ranking.
    published = api.post(f"{API}/villages/BLM/ranking-snapshots", "committee", json={"period": "2026-12"})
    assert published.status_code == 201, published.get_json()
    entries = published.get_json()["items"]
    assert entries and hid not in {entry["household_id"] for entry in entries}
    assert [entry["rank"] for entry in entries] == list(range(1, len(entries) + 1))
    settings(client, api, veto_hides_ranking=True)
    assert ranking_line(api, hid, "2026-12") is None and ranking_line(api, hid, "2026") is None
    assert ranking_line(api, hid, "2026-11") is not None  # the veto runs from its posting on
    settings(client, api, veto_hides_ranking=False)

    # Spending: allowed unless the village blocks it.
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]

    def pay():
        code = api.post(f"{API}/redemption-codes", "resident").get_json()["code"]
        return api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": code, "points": 1})
    assert pay().status_code == 201
    settings(client, api, veto_blocks_redemption=True)
    blocked = pay()
    assert blocked.status_code == 422 and blocked.get_json()["error"]["code"] == "household_vetoed"
    assert "2026-12-31" in blocked.get_json()["error"]["message"]

    # Reversing the veto award lifts the veto.
    transfer_id = api.get(f"{API}/awards/{award['id']}", "committee").get_json()["transfer_id"]
    reversal = api.post(f"{API}/transfers/{transfer_id}/reversal", "committee", json={"reason": "查无实据"})
    assert reversal.status_code == 201, reversal.get_json()
    body = household(api, hid)
    assert body["veto"] is None and body["stars"] > 0
    assert pay().status_code == 201


@pytest.mark.clock("2026-12-30 10:00")
def test_the_veto_ends_with_the_veto_period(client, api):
    hid = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    settings(client, api, notice_days=0)
    rule = api.post(f"{API}/villages/BLM/rules", "committee",
                    json={"category": "deduction", "title": "违法犯罪被处理", "points": -10, "veto": True}).get_json()
    award = api.post(f"{API}/awards", "grid", json={"household_id": hid, "rule_id": rule["id"]}).get_json()
    assert api.post(f"{API}/awards/{award['id']}/approve", "committee").get_json()["status"] == "posted"
    assert household(api, hid)["veto"]["until"] == "2026-12-31"
    assert ranking_line(api, hid, "2026")["stars"] == 0
    travel(timedelta(days=2))  # 2027-01-01: a new veto period
    assert household(api, hid)["veto"] is None
    assert ranking_line(api, hid, "2026")["stars"] == 0  # the year it was vetoed keeps no stars


def test_the_openapi_document_names_the_governance_fields(client):
    document = client.get(f"{API}/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert {"status", "adopted_by", "veto"} <= set(schemas["Rule"]["properties"])
    assert "veto" in schemas["Household"]["properties"]
    assert {"until", "rule_id", "award_id"} <= set(schemas["Veto"]["properties"])
    assert {"held_on", "kind", "entitled", "present", "votes_for", "votes_against", "votes_abstain",
            "adopts"} <= set(schemas["MeetingCreate"]["properties"])
    assert "adopted" in schemas["Meeting"]["properties"]
    assert {"rule_changes_need_meeting", "veto_period", "veto_blocks_redemption"} <= set(
        schemas["Village"]["properties"])
    assert {"post", "get"} <= set(document["paths"]["/villages/{code}/meetings"])
    assert re.search("no_quorum", document["paths"]["/villages/{code}/meetings"]["post"]["summary"])


def test_the_settings_page_sets_the_governance_settings(client, api, auth):
    from support import csrf_from
    auth.login("committee")
    page = client.get("/committee/settings").get_data(as_text=True)
    assert 'name="rule_changes_need_meeting"' in page and 'name="veto_period"' in page
    form = {"csrf_token": csrf_from(page), "notice_days": "3", "code_ttl_seconds": "300", "approval_threshold": "20",
            "star_thresholds": "20 50 100 160 240", "governance": "1", "rule_changes_need_meeting": "1",
            "veto_blocks_redemption": "1", "veto_period": "quarter"}
    assert client.post("/committee/settings", data=form).status_code == 302
    body = api.get(f"{API}/villages/BLM", "committee").get_json()
    assert (body["rule_changes_need_meeting"], body["veto_blocks_redemption"], body["veto_hides_ranking"],
            body["veto_period"]) == (True, True, False, "quarter")
    refused = client.post("/committee/settings", data={**form, "veto_period": "week"})
    assert refused.status_code == 422 and "一票否决的期限" in refused.get_data(as_text=True)
    assert api.get(f"{API}/villages/BLM", "committee").get_json()["veto_period"] == "quarter"
