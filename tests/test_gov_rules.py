"""Rules adopted by the villagers' meeting (issue 14, part 1): with ``rule_changes_need_meeting`` on,
a new rule, a new version and a retirement are drafts until a meeting with a quorum adopts them by a
majority; the API, the committee's page, the public catalogue with the adopting meeting and its
print view, the audit log; and the demo as ``flask seed-demo`` makes it.

The tests' demo template turns the setting off (see ``support.build_database``); each test here
turns it on as a committee would.
"""
from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from support import csrf_from, session_of

API = "/api/v1"
#: 2026-03-12 村民代表会议: 43 of 45 representatives, 41 for, 2 against
MEETING = {"held_on": "2026-03-12", "kind": "representatives", "entitled": 45, "present": 43, "votes_for": 41,
           "votes_against": 2, "votes_abstain": 0}


def patch(client, api, path, who, body):
    return client.patch(path, headers=api.headers(who), json=body)


def need_meetings(client, api, on: bool = True) -> None:
    response = patch(client, api, f"{API}/villages/BLM", "committee", {"rule_changes_need_meeting": on})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rule_changes_need_meeting"] is on


def error_of(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:400])
    error = response.get_json()["error"]
    assert error["message"].strip()
    if code:
        assert error["code"] == code, error
    return error


def new_rule(api, title: str, points: int = 4, **extra) -> dict:
    response = api.post(f"{API}/villages/BLM/rules", "committee",
                        json={"category": "volunteer" if points > 0 else "deduction", "title": title,
                              "points": points, **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def rules_by_id(api, **query) -> dict[int, dict]:
    response = api.get(f"{API}/villages/BLM/rules", "grid", query_string={"all": 1, **query})
    assert response.status_code == 200
    return {rule["id"]: rule for rule in response.get_json()["items"]}


def a_household(api) -> int:
    return api.get(f"{API}/me", "resident").get_json()["household"]["id"]


def propose(api, household_id: int, rule_id: int):
    return api.post(f"{API}/awards", "committee", json={"household_id": household_id, "rule_id": rule_id})


def meeting_count(app) -> int:
    from moralbank.awards.models import Meeting
    with session_of(app) as session:
        return session.scalar(select(func.count()).select_from(Meeting))


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 200, 200)).save(buffer, "PNG")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.mark.clock("2026-12-01 10:00")
def test_a_new_rule_a_new_version_and_a_retirement_wait_for_a_meeting(app, client, api):
    need_meetings(client, api)
    household = a_household(api)
    draft = new_rule(api, "清理河道垃圾")
    assert (draft["status"], draft["adopted_by"], draft["change"], draft["veto"]) == ("draft", None, "new", False)
    error_of(propose(api, household, draft["id"]), 422, "rule_not_in_force")

    in_force = [rule for rule in api.get(f"{API}/villages/BLM/rules", "grid").get_json()["items"]]
    assert all(rule["status"] == "in_force" for rule in in_force) and draft["id"] not in {r["id"] for r in in_force}
    revised_from, retired_from = in_force[0], in_force[1]
    revision = patch(client, api, f"{API}/rules/{revised_from['id']}", "committee", {"points": 9})
    assert revision.status_code == 201, revision.get_json()
    revision = revision.get_json()
    assert (revision["status"], revision["change"], revision["points"]) == ("draft", "revision", 9)
    retirement = patch(client, api, f"{API}/rules/{retired_from['id']}", "committee", {"active": False}).get_json()
    assert (retirement["status"], retirement["change"]) == ("draft", "retirement")
    # Until the meeting the versions in force stay in force, and one draft per item at a time.
    assert rules_by_id(api)[revised_from["id"]]["status"] == "in_force"
    assert propose(api, household, retired_from["id"]).status_code == 201
    error_of(patch(client, api, f"{API}/rules/{revised_from['id']}", "committee", {"points": 10}), 409,
             "draft_pending")
    drafts = api.get(f"{API}/villages/BLM/rules", "grid", query_string={"status": "draft"}).get_json()["items"]
    assert {rule["id"] for rule in drafts} >= {draft["id"], revision["id"], retirement["id"]}  # + the demo's

    response = api.post(f"{API}/villages/BLM/meetings", "committee",
                        json={**MEETING, "adopts": [draft["id"], revision["id"], retirement["id"]]})
    assert response.status_code == 201, response.get_json()
    meeting = response.get_json()
    assert meeting["line"] == "2026-03-12 村民代表会议 41 票赞成 2 票反对"
    assert {(item["id"], item["change"], item["status"]) for item in meeting["adopted"]} == {
        (draft["id"], "new", "in_force"), (revision["id"], "revision", "in_force"),
        (retirement["id"], "retirement", "retired")}
    rules = rules_by_id(api)
    assert rules[draft["id"]]["status"] == "in_force" and rules[draft["id"]]["adopted_by"] == meeting["id"]
    assert rules[revision["id"]]["status"] == "in_force" and rules[revised_from["id"]]["status"] == "retired"
    assert rules[retired_from["id"]]["status"] == "retired"
    assert propose(api, household, draft["id"]).status_code == 201
    error_of(propose(api, household, retired_from["id"]), 422, "rule_inactive")

    listed = api.get(f"{API}/villages/BLM/meetings", "grid").get_json()["items"]
    assert listed[0]["id"] == meeting["id"] and len(listed[0]["adopted"]) == 3  # newest first, then the demo's
    from moralbank.audit.models import AuditEntry
    with session_of(app) as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.in_(
            ("meeting.record", "rule.adopt")))).all()
    assert actions.count("meeting.record") == 2 and actions.count("rule.adopt") == 3  # the demo's meeting + this


