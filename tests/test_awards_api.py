"""The award life cycle through the JSON API: propose, approve, notice and
objection, posting by `flask awards post-due`, the refusals, reversal and the audit trail.

Rules used here are added through the API by the committee, so caps and photo
requirements do not depend on the demo's random history.
"""
from __future__ import annotations

import io
import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from sqlalchemy import func, select

from support import DEMO_PASSWORD, PHONES, session_of
from moralbank.database import travel, write_transaction
from moralbank.extensions import db

NOTICE_DAYS = 3  # the demo village's setting
THRESHOLD = 20




# --- helpers ---------------------------------------------------------------------------------



def key() -> str:
    return uuid.uuid4().hex


def error_of(response, status: int, code: str | None = None) -> dict:
    """The response is the JSON error envelope with this status (and code) and a readable message."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:400])
    error = response.get_json()["error"]
    assert isinstance(error["message"], str) and error["message"].strip(), error
    if code is not None:
        assert error["code"] == code, error
    return error


def household_id(app, number: str) -> int:
    from moralbank.people.models import Household
    with session_of(app) as session:
        return session.scalar(select(Household.id).where(Household.number == number))


def award_count(app) -> int:
    from moralbank.awards.models import Award
    with session_of(app) as session:
        return session.scalar(select(func.count()).select_from(Award))


def add_rule(api, title: str, points: int, *, category: str | None = None, cap=None, photo=False) -> dict:
    category = category or ("deduction" if points < 0 else "volunteer")
    response = api.post("/api/v1/villages/BLM/rules", "committee",
                        json={"category": category, "title": title, "points": points, "cap": cap,
                              "photo_required": photo})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def money(api, hid: int) -> tuple[int, int]:
    """(balance, score) of a household as the committee sees it."""
    body = api.get(f"/api/v1/households/{hid}", "committee").get_json()
    return body["balance"], body["score"]


def award(api, award_id: int) -> dict:
    response = api.get(f"/api/v1/awards/{award_id}", "committee")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def propose(api, who: str, hid: int, rule_id: int, *, key_=None, **extra):
    return api.post("/api/v1/awards", who, json={"household_id": hid, "rule_id": rule_id, **extra}, key=key_)


def proposed(api, who: str, hid: int, rule_id: int, **extra) -> dict:
    response = propose(api, who, hid, rule_id, key_=key(), **extra)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "proposed"
    return body


def approve(api, award_id: int, who: str = "committee", key_=None):
    return api.post(f"/api/v1/awards/{award_id}/approve", who, key=key_)


def set_notice_days(api, days: int) -> None:
    response = api.client_patch("/api/v1/villages/BLM", "committee", {"notice_days": days})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["notice_days"] == days


def post_due(runner) -> int:
    result = runner.invoke(args=["awards", "post-due"])
    assert result.exit_code == 0, result.output
    match = re.search(r"posted (\d+)", result.output)
    assert match, result.output
    return int(match.group(1))


def make_user(app, phone: str, name: str, *, resident_of: str | None = None) -> None:
    """A new committee login of BLM (password DEMO_PASSWORD); ``resident_of`` links it to that household's head."""
    from moralbank.people.models import Household, Resident
    from moralbank.people.service import create_user, village_by_code
    with session_of(app) as session:
        with write_transaction():
            user = create_user(phone=phone, name=name, password=DEMO_PASSWORD, role="committee",
                               area=village_by_code("BLM"))
            if resident_of:
                user.resident_id = session.scalar(
                    select(Resident.id).join(Household, Household.id == Resident.household_id)
                    .where(Household.number == resident_of, Resident.is_head.is_(True)))


def grant_committee_to_resident(app) -> None:
    """The demo resident (head of BLM-001) is also elected to the village committee."""
    from moralbank.people.models import RoleGrant, User
    from moralbank.people.service import village_by_code
    with session_of(app) as session:
        with write_transaction():
            user = session.scalar(select(User).where(User.phone == PHONES["resident"]))
            blm = village_by_code("BLM")
            user.grants.append(RoleGrant(role="committee", area_id=blm.id, village_id=blm.id))


