"""The award pages as people use them: the grid manager's inspection sheet, the
committee's review queue and catalogue editor, the public notice board with objections, the
resident's declaration, and who may see an evidence photo.

Forms are filled the way a browser does: the CSRF token and the hidden idempotency_key are
taken from the page just shown.
"""
from __future__ import annotations

import io
import re

import pytest
from argon2 import PasswordHasher
from PIL import Image
from sqlalchemy import func, select

from support import DEMO_PASSWORD, PHONES, csrf_from, session_of
from moralbank.database import write_transaction
from moralbank.extensions import db




# --- helpers ---------------------------------------------------------------------------------



def form_key(html: str, suffix: str = "") -> str:
    """The hidden idempotency_key of the form on the page (the one ending in ``suffix``)."""
    keys = re.findall(r'name="idempotency_key" value="([^"]+)"', html)
    keys = [k for k in keys if k.endswith(suffix)] if suffix else keys
    assert keys, "no idempotency_key on the page"
    return keys[0]


def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.headers.get("Location"))
    return response.get_data(as_text=True)


def login(auth, who: str) -> None:
    response = auth.login(who)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


def ids_of(app, *numbers: str) -> list[int]:
    from moralbank.people.models import Household
    with session_of(app) as session:
        found = dict(session.execute(select(Household.number, Household.id)
                                     .where(Household.number.in_(numbers))).all())
    return [found[n] for n in numbers]


def head_of(app, number: str) -> str:
    from moralbank.people.models import Household, Resident
    with session_of(app) as session:
        return session.scalar(select(Resident.name).join(Household, Household.id == Resident.household_id)
                              .where(Household.number == number, Resident.is_head.is_(True)))


def user_of(session, who: str):
    from moralbank.people.models import User
    return session.scalar(select(User).where(User.phone == PHONES.get(who, who)))


def new_rule(app, title: str, points: int, *, category: str = "volunteer", cap=None, photo=False) -> int:
    from moralbank.awards.service import create_rule
    from moralbank.people.service import village_by_code
    with session_of(app):
        with write_transaction():
            rule = create_rule(village_by_code("BLM"), category=category, title=title, points=points,
                               cap_count=cap[0] if cap else None, cap_period=cap[1] if cap else None,
                               photo_required=photo)
        return rule.id


def new_award(app, number: str, rule_id: int, *, by: str = "grid", approve: bool = False) -> int:
    from moralbank.awards import service
    from moralbank.people.models import Household
    with session_of(app) as session:
        with write_transaction():
            hid = session.scalar(select(Household.id).where(Household.number == number))
            award = service.propose(user_of(session, by), service.Proposal(household_id=hid, rule_id=rule_id))
            if approve:
                service.approve(user_of(session, "committee"), award.id)
        return award.id


def awards_of(app, *rule_ids: int) -> list[tuple]:
    """(household number, rule id, status, proposer phone, has photo) of the awards under these rules."""
    from moralbank.awards.models import Award
    from moralbank.people.models import Household, User
    with session_of(app) as session:
        rows = session.execute(
            select(Household.number, Award.rule_id, Award.status, User.phone, Award.photo_path)
            .join(Household, Household.id == Award.household_id).join(User, User.id == Award.proposed_by_id)
            .where(Award.rule_id.in_(rule_ids)).order_by(Household.number, Award.rule_id)).all()
    return [(n, r, s, p, bool(photo)) for n, r, s, p, photo in rows]


def status_of(app, award_id: int) -> str:
    from moralbank.awards.models import Award
    with session_of(app) as session:
        return session.get(Award, award_id).status


def balance_of(app, number: str) -> int:
    from moralbank.people.models import Household
    from moralbank.rankings.households import household_summary
    with session_of(app) as session:
        return household_summary(session.scalar(select(Household).where(Household.number == number)))["balance"]


def hamlet_id(app, code: str) -> int:
    from moralbank.people.models import Area
    with session_of(app) as session:
        return session.scalar(select(Area.id).where(Area.code == code))


