"""Favouritism checks (人情分): kinship declarations, the conflict-of-interest refusals, and the
integrity page and API with the demo's planted case of each kind."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from support import csrf_from, session_of

MOMENT = "2026-12-01 09:30"
KINDS = {"concentrated", "outlier_proposer", "rubber_stamp", "relative", "self_hamlet"}


def _ids(app, number: str, phone: str) -> tuple[int, int]:
    from moralbank.people.models import Household, User

    with session_of(app) as s:
        return (s.scalar(select(Household.id).where(Household.number == number)),
                s.scalar(select(User.id).where(User.phone == phone)))


def _rule(app, title="参加志愿服务（半天）") -> int:
    from moralbank.awards.models import Rule
    from moralbank.people.models import Area

    with session_of(app) as s:
        return s.scalar(select(Rule.id).join(Area, Area.id == Rule.village_id)
                        .where(Area.code == "BLM", Rule.title == title, Rule.active.is_(True)))


def _kinships(app) -> int:
    from moralbank.people.kinships import Kinship

    with session_of(app) as s:
        return s.scalar(select(func.count()).select_from(Kinship))


@pytest.mark.clock(MOMENT)
def test_staff_declare_their_own_kin_and_the_committee_records_for_others(app, api):
    household, grid_id = _ids(app, "BLM-002", "13800000002")
    before = _kinships(app)
    answer = api.post("/api/v1/villages/BLM/kinships", "grid",
                      json={"user_id": grid_id, "household_id": household, "relation": "父母"})
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["relation"] == "父母" and answer.get_json()["household_id"] == household

    # a second time: 409; for someone else (not committee): 403; unknown household: 404; bad body: 422
    again = api.post("/api/v1/villages/BLM/kinships", "grid",
                     json={"user_id": grid_id, "household_id": household, "relation": "父母"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_declared"
    _h, committee_id = _ids(app, "BLM-002", "13800000001")
    other = api.post("/api/v1/villages/BLM/kinships", "grid",
                     json={"user_id": committee_id, "household_id": household, "relation": "父母"})
    assert other.status_code == 403
    xlc_household, _u = _ids(app, "XLC-001", "13800000001")
    assert api.post("/api/v1/villages/BLM/kinships", "grid", json={
        "user_id": grid_id, "household_id": xlc_household, "relation": "父母"}).status_code == 404
    bad = api.post("/api/v1/villages/BLM/kinships", "grid", json={"user_id": grid_id, "household_id": household})
    assert bad.status_code == 422 and "relation" in bad.get_json()["error"]["fields"]
    assert api.post("/api/v1/villages/BLM/kinships", "resident", json={
        "user_id": grid_id, "household_id": household, "relation": "父母"}).status_code == 403
    assert _kinships(app) == before + 1

    # the committee records one for the grid manager
    household3, _u = _ids(app, "BLM-003", "13800000002")
    recorded = api.post("/api/v1/villages/BLM/kinships", "committee",
                        json={"user_id": grid_id, "household_id": household3, "relation": "子女"})
    assert recorded.status_code == 201 and recorded.get_json()["declared_by_id"] == committee_id

    # the committee lists everyone's; the grid manager their own
    everyone = api.get("/api/v1/villages/BLM/kinships", "committee").get_json()["items"]
    own = api.get("/api/v1/villages/BLM/kinships", "grid").get_json()["items"]
    assert {k["household_id"] for k in everyone} >= {household, household3}
    assert {k["user_id"] for k in own} == {grid_id}
    assert api.get("/api/v1/villages/BLM/kinships", "resident").status_code == 403


@pytest.mark.clock(MOMENT)
def test_nobody_proposes_or_approves_for_their_kin(app, api, client, auth):
    household, grid_id = _ids(app, "BLM-004", "13800000002")
    _h, committee_id = _ids(app, "BLM-004", "13800000001")
    rule = _rule(app)
    # proposed before any declaration: waits for review
    award = api.post("/api/v1/awards", "grid", json={"household_id": household, "rule_id": rule})
    assert award.status_code == 201
    award_id = award.get_json()["id"]

    for who, user_id in (("grid", grid_id), ("committee", committee_id)):
        assert api.post("/api/v1/villages/BLM/kinships", who, json={
            "user_id": user_id, "household_id": household, "relation": "兄弟姐妹"}).status_code == 201

    refused = api.post("/api/v1/awards", "grid", json={"household_id": household, "rule_id": rule})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "conflict_of_interest"
    approve = api.post(f"/api/v1/awards/{award_id}/approve", "committee")
    assert approve.status_code == 403 and approve.get_json()["error"]["code"] == "conflict_of_interest"
    assert api.get(f"/api/v1/awards/{award_id}", "committee").get_json()["status"] == "proposed"

    # the review page hides it from the related approver, and shows it to another committee member
    auth.login("committee")
    assert f'value="{award_id}"' not in client.get("/committee/review").get_data(as_text=True)
    auth.logout()
    auth.login("13800000143")
    page = client.get("/committee/review").get_data(as_text=True)
    assert f'value="{award_id}"' in page
    assert api.post(f"/api/v1/awards/{award_id}/approve", "13800000143").status_code == 200

    # on the web the grid manager gets a readable message, not a bare 403 page
    auth.logout()
    auth.login("grid")
    form = client.get("/awards/new").get_data(as_text=True)
    response = client.post("/awards/new", data={"csrf_token": csrf_from(form), "household_id": str(household),
                                                "rule_id": str(rule), "quantity": "1",
                                                "idempotency_key": "kin-web-1"}, follow_redirects=True)
    assert response.status_code == 403 and "这户是您登记的亲属" in response.get_data(as_text=True)


@pytest.mark.clock(MOMENT)
def test_the_integrity_api_shows_each_planted_case_to_the_committee_and_supervisor(app, api):
    for who in ("committee", "supervisor"):
        answer = api.get("/api/v1/villages/BLM/integrity", who)
        assert answer.status_code == 200
        items = answer.get_json()["items"]
        assert {item["kind"] for item in items} == KINDS
        for item in items:
            assert set(item) >= {"kind", "user_id", "household_id", "detail", "value", "peer_median"}
            assert item["detail"] and item["explanation"]
    by_kind = {item["kind"]: item for item in items}
    _h, grid_id = _ids(app, "BLM-001", "13800000002")
    assert by_kind["relative"]["user_id"] == grid_id and by_kind["relative"]["household_id"]
    assert by_kind["concentrated"]["value"] > by_kind["concentrated"]["peer_median"]
    assert by_kind["outlier_proposer"]["value"] >= 2 * by_kind["outlier_proposer"]["peer_median"]

    # periods: a named one, all, a bad one
    assert api.get("/api/v1/villages/BLM/integrity?period=all", "committee").status_code == 200
    quiet = api.get("/api/v1/villages/BLM/integrity?period=2026-03", "committee").get_json()
    assert quiet["items"] == []  # before the demo's history
    assert api.get("/api/v1/villages/BLM/integrity?period=2026-13", "committee").status_code == 422
    for who in ("grid", "resident", "clerk", "committee_xlc"):
        assert api.get("/api/v1/villages/BLM/integrity", who).status_code == 403, who


@pytest.mark.clock(MOMENT)
def test_a_relative_flag_counts_only_what_went_through_before_the_declaration(app, api):
    household, grid_id = _ids(app, "BLM-005", "13800000002")
    before = [i for i in api.get("/api/v1/villages/BLM/integrity", "committee").get_json()["items"]
              if i["kind"] == "relative" and i["household_id"] == household]
    assert before == []
    api.post("/api/v1/villages/BLM/kinships", "grid",
             json={"user_id": grid_id, "household_id": household, "relation": "堂表亲"})
    after = [i for i in api.get("/api/v1/villages/BLM/integrity", "committee").get_json()["items"]
             if i["kind"] == "relative" and i["household_id"] == household]
    from moralbank.awards.models import Award

    with session_of(app) as s:
        earlier = s.scalars(select(Award.points).where(Award.household_id == household,
                                                       Award.status != "rejected",
                                                       Award.proposed_by_id == grid_id)).all()
    if earlier:
        assert len(after) == 1 and after[0]["value"] == sum(earlier)
    else:
        assert after == []


@pytest.mark.clock(MOMENT)
def test_the_web_pages_declare_and_explain(app, client, auth):
    auth.login("grid")
    page = client.get("/kinships")
    assert page.status_code == 200 and "亲属申报" in page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    wrong = client.post("/kinships", data={"csrf_token": csrf_from(html), "household": "BLM-999",
                                           "relation": "父母", "idempotency_key": "k1"})
    text = wrong.get_data(as_text=True)
    assert wrong.status_code == 422 and "户号：本村没有这个户号" in text and 'value="BLM-999"' in text
    done = client.post("/kinships", data={"csrf_token": csrf_from(html), "household": "BLM-007",
                                          "relation": "父母", "idempotency_key": "k2"}, follow_redirects=True)
    assert done.status_code == 200 and "已登记" in done.get_data(as_text=True)
    assert "BLM-007" in done.get_data(as_text=True)
    assert client.get("/integrity").status_code == 403  # grid managers do not read the integrity page
    auth.logout()

    auth.login("supervisor")
    board = client.get("/integrity?village=BLM")
    text = board.get_data(as_text=True)
    assert board.status_code == 200
    assert "不是结论" in text  # a flag is a question, not a verdict
    for title in ("加分集中在少数几户", "户均加分远高于他人", "几秒一条的连续审核", "登记亲属之前经手的积分", "偏向自家所在的屯"):
        assert title in text
    assert client.get("/integrity?village=BLM&period=bad").status_code == 422
    assert client.get("/integrity?village=NOPE").status_code == 404