@pytest.fixture
def api(api, app, client, monkeypatch):
    """The conftest ``api``, plus PATCH; tokens are issued directly rather than through a password check.

    (Logging in is tested elsewhere; argon2 costs about a second per login, which adds up here.
    Users made by these tests get a cheap hash for the same reason.)
    """
    from argon2 import PasswordHasher

    from moralbank.people.auth import issue_token
    from moralbank.people.models import User

    monkeypatch.setattr("moralbank.people.service.hash_password",
                        PasswordHasher(time_cost=1, memory_cost=1024).hash)

    def token(who):
        phone = PHONES.get(who, who)
        if phone not in api._tokens:
            with session_of(app) as session:
                user = session.scalar(select(User).where(User.phone == phone))
                api._tokens[phone] = issue_token(user)[0]
        return api._tokens[phone]

    def client_patch(path, who, body):
        return client.patch(path, headers=api.headers(who), json=body)

    api.token = token
    api.client_patch = client_patch
    return api


@pytest.fixture
def blm(app):
    """Household ids of the demo: BLM-001 (the resident's, hamlet 1), BLM-002/003 (hamlet 1), BLM-020 (hamlet 2)."""
    return {number: household_id(app, number) for number in ("BLM-001", "BLM-002", "BLM-003", "BLM-007", "BLM-020")}


# --- 1. propose → approve → posted at once; idempotency ---------------------------------------