def jpeg() -> bytes:
    image = Image.new("RGB", (80, 60), (200, 180, 40))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def sheet_form(html: str, hamlet: int, rules: list[int], cells: list[tuple[int, int]], **extra) -> dict:
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "hamlet": str(hamlet),
            "rules": [str(r) for r in rules]}
    data.update({f"cell-{h}-{r}": "1" for h, r in cells})
    data.update(extra)
    return data


# --- the inspection sheet --------------------------------------------------------------------

def test_inspection_sheet_makes_one_award_per_ticked_cell_once(app, client, auth):
    tidy = new_rule(app, "院落无杂物", 3, category="hygiene")
    path = new_rule(app, "门前道路清扫", 2, category="hygiene")
    h1 = hamlet_id(app, "BLM-01")
    a, b, c = ids_of(app, "BLM-002", "BLM-003", "BLM-004")
    login(auth, "grid")

    html = page(client, f"/grid/sheet?hamlet={h1}&rules={tidy}&rules={path}")
    assert "院落无杂物" in html and "门前道路清扫" in html and head_of(app, "BLM-003") in html
    assert "BLM-016" not in html  # only the grid manager's hamlet
    data = sheet_form(html, h1, [tidy, path], [(a, tidy), (b, tidy), (b, path)])
    response = client.post("/grid/sheet", data=data)
    assert response.status_code == 302
    assert "评分表已提交：3 条" in page(client, response.headers["Location"])
    expected = [("BLM-002", tidy, "proposed", PHONES["grid"], False),
                ("BLM-003", tidy, "proposed", PHONES["grid"], False),
                ("BLM-003", path, "proposed", PHONES["grid"], False)]
    assert awards_of(app, tidy, path) == expected

    # the same sheet sent again (a double tap, or the back button) records nothing new
    again = client.post("/grid/sheet", data=data)
    assert again.status_code == 302
    assert "已经提交过" in page(client, again.headers["Location"])
    assert awards_of(app, tidy, path) == expected

    # another hamlet's sheet is not the grid manager's to fill
    page(client, f"/grid/sheet?hamlet={hamlet_id(app, 'BLM-02')}", status=403)