@pytest.mark.clock("2026-12-01 10:00")
@pytest.mark.parametrize(("change", "status", "code", "field"), [
    ({"present": 22, "votes_for": 20}, 422, "no_quorum", "present"),   # 22 of 45 is not more than half
    ({"votes_for": 21, "votes_against": 22}, 422, "not_adopted", "votes_for"),  # 21 of 43 present
    ({"votes_for": 40, "votes_against": 2, "votes_abstain": 2}, 422, "invalid", "votes_for"),  # 44 votes, 43 present
    ({"present": 46}, 422, "invalid", "present"),                      # more present than entitled
    ({"held_on": "2099-01-01"}, 422, "invalid", "held_on"),
    ({"kind": "party"}, 422, "invalid", "kind"),
    ({"entitled": 0}, 422, "invalid", "entitled"),
    ({"adopts": []}, 422, "invalid", "adopts"),
    ({"votes_for": 41.5}, 422, "invalid", "votes_for"),
])
def test_a_meeting_without_quorum_majority_or_sound_figures_adopts_nothing(app, client, api, change, status, code,
                                                                          field):
    need_meetings(client, api)
    draft = new_rule(api, "参加义务植树")
    before = meeting_count(app)
    body = {**MEETING, "adopts": [draft["id"]], **change}
    error = error_of(api.post(f"{API}/villages/BLM/meetings", "committee", json=body), status, code)
    assert field in error["fields"], error
    assert meeting_count(app) == before
    assert rules_by_id(api)[draft["id"]]["status"] == "draft"


@pytest.mark.clock("2026-12-01 10:00")
def test_only_drafts_of_the_village_and_only_its_committee(app, client, api):
    need_meetings(client, api)
    draft = new_rule(api, "参加环境卫生评比")
    in_force = api.get(f"{API}/villages/BLM/rules", "grid").get_json()["items"][0]
    error_of(api.post(f"{API}/villages/BLM/meetings", "committee", json={**MEETING, "adopts": [in_force["id"]]}),
             422, "not_a_draft")
    for who in ("grid", "resident", "clerk", "committee_xlc", "supervisor"):
        assert api.post(f"{API}/villages/BLM/meetings", who,
                        json={**MEETING, "adopts": [draft["id"]]}).status_code == 403, who
    for who in ("resident", "clerk", "committee_xlc"):
        assert api.get(f"{API}/villages/BLM/meetings", who).status_code == 403, who
    assert api.get(f"{API}/villages/BLM/meetings", "supervisor").status_code == 200
    assert rules_by_id(api)[draft["id"]]["status"] == "draft"


@pytest.mark.clock("2026-12-01 10:00")
def test_minutes_as_a_photo_or_a_pdf_and_nothing_else(app, client, api):
    need_meetings(client, api)
    for name, data, ok in (("minutes.png", png(), True), ("minutes.pdf", PDF, True),
                           ("minutes.txt", b"not minutes", False)):
        draft = new_rule(api, f"会议记录测试 {name}")
        form = {key: str(value) for key, value in MEETING.items()}
        form["adopts"] = str(draft["id"])
        form["minutes"] = (io.BytesIO(data), name)
        response = client.post(f"{API}/villages/BLM/meetings", data=form, content_type="multipart/form-data",
                               headers=api.headers("committee"))
        if ok:
            assert response.status_code == 201, response.get_json()
            assert response.get_json()["has_minutes"] is True
        else:
            error = error_of(response, 422, "bad_minutes")
            assert "minutes" in error["fields"]