def test_zero_notice_posts_on_approval_and_replays_change_nothing(app, api, blm):
    set_notice_days(api, 0)
    rule = add_rule(api, "帮邻居秋收", 7)
    hid = blm["BLM-002"]
    balance, score = money(api, hid)
    count = award_count(app)

    k = key()
    first = propose(api, "grid", hid, rule["id"], key_=k, note="帮王家收玉米")
    assert first.status_code == 201, first.get_json()
    created = first.get_json()
    assert created["status"] == "proposed" and created["points"] == 7 and created["household_id"] == hid
    assert money(api, hid) == (balance, score)  # proposing moves no points

    replay = propose(api, "grid", hid, rule["id"], key_=k, note="帮王家收玉米")
    assert replay.status_code == 201
    assert replay.get_json()["id"] == created["id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert award_count(app) == count + 1

    other = propose(api, "grid", hid, rule["id"], key_=k, note="另一件事")
    error_of(other, 409, "idempotency_conflict")
    assert award_count(app) == count + 1

    k2 = key()
    approved = approve(api, created["id"], key_=k2)
    assert approved.status_code == 200, approved.get_json()
    body = approved.get_json()
    assert body["status"] == "posted" and body["transfer_id"]
    assert money(api, hid) == (balance + 7, score + 7)

    again = approve(api, created["id"], key_=k2)
    assert again.status_code == 200 and again.get_json() == body
    assert money(api, hid) == (balance + 7, score + 7)

    error_of(approve(api, created["id"], key_=key()), 409, "invalid_state")
    assert money(api, hid) == (balance + 7, score + 7)

    lines = api.get(f"/api/v1/households/{hid}/transfers?limit=5", "committee").get_json()["items"]
    assert lines[0]["id"] == body["transfer_id"] and lines[0]["amount"] == 7 and lines[0]["code"] == "award"

    # a deduction lowers both at once
    fine = add_rule(api, "柴草占道", -4)
    deduction = proposed(api, "grid", hid, fine["id"])
    assert deduction["points"] == -4
    assert approve(api, deduction["id"], key_=key()).get_json()["status"] == "posted"
    assert money(api, hid) == (balance + 3, score + 3)


# --- 2. notice period, post-due, objections ----------------------------------------------------

def test_approval_waits_for_notice_then_post_due_posts_once(app, api, runner, blm):
    rule = add_rule(api, "义务修路", 6)
    hid = blm["BLM-002"]
    balance, score = money(api, hid)
    created = proposed(api, "grid", hid, rule["id"])

    body = approve(api, created["id"], key_=key()).get_json()
    assert body["status"] == "approved" and body["transfer_id"] is None
    ends = datetime.fromisoformat(body["notice_ends_at"])
    assert timedelta(days=NOTICE_DAYS) - timedelta(minutes=5) < ends - datetime.now(ends.tzinfo) \
        <= timedelta(days=NOTICE_DAYS)
    assert money(api, hid) == (balance, score)

    assert post_due(runner) == 0  # still in notice
    assert award(api, created["id"])["status"] == "approved"
    assert money(api, hid) == (balance, score)

    travel(timedelta(days=NOTICE_DAYS, minutes=1))
    assert post_due(runner) == 1
    assert award(api, created["id"])["status"] == "posted"
    assert money(api, hid) == (balance + 6, score + 6)

    assert post_due(runner) == 0  # cron runs again: nothing more
    assert money(api, hid) == (balance + 6, score + 6)


def test_objection_blocks_posting_until_committee_approves_again(app, api, runner, blm):
    rule = add_rule(api, "照看邻家孩子", 4)
    hid = blm["BLM-002"]
    balance, score = money(api, hid)
    created = proposed(api, "grid", hid, rule["id"])

    # no objection before the award is in notice
    error_of(api.post(f"/api/v1/awards/{created['id']}/objections", "resident", json={"reason": "没这回事"}),
             409, "not_in_notice")
    approve(api, created["id"], key_=key())

    error_of(api.post(f"/api/v1/awards/{created['id']}/objections", "resident", json={"reason": ""}), 422)
    error_of(api.post(f"/api/v1/awards/{created['id']}/objections", "clerk", json={"reason": "不对"}), 403)
    assert award(api, created["id"])["status"] == "approved"

    objected = api.post(f"/api/v1/awards/{created['id']}/objections", "resident", json={"reason": "那天他不在家"},
                        key=key())
    assert objected.status_code == 201, objected.get_json()
    assert objected.get_json()["status"] == "disputed"
    error_of(api.post(f"/api/v1/awards/{created['id']}/objections", "resident", json={"reason": "再说一次"}),
             409, "already_objected")

    # a second award, objected to and cleared by the committee while still in notice: it waits out its notice
    cleared = proposed(api, "grid", hid, rule["id"])
    approve(api, cleared["id"], key_=key())
    api.post(f"/api/v1/awards/{cleared['id']}/objections", "resident", json={"reason": "问问"}, key=key())
    assert award(api, cleared["id"])["status"] == "disputed"
    assert approve(api, cleared["id"], key_=key()).get_json()["status"] == "approved"
    assert money(api, hid) == (balance, score)

    travel(timedelta(days=NOTICE_DAYS + 1))
    assert post_due(runner) == 1  # the cleared one only
    assert award(api, cleared["id"])["status"] == "posted"
    assert award(api, created["id"])["status"] == "disputed"
    assert money(api, hid) == (balance + 4, score + 4)

    # the committee looked into it and approves again; the deadline has passed, so it posts now
    again = approve(api, created["id"], key_=key())
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["status"] == "posted"
    assert money(api, hid) == (balance + 8, score + 8)


def test_objection_upheld_by_rejection_never_posts(app, api, runner, blm):
    rule = add_rule(api, "清理河道", 5)
    hid = blm["BLM-003"]
    balance, score = money(api, hid)
    created = proposed(api, "grid", hid, rule["id"])
    approve(api, created["id"], key_=key())
    api.post(f"/api/v1/awards/{created['id']}/objections", "resident", json={"reason": "是别人干的"}, key=key())

    rejected = api.post(f"/api/v1/awards/{created['id']}/reject", "committee", json={"reason": "核实后不属实"},
                        key=key())
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["decision_reason"] == "核实后不属实"
    travel(timedelta(days=NOTICE_DAYS + 1))
    assert post_due(runner) == 0
    assert award(api, created["id"])["status"] == "rejected"
    assert money(api, hid) == (balance, score)

    # once the notice has ended, objecting is too late
    late = proposed(api, "grid", hid, rule["id"])
    approve(api, late["id"], key_=key())
    travel(timedelta(days=NOTICE_DAYS, minutes=1))
    error_of(api.post(f"/api/v1/awards/{late['id']}/objections", "resident", json={"reason": "晚了"}),
             409, "not_in_notice")
    assert award(api, late["id"])["status"] == "approved"


# --- 3. refusals -----------------------------------------------------------------------------

def test_grid_manager_outside_their_hamlets_is_refused(app, api, blm):
    rule = add_rule(api, "帮扶困难户", 5)
    hid = blm["BLM-020"]  # 前进屯, not the grid manager's 八里庙屯
    balance, score = money(api, hid)
    count = award_count(app)
    error = error_of(propose(api, "grid", hid, rule["id"], key_=key()), 403, "outside_hamlets")
    assert "屯" in error["message"]
    assert award_count(app) == count and money(api, hid) == (balance, score)
    # the committee may propose for any household of the village
    proposed(api, "committee", hid, rule["id"])


def test_large_award_needs_a_second_committee_approver(app, api, blm):
    set_notice_days(api, 0)
    big = add_rule(api, "见义勇为", THRESHOLD + 5, category="custom")
    edge = add_rule(api, "捐资修桥", THRESHOLD, category="custom")
    hid = blm["BLM-002"]
    balance, score = money(api, hid)

    created = proposed(api, "committee", hid, big["id"])
    error = error_of(approve(api, created["id"], key_=key()), 403, "second_approver_required")
    assert str(THRESHOLD) in error["message"]
    assert award(api, created["id"])["status"] == "proposed"
    assert money(api, hid) == (balance, score)

    make_user(app, "13800000011", "王淑华")
    second = approve(api, created["id"], who="13800000011", key_=key())
    assert second.status_code == 200, second.get_json()
    assert second.get_json()["status"] == "posted"
    assert money(api, hid) == (balance + THRESHOLD + 5, score + THRESHOLD + 5)

    # exactly at the threshold the proposer may approve alone
    own = proposed(api, "committee", hid, edge["id"])
    assert approve(api, own["id"], key_=key()).get_json()["status"] == "posted"
    assert money(api, hid) == (balance + 2 * THRESHOLD + 5, score + 2 * THRESHOLD + 5)


def test_nobody_approves_for_their_own_household(app, api, blm):
    set_notice_days(api, 0)
    rule = add_rule(api, "家风家训上墙", 3)
    grant_committee_to_resident(app)

    own_id = blm["BLM-001"]  # the demo resident's household
    balance, score = money(api, own_id)
    created = proposed(api, "grid", own_id, rule["id"])
    error = error_of(approve(api, created["id"], who="resident", key_=key()), 403, "own_household")
    assert "自己" in error["message"]
    assert award(api, created["id"])["status"] == "proposed"
    assert money(api, own_id) == (balance, score)
    # the same person approves a neighbour's award
    neighbour = proposed(api, "grid", blm["BLM-002"], rule["id"])
    assert approve(api, neighbour["id"], who="resident", key_=key()).get_json()["status"] == "posted"

    # a committee member whose login is the head of BLM-007 (no resident role)
    make_user(app, "13800000012", "某委员", resident_of="BLM-007")
    hid = blm["BLM-007"]
    balance, score = money(api, hid)
    created = proposed(api, "committee", hid, rule["id"])
    error_of(approve(api, created["id"], who="13800000012", key_=key()), 403, "own_household")
    assert award(api, created["id"])["status"] == "proposed"
    assert money(api, hid) == (balance, score)
    assert approve(api, created["id"], key_=key()).get_json()["status"] == "posted"


def test_cap_exceeded_says_when_the_household_may_earn_it_again(app, api, blm):
    rule = add_rule(api, "门前三包达标", 3, category="hygiene", cap={"count": 1, "period": "month"})
    hid = blm["BLM-002"]
    first = proposed(api, "grid", hid, rule["id"])
    count = award_count(app)

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    next_month = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    error = error_of(propose(api, "grid", hid, rule["id"], key_=key()), 422, "cap_exceeded")
    assert next_month.isoformat() in error["message"], error
    assert rule["title"] in error["message"]
    assert award_count(app) == count
    # the cap is per household: a neighbour may still earn it
    proposed(api, "grid", blm["BLM-003"], rule["id"])
    # a rejected award does not use up the cap
    api.post(f"/api/v1/awards/{first['id']}/reject", "committee", json={"reason": "照片不清楚"}, key=key())
    proposed(api, "grid", hid, rule["id"])


def _jpeg_with_exif() -> bytes:
    image = Image.new("RGB", (120, 80), (30, 140, 60))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"      # Make
    exif[0x013B] = "Owner Zhang"    # Artist
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (43.0, 30.0, 15.0), "E", (124.0, 20.0, 5.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get(0x010F) == "SecretCam"  # the test photo does carry EXIF
    return data


def test_photo_required_and_uploaded_photo_is_stored_without_exif(app, api, client, blm, tmp_path):
    rule = add_rule(api, "庭院美化达标", 5, category="hygiene", photo=True)
    hid = blm["BLM-002"]
    count = award_count(app)

    error = error_of(propose(api, "grid", hid, rule["id"], key_=key()), 422, "photo_required")
    assert rule["title"] in error["message"] and "photo" in error["fields"]
    assert award_count(app) == count

    # not an image
    bad = client.post("/api/v1/awards", headers=api.headers("grid", **{"Idempotency-Key": key()}), content_type="multipart/form-data",
                      data={"household_id": str(hid), "rule_id": str(rule["id"]),
                            "photo": (io.BytesIO(b"not a picture at all"), "x.jpg")})
    error_of(bad, 422, "bad_photo")
    assert award_count(app) == count

    data = _jpeg_with_exif()
    k = key()

    def upload():
        return client.post("/api/v1/awards", headers=api.headers("grid", **{"Idempotency-Key": k}),
                           content_type="multipart/form-data",
                           data={"household_id": str(hid), "rule_id": str(rule["id"]), "note": "院子很干净",
                                 "photo": (io.BytesIO(data), "院子.jpg")})

    response = upload()
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "proposed" and body["has_photo"] is True
    assert upload().get_json()["id"] == body["id"]  # a retried upload makes no second award
    assert award_count(app) == count + 1

    from moralbank.awards.models import Award
    with session_of(app) as session:
        relative = session.get(Award, body["id"]).photo_path
    stored = tmp_path / "uploads" / relative
    raw = stored.read_bytes()
    assert b"SecretCam" not in raw and b"Owner Zhang" not in raw and b"Exif" not in raw
    with Image.open(stored) as image:
        assert image.format == "JPEG" and image.size == (120, 80)
        assert len(image.getexif()) == 0 and "exif" not in image.info


def test_only_the_village_committee_decides_and_rejection_needs_a_reason(app, api, blm):
    set_notice_days(api, 0)
    rule = add_rule(api, "维护公共设施", 4)
    hid = blm["BLM-002"]
    balance, score = money(api, hid)
    created = proposed(api, "grid", hid, rule["id"])
    for who in ("clerk", "resident", "grid", "supervisor", "committee_xlc"):
        error_of(approve(api, created["id"], who=who, key_=key()), 403)
        error_of(api.post(f"/api/v1/awards/{created['id']}/reject", who, json={"reason": "不行"}, key=key()), 403)
        assert award(api, created["id"])["status"] == "proposed", who
        assert money(api, hid) == (balance, score), who

    # the committee must say why it rejects, and a rejection is final
    error_of(api.post(f"/api/v1/awards/{created['id']}/reject", "committee", json={"reason": "  "}), 422)
    error_of(api.post(f"/api/v1/awards/{created['id']}/reject", "committee", json={}), 422)
    assert award(api, created["id"])["status"] == "proposed"
    api.post(f"/api/v1/awards/{created['id']}/reject", "committee", json={"reason": "重复申报"})
    assert award(api, created["id"])["status"] == "rejected"
    error_of(approve(api, created["id"], key_=key()), 409, "invalid_state")
    assert award(api, created["id"])["status"] == "rejected"


def test_resident_declares_good_deeds_for_own_household_only(app, api, blm):
    good = add_rule(api, "主动捐书", 3)
    bad = add_rule(api, "乱倒污水", -3)
    count = award_count(app)
    declared = propose(api, "resident", blm["BLM-001"], good["id"], key_=key())
    assert declared.status_code == 201, declared.get_json()
    assert declared.get_json()["status"] == "proposed"
    error_of(propose(api, "resident", blm["BLM-001"], bad["id"], key_=key()), 403)
    error_of(propose(api, "resident", blm["BLM-002"], good["id"], key_=key()), 403)
    error_of(propose(api, "clerk", blm["BLM-002"], good["id"], key_=key()), 403)
    assert award_count(app) == count + 1


def test_retired_or_revised_rule_cannot_be_proposed_and_old_awards_keep_points(app, api, blm):
    set_notice_days(api, 0)
    rule = add_rule(api, "环境整治出工", 5)
    hid = blm["BLM-002"]
    balance, _score = money(api, hid)
    before = proposed(api, "grid", hid, rule["id"])
    revised = api.client_patch(f"/api/v1/rules/{rule['id']}", "committee", {"points": 8})
    assert revised.status_code == 201, revised.get_json()
    new = revised.get_json()
    assert new["id"] != rule["id"] and new["points"] == 8 and new["version"] == 2
    error_of(propose(api, "grid", hid, rule["id"], key_=key()), 422, "rule_inactive")
    assert approve(api, before["id"], key_=key()).get_json()["points"] == 5
    assert money(api, hid)[0] == balance + 5
    retired = api.client_patch(f"/api/v1/rules/{new['id']}", "committee", {"active": False})
    assert retired.status_code == 200
    error_of(propose(api, "grid", hid, new["id"], key_=key()), 422, "rule_inactive")
    titles = [item["title"] for item in api.get("/api/v1/villages/BLM/rules", "grid").get_json()["items"]]
    assert "环境整治出工" not in titles


# --- 4. reversal -----------------------------------------------------------------------------

def test_reversal_restores_balance_and_score_and_happens_once(app, api, blm):
    set_notice_days(api, 0)
    rule = add_rule(api, "参加文艺汇演", 9)
    hid = blm["BLM-002"]
    balance, score = money(api, hid)
    created = proposed(api, "grid", hid, rule["id"])
    transfer_id = approve(api, created["id"], key_=key()).get_json()["transfer_id"]
    assert money(api, hid) == (balance + 9, score + 9)

    path = f"/api/v1/transfers/{transfer_id}/reversal"
    error_of(api.post(path, "grid", json={"reason": "记错了"}, key=key()), 403)
    error_of(api.post(path, "committee_xlc", json={"reason": "记错了"}, key=key()), 403)
    error_of(api.post(path, "committee", json={}, key=key()), 422)
    assert money(api, hid) == (balance + 9, score + 9)

    k = key()
    reversal = api.post(path, "committee", json={"reason": "记错了户"}, key=k)
    assert reversal.status_code == 201, reversal.get_json()
    body = reversal.get_json()
    assert body["code"] == "reversal" and body["amount"] == 9 and body["reverses_id"] == transfer_id
    assert money(api, hid) == (balance, score)
    assert award(api, created["id"])["reversed"] is True

    replay = api.post(path, "committee", json={"reason": "记错了户"}, key=k)
    assert replay.status_code == 201 and replay.get_json()["id"] == body["id"]
    error = error_of(api.post(path, "committee", json={"reason": "再冲一次"}, key=key()), 409, "already_reversed")
    assert "冲正过" in error["message"]
    assert money(api, hid) == (balance, score)
    lines = api.get(f"/api/v1/households/{hid}/transfers?limit=2", "committee").get_json()["items"]
    assert [line["amount"] for line in lines] == [-9, 9]


# --- 5. the audit log ------------------------------------------------------------------------

def _audit_actions(html: str) -> list[str]:
    """The actions the audit page lists, read back from the words it shows (never the codes)."""
    from moralbank.labels import AUDIT_ACTIONS

    codes = {words: code for code, words in AUDIT_ACTIONS.items()}
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert not re.search(r"<td[^>]*>(?:award|ledger|rule|village|user)\.[a-z_]+</td>", body)
    return [codes[words] for words in re.findall(r'<td class="lead">([^<]+)</td>', body)]


def test_audit_log_holds_each_action_and_committee_page_filters_it(app, api, runner, client, auth, blm):
    from moralbank.audit.models import AuditEntry
    from moralbank.people.models import User

    first_rule = add_rule(api, "护林防火巡逻", 5)
    posted = proposed(api, "grid", blm["BLM-002"], first_rule["id"])
    approve(api, posted["id"], key_=key())
    travel(timedelta(days=NOTICE_DAYS, minutes=1))
    assert post_due(runner) == 1
    transfer_id = award(api, posted["id"])["transfer_id"]
    disputed = proposed(api, "grid", blm["BLM-003"], first_rule["id"])
    approve(api, disputed["id"], key_=key())
    api.post(f"/api/v1/awards/{disputed['id']}/objections", "resident", json={"reason": "不属实"}, key=key())
    api.post(f"/api/v1/awards/{disputed['id']}/reject", "committee", json={"reason": "核实不属实"}, key=key())
    assert api.post(f"/api/v1/transfers/{transfer_id}/reversal", "committee", json={"reason": "重复记分"},
                    key=key()).status_code == 201

    with session_of(app) as session:
        ids = dict(session.execute(select(User.phone, User.id)).all())
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action.in_(
            ("award.propose", "award.approve", "award.post", "award.object", "award.reject", "ledger.reverse")))
            .order_by(AuditEntry.id)).all()
        trail = [(row.action, row.target_type, row.target_id, row.actor_id) for row in rows]
        reverse_detail = rows[-1].detail
    grid, committee, resident = ids[PHONES["grid"]], ids[PHONES["committee"]], ids[PHONES["resident"]]
    assert trail == [
        ("award.propose", "award", posted["id"], grid),
        ("award.approve", "award", posted["id"], committee),
        ("award.post", "award", posted["id"], None),  # by cron
        ("award.propose", "award", disputed["id"], grid),
        ("award.approve", "award", disputed["id"], committee),
        ("award.object", "award", disputed["id"], resident),
        ("award.reject", "award", disputed["id"], committee),
        ("ledger.reverse", "transfer", transfer_id, committee),
    ]
    assert reverse_detail["reason"] == "重复记分"

    auth.login("committee")
    page = client.get("/committee/audit?action=award.reject")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _audit_actions(html) == ["award.reject"]
    assert f"#{disputed['id']}" in html and "核实不属实" in html
    html = client.get("/committee/audit?action=ledger.reverse").get_data(as_text=True)
    assert _audit_actions(html) == ["ledger.reverse"] and "重复记分" in html
    html = client.get("/committee/audit?action=award").get_data(as_text=True)
    assert sorted(set(_audit_actions(html))) == ["award.approve", "award.object", "award.post", "award.propose",
                                                  "award.reject"]
    assert "赵志刚" in html  # the grid manager who proposed, by name
    html = client.get("/committee/audit?action=award.propose").get_data(as_text=True)
    assert _audit_actions(html) == ["award.propose", "award.propose"]

    # another village's committee sees none of it
    auth.logout()
    auth.login("committee_xlc")
    html = client.get("/committee/audit?action=award").get_data(as_text=True)
    assert _audit_actions(html) == []