def test_sheet_with_a_bad_row_records_nothing_and_names_the_row(app, client, auth, tmp_path):
    plain = new_rule(app, "鸡鸭圈养", 2, category="hygiene")
    photo = new_rule(app, "庭院绿化达标", 4, category="hygiene", photo=True)
    capped = new_rule(app, "垃圾分类到位", 3, category="hygiene", cap=(1, "month"))
    new_award(app, "BLM-004", capped)  # BLM-004 already has it this month
    h1 = hamlet_id(app, "BLM-01")
    a, b, c = ids_of(app, "BLM-002", "BLM-003", "BLM-004")
    before = awards_of(app, plain, photo, capped)
    login(auth, "grid")

    html = page(client, f"/grid/sheet?hamlet={h1}&rules={plain}&rules={photo}&rules={capped}")
    data = sheet_form(html, h1, [plain, photo, capped], [(a, plain), (b, photo), (c, capped)])
    response = client.post("/grid/sheet", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "整张表没有提交" in html
    problems = html.split('class="card problems"', 1)[1].split("</div>", 1)[0]
    assert f"BLM-003 {head_of(app, 'BLM-003')} · 庭院绿化达标" in problems and "照片" in problems
    assert f"BLM-004 {head_of(app, 'BLM-004')} · 垃圾分类到位" in problems and "起可以再记" in problems
    assert "BLM-002" not in problems  # the good row is not blamed...
    assert awards_of(app, plain, photo, capped) == before  # ...but not kept either
    assert html.count("hh-card bad") == 2
    assert re.search(rf'name="cell-{a}-{plain}" value="1" checked', html), "what was ticked stays ticked"
    # each problem is said next to its field: the photo at BLM-003's camera, the cap at BLM-004's item
    assert re.search(rf'id="photo-{b}-error">照片：「庭院绿化达标」需要上传照片', html)
    assert re.search(rf'id="cell-{c}-{capped}-error">「垃圾分类到位」[^<]*起可以再记', html)

    # fixed: a photo for BLM-003, BLM-004's capped cell unticked; sent from the page shown
    data = sheet_form(html, h1, [plain, photo, capped], [(a, plain), (b, photo)])
    data[f"photo-{b}"] = (io.BytesIO(jpeg()), "yard.jpg")
    response = client.post("/grid/sheet", data=data, content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert awards_of(app, plain, photo, capped) == sorted(before + [
        ("BLM-002", plain, "proposed", PHONES["grid"], False),
        ("BLM-003", photo, "proposed", PHONES["grid"], True)])


# --- the committee's review queue ------------------------------------------------------------

def test_committee_bulk_approves_and_bulk_reject_needs_a_reason(app, client, auth):
    small = new_rule(app, "志愿植树", 4)
    big = new_rule(app, "抢险救灾", 25, category="custom")
    first, second = (new_award(app, n, small) for n in ("BLM-002", "BLM-003"))
    third = new_award(app, "BLM-020", small, by="committee")
    own_big = new_award(app, "BLM-005", big, by="committee")  # needs another approver
    balance = balance_of(app, "BLM-002")
    login(auth, "committee")

    html = page(client, "/committee/review")
    for award_id in (first, second, third, own_big):
        assert f'name="award" value="{award_id}"' in html
    assert head_of(app, "BLM-020") in html and "志愿植树" in html
    # Enter in the reason box submits with the form's default (first) submit button: it must not approve
    review_form = html.split('<form method="post" class="card">', 1)[1].split("</form>", 1)[0]
    default_button = re.search(r"<button[^>]*type=\"submit\"[^>]*>", review_form).group(0)
    assert "disabled" in default_button and 'value="approve"' not in default_button
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "decision": "approve",
            "award": [str(first), str(second), str(own_big)], "reason": ""}
    response = client.post("/committee/review", data=data)
    assert response.status_code == 302
    html = page(client, response.headers["Location"])
    assert "已通过 2 条" in html and f"#{own_big}" in html and "提交人以外" in html
    assert [status_of(app, i) for i in (first, second, third, own_big)] == \
        ["approved", "approved", "proposed", "proposed"]
    assert balance_of(app, "BLM-002") == balance  # in public notice, not yet posted
    assert f'name="award" value="{first}"' not in html and f'name="award" value="{third}"' in html

    again = client.post("/committee/review", data=data)
    assert "已经提交过" in page(client, again.headers["Location"])
    assert [status_of(app, i) for i in (first, second, third, own_big)] == \
        ["approved", "approved", "proposed", "proposed"]

    html = page(client, "/committee/review")
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "decision": "reject",
            "award": [str(third), str(own_big)], "reason": ""}
    html = page(client, client.post("/committee/review", data=data).headers["Location"])
    assert "请填写不通过的理由" in html
    assert [status_of(app, i) for i in (third, own_big)] == ["proposed", "proposed"]

    data.update(idempotency_key=form_key(html), reason="重复申报")
    html = page(client, client.post("/committee/review", data=data).headers["Location"])
    assert "已退回 2 条" in html
    assert [status_of(app, i) for i in (third, own_big)] == ["rejected", "rejected"]
    assert "没有待审核的记录" in html


# --- the public notice board -----------------------------------------------------------------

PHONE_LIKE = re.compile(r"1[3-9]\d{9}|1[3-9]\d\*{4}\d{4}")


def test_public_notice_masks_names_and_a_resident_objects_from_it(app, client, auth):
    rule = new_rule(app, "帮助五保户挑水", 5)
    waiting = new_rule(app, "尚未审核的事", 5)
    award_id = new_award(app, "BLM-002", rule, approve=True)
    new_award(app, "BLM-003", waiting)  # only proposed: not on the board
    head = head_of(app, "BLM-002")
    masked = head[0] + "*" * (len(head) - 2) + head[-1]
    assert len(head) >= 3 and masked != head

    html = page(client, "/v/BLM/notices")
    assert "帮助五保户挑水" in html and masked in html
    assert head not in html and "尚未审核的事" not in html
    assert not PHONE_LIKE.search(html)
    assert 'name="reason"' not in html  # the public may read, not object

    login(auth, "resident")
    html = page(client, "/v/BLM/notices")
    assert head not in html and not PHONE_LIKE.search(html)
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html, f"-{award_id}"),
            "award_id": str(award_id), "reason": "那天下大雨，他没去"}
    response = client.post("/v/BLM/notices", data=data)
    assert response.status_code == 302
    html = page(client, response.headers["Location"])
    assert "异议已提交" in html and "有异议" in html
    assert status_of(app, award_id) == "disputed"
    assert head not in html and masked in html

    from moralbank.awards.models import Objection
    with session_of(app) as session:
        reasons = session.scalars(select(Objection.reason).where(Objection.award_id == award_id)).all()
    assert reasons == ["那天下大雨，他没去"]