@pytest.mark.clock("2026-12-01 10:00")
def test_the_committee_records_a_meeting_on_its_page_and_the_board_shows_the_catalogue(app, client, api, auth):
    need_meetings(client, api)
    draft = new_rule(api, "参加村规民约宣讲", points=2)
    auth.login("committee")
    page = client.get("/committee/meetings").get_data(as_text=True)
    assert "参加村规民约宣讲" in page and 'name="adopts"' in page
    form = {"csrf_token": csrf_from(page), "idempotency_key": uuid.uuid4().hex, "held_on": "2026-11-20",
            "kind": "assembly", "entitled": "120", "present": "50", "votes_for": "50", "votes_against": "0",
            "votes_abstain": "0", "adopts": [str(draft["id"])]}
    refused = client.post("/committee/meetings", data=form)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "实到人数：需超过应到人数的一半" in html and 'value="120"' in html  # named by its label, typed kept
    form.update(present="90", votes_for="80", votes_against="6", votes_abstain="4", idempotency_key=uuid.uuid4().hex)
    done = client.post("/committee/meetings", data=form, follow_redirects=True)
    assert done.status_code == 200
    assert "2026-11-20 村民会议 80 票赞成 6 票反对" in done.get_data(as_text=True)

    board = client.get("/v/BLM/catalogue").get_data(as_text=True)
    assert "参加村规民约宣讲" in board and "2026-11-20 村民会议 80 票赞成 6 票反对" in board
    assert "村民代表会议 41 票赞成 2 票反对" in board  # the demo's catalogue, adopted in March
    printed = client.get("/v/BLM/catalogue?print=1").get_data(as_text=True)
    assert "参加村规民约宣讲" in printed and "print.css" in printed
    rules_page = client.get("/committee/rules").get_data(as_text=True)
    assert "等待村民会议表决的草案" not in rules_page or "参加村规民约宣讲" not in rules_page.split("等待村民会议表决的草案")[1]


def test_the_demo_adopts_its_catalogue_at_a_meeting_and_keeps_a_draft(empty_app):
    from moralbank.awards import vetoes
    from moralbank.awards.meetings import catalogue_in_force, meeting_line, meetings_of
    from moralbank.awards.rules import draft_rules
    from moralbank.demo import seed_demo
    from moralbank.people.models import Household
    from moralbank.people.service import village_by_code

    with empty_app.app_context():
        seed_demo(echo=lambda *args: None)
        village = village_by_code("BLM")
        assert village.rule_changes_need_meeting is True
        meeting, = meetings_of(village)
        assert meeting_line(meeting).endswith("村民代表会议 41 票赞成 2 票反对")
        catalogue = catalogue_in_force(village)
        assert catalogue and all(adopted is not None and adopted.id == meeting.id for _, adopted in catalogue)
        assert {rule.title for rule, _ in catalogue if rule.veto} == {"聚众赌博", "违法犯罪被依法处理", "拒不履行赡养义务"}
        assert [rule.title for rule in draft_rules(village)] == ["参加垃圾分类督导"]
        vetoed = vetoes.vetoed_in(village)
        assert len(vetoed) == 1
        household = next(iter(vetoed))
        from moralbank.extensions import db
        assert vetoes.veto_of(db.session.get(Household, household))["title"] == "聚众赌博"


@pytest.mark.clock("2026-12-01 10:00")
def test_the_catalogue_editor_drafts_when_changes_need_a_meeting(app, client, api, auth):
    need_meetings(client, api)
    auth.login("committee")
    page = client.get("/committee/rules").get_data(as_text=True)
    form = {"csrf_token": csrf_from(page), "idempotency_key": uuid.uuid4().hex, "category": "deduction",
            "title": "殴打老人", "points": "-20", "veto": "1"}
    done = client.post("/committee/rules/new", data=form, follow_redirects=True).get_data(as_text=True)
    assert "已起草「殴打老人」，村民会议通过后生效" in done
    drafts = done.split("等待村民会议表决的草案")[1]
    assert "殴打老人" in drafts and "一票否决" in drafts
    refused = client.post("/committee/rules/new", data={**form, "idempotency_key": uuid.uuid4().hex,
                                                         "category": "volunteer", "points": "5"})
    assert refused.status_code == 422 and "一票否决项只能是扣分项" in refused.get_data(as_text=True)
    created = [rule for rule in rules_by_id(api, status="draft").values() if rule["title"] == "殴打老人"]
    assert len(created) == 1 and created[0]["veto"] is True