# --- the review queue as one service (web and API) ------------------------------------------

def test_batch_review_decides_each_award_and_reports_the_refused(api, app):
    """POST /awards/reviews: the committee approves several awards at once; one that cannot be
    approved (already rejected) is reported with its reason and the others stand."""
    set_notice_days(api, 0)
    rule = add_rule(api, "批量审核测试", 3)
    hid = household_id(app, "BLM-002")
    first, second, third = (proposed(api, "grid", hid, rule["id"]) for _ in range(3))
    assert api.post(f"/api/v1/awards/{third['id']}/reject", "committee", json={"reason": "重复"},
                    key=key()).status_code == 200
    balance, score = money(api, hid)
    body = {"award_ids": [first["id"], second["id"], third["id"]], "decision": "approve"}
    response = api.post("/api/v1/awards/reviews", "committee", json=body, key=key())
    assert response.status_code == 200, response.get_json()
    outcome = response.get_json()
    assert [a["id"] for a in outcome["decided"]] == [first["id"], second["id"]]
    assert all(a["status"] == "posted" for a in outcome["decided"])
    assert [(r["award_id"], r["code"]) for r in outcome["refused"]] == [(third["id"], "invalid_state")]
    assert money(api, hid) == (balance + 6, score + 6)
    assert award(api, third["id"])["status"] == "rejected"