# --- the catalogue editor --------------------------------------------------------------------

def test_catalogue_revision_makes_a_new_version_and_retired_rules_cannot_be_proposed(app, client, auth):
    from moralbank.awards.models import Award, Rule
    from moralbank.people.service import village_by_code

    rule = new_rule(app, "义务巡逻", 5)
    earlier = new_award(app, "BLM-002", rule)
    login(auth, "committee")

    html = page(client, "/committee/rules")
    assert "义务巡逻" in html
    assert f'action="/committee/rules/{rule}/revise#rule-{rule}"' in html  # posts to revise, comes back at the form
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html, f"-r{rule}"),
            "category": "volunteer", "title": "义务巡逻", "points": "8", "cap_count": "", "cap_period": ""}
    response = client.post(f"/committee/rules/{rule}/revise", data=data)
    assert response.status_code == 302
    html = page(client, response.headers["Location"])
    assert "第 2 版" in html and "+8" in html
    with session_of(app) as session:
        versions = session.execute(select(Rule.id, Rule.version, Rule.points, Rule.active)
                                   .where(Rule.family_id == rule).order_by(Rule.version)).all()
        assert session.get(Award, earlier).points == 5
    assert [(v, p, a) for _, v, p, a in versions] == [(1, 5, False), (2, 8, True)]
    revised = versions[1][0]

    # the award proposed before keeps its 5 points when it is approved and posted
    with session_of(app) as session:
        with write_transaction():
            village_by_code("BLM").notice_days = 0
    balance = balance_of(app, "BLM-002")
    html = page(client, "/committee/review")
    client.post("/committee/review", data={"csrf_token": csrf_from(html), "idempotency_key": form_key(html),
                                           "decision": "approve", "award": [str(earlier)]})
    assert status_of(app, earlier) == "posted"
    assert balance_of(app, "BLM-002") == balance + 5

    # a mistake is corrected from the award's page by a reversal, once
    html = page(client, f"/awards/{earlier}")
    assert "冲正这笔积分" in html
    reversal = re.search(r'action="(/transfers/\d+/reverse)"', html).group(1)
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "back": f"/awards/{earlier}",
            "reason": "记错了户", "confirm": "1"}
    response = client.post(reversal, data=data)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/awards/{earlier}")
    html = page(client, response.headers["Location"])
    assert "已冲正" in html and "冲正这笔积分" not in html
    assert balance_of(app, "BLM-002") == balance
    client.post(reversal, data=data)  # sent twice
    assert balance_of(app, "BLM-002") == balance

    # retire the new version
    html = page(client, "/committee/rules")
    assert f'action="/committee/rules/{revised}/retire"' in html
    response = client.post(f"/committee/rules/{revised}/retire",
                           data={"csrf_token": csrf_from(html), "idempotency_key": form_key(html, f"-x{revised}")})
    assert response.status_code == 302
    html = page(client, response.headers["Location"])
    assert "已停用「义务巡逻」" in html
    assert "义务巡逻" not in html.split("<table", 1)[1]  # gone from the catalogue table

    # the grid manager's form no longer offers it, and a stale form is refused
    auth.logout()
    login(auth, "grid")
    html = page(client, "/awards/new")
    assert "义务巡逻" not in html
    hid = ids_of(app, "BLM-003")[0]
    for stale in (rule, revised):
        response = client.post("/awards/new", data={"csrf_token": csrf_from(html), "idempotency_key": form_key(html),
                                                    "household_id": str(hid), "rule_id": str(stale),
                                                    "quantity": "1"})
        assert response.status_code == 422
        assert "已停用或已修改" in response.get_data(as_text=True)
        html = response.get_data(as_text=True)
    assert [row for row in awards_of(app, rule, revised) if row[0] == "BLM-003"] == []


# --- the resident's declaration --------------------------------------------------------------

def test_resident_declares_for_own_household_but_not_a_deduction(app, client, auth):
    from moralbank.audit.models import AuditEntry
    good = new_rule(app, "义务打扫村部", 3)
    bad = new_rule(app, "乱扔垃圾", -3, category="deduction")
    login(auth, "resident")

    html = page(client, "/me/declare")
    assert "义务打扫村部" in html and "乱扔垃圾" not in html and "聚众赌博" not in html
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "rule_id": str(good),
            "note": "周六上午打扫了村部院子"}
    response = client.post("/me/declare", data=data)
    assert response.status_code == 302
    assert "申报已提交" in page(client, response.headers["Location"])
    client.post("/me/declare", data=data)  # sent twice
    assert awards_of(app, good) == [("BLM-001", good, "proposed", PHONES["resident"], False)]
    with session_of(app) as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "award.declare")) == 1

    html = page(client, "/me/declare")
    response = client.post("/me/declare", data={"csrf_token": csrf_from(html), "idempotency_key": form_key(html),
                                                "rule_id": str(bad)})
    assert response.status_code == 403
    assert "只能为自己家申报加分项" in response.get_data(as_text=True)
    assert awards_of(app, bad) == []


# --- the evidence photo ----------------------------------------------------------------------

def test_evidence_photo_is_shown_only_to_staff_and_the_household(app, client, auth, monkeypatch):
    rule = new_rule(app, "院内花草修剪", 3, category="hygiene", photo=True)
    own = ids_of(app, "BLM-001")[0]
    login(auth, "grid")

    html = page(client, f"/awards/new?household={own}")
    data = {"csrf_token": csrf_from(html), "idempotency_key": form_key(html), "household_id": str(own),
            "rule_id": str(rule), "quantity": "1", "note": ""}
    missing = client.post("/awards/new", data=data)
    assert missing.status_code == 422 and "需要上传照片" in missing.get_data(as_text=True)
    assert awards_of(app, rule) == []

    data["photo"] = (io.BytesIO(jpeg()), "flowers.jpg")
    response = client.post("/awards/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    assert "已提交" in page(client, response.headers["Location"])
    data["photo"] = (io.BytesIO(jpeg()), "flowers.jpg")
    client.post("/awards/new", data=data, content_type="multipart/form-data")  # sent twice
    assert awards_of(app, rule) == [("BLM-001", rule, "proposed", PHONES["grid"], True)]
    from moralbank.awards.models import Award
    with session_of(app) as session:
        award_id = session.scalar(select(Award.id).where(Award.rule_id == rule))
    url = f"/awards/{award_id}/photo"

    def photo_response():
        return client.get(url)

    shown = photo_response()
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(shown.data)).format == "JPEG" and b"SecretCam" not in shown.data
    assert "no-store" in shown.headers["Cache-Control"]
    auth.logout()

    anonymous = photo_response()
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]

    for who, status in (("committee", 200), ("resident", 200), ("committee_xlc", 404)):
        login(auth, who)
        assert photo_response().status_code == status, who
        auth.logout()

    # a neighbour with a login of their own household (a cheap hash; this is the last login of the test, as
    # logging in a user whose hash has other parameters would now rehash it)
    monkeypatch.setattr("moralbank.people.auth._hasher", PasswordHasher(time_cost=1, memory_cost=1024))
    from moralbank.people.models import Household
    from moralbank.people.service import create_user
    neighbour = head_of(app, "BLM-002")
    with session_of(app) as session:  # (not nested: the inner one would close this session)
        with write_transaction():
            create_user(phone="13800000021", name=neighbour, password=DEMO_PASSWORD,
                        role="resident",
                        household=session.scalar(select(Household).where(Household.number == "BLM-002")))
    login(auth, "13800000021")
    assert photo_response().status_code == 404