def test_batch_review_is_for_the_committee_and_checks_its_input(api, app):
    rule = add_rule(api, "批量审核权限", 3)
    award_ = proposed(api, "grid", household_id(app, "BLM-002"), rule["id"])
    body = {"award_ids": [award_["id"]], "decision": "approve"}
    refused = api.post("/api/v1/awards/reviews", "grid", json=body, key=key())
    error_of(refused, 403)
    error_of(api.post("/api/v1/awards/reviews", "committee", json={**body, "decision": "maybe"}, key=key()), 422)
    error_of(api.post("/api/v1/awards/reviews", "committee", json={**body, "award_ids": []}, key=key()), 422)
    assert award(api, award_["id"])["status"] == "proposed"


def test_village_settings_service_refuses_bad_values_whole(app):
    """The settings service (the API's PATCH calls it) changes all or nothing and names the field."""
    from moralbank.database import OutsideTransaction
    from moralbank.errors import Invalid
    from moralbank.people import villages
    from moralbank.people.models import User
    from moralbank.people.service import village_by_code
    with session_of(app) as session:
        committee = session.scalar(select(User).where(User.phone == PHONES["committee"]))
        village = village_by_code("BLM")
        before = (village.notice_days, village.star_thresholds)
        with pytest.raises(OutsideTransaction):
            villages.change_settings(committee, village, {"notice_days": 1})
        with pytest.raises(Invalid) as refused:
            with write_transaction():
                villages.change_settings(committee, village, {"notice_days": 1, "star_thresholds": [5, 4, 3, 2, 1]})
        assert set(refused.value.fields) == {"star_thresholds"}
        session.expire_all()
        village = village_by_code("BLM")
        assert (village.notice_days, village.star_thresholds) == before
