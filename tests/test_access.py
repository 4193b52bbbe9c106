"""Who reads what (issue 10 items 3 and 9a, issue 11 "one reader of roles"): a grid manager reads
only the households, awards and photos of their own hamlets; a shop's shelf is for users of its
village; one safe-redirect check for every ``next`` and ``back``; one rule for which payment code
has a QR picture, on the page and in the API alike."""
from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import select

from support import csrf_from, session_of

API = "/api/v1"


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 140, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def _blm_households(app) -> tuple[int, int]:
    """(a household of the grid manager's hamlet, a household of another BLM hamlet)."""
    from moralbank.people.models import Area, Household

    with session_of(app) as session:
        blm = session.scalar(select(Area).where(Area.code == "BLM"))
        hamlets = sorted(h.id for h in blm.children)
        own = session.scalar(select(Household.id).where(Household.hamlet_id == hamlets[0]).order_by(Household.id))
        other = session.scalar(select(Household.id).where(Household.hamlet_id == hamlets[1]).order_by(Household.id))
    return own, other


def _award_with_photo(app, api, household: int) -> int:
    """An award (with an evidence photo) proposed by the committee for ``household``, on a rule of
    its own (no cap), so the demo's history this month cannot refuse it."""
    created = api.post(f"{API}/villages/BLM/rules", "committee",
                       json={"category": "volunteer", "title": "照片测试", "points": 2, "photo_required": True})
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()["id"]
    response = api.post(f"{API}/awards", "committee", data={
        "household_id": str(household), "rule_id": str(rule), "photo": (io.BytesIO(_jpeg()), "yard.jpg")},
        content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["has_photo"]
    return response.get_json()["id"]


def _web_login(app, who):
    from support import DEMO_PASSWORD, PHONES

    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"phone": PHONES[who], "password": DEMO_PASSWORD, "csrf_token": token})
    assert response.status_code == 302, who
    return client


# --- a grid manager reads their own hamlets only -----------------------------------------------------------------

def test_a_grid_manager_reads_no_household_of_another_hamlet(app, api):
    own, other = _blm_households(app)
    for path in ("/households/{}", "/households/{}/transfers"):
        assert api.get(API + path.format(own), "grid").status_code == 200
        refused = api.get(API + path.format(other), "grid")
        assert refused.status_code == 404, path
        assert refused.get_json()["error"]["code"] == "not_found"
        for who in ("committee", "supervisor"):
            assert api.get(API + path.format(other), who).status_code == 200, (who, path)


def test_a_grid_manager_reads_no_award_or_photo_of_another_hamlet(app, api):
    own, other = _blm_households(app)
    mine, theirs = _award_with_photo(app, api, own), _award_with_photo(app, api, other)

    assert api.get(f"{API}/awards/{mine}", "grid").status_code == 200
    assert api.get(f"{API}/awards/{theirs}", "grid").status_code == 404
    assert api.get(f"{API}/awards/{theirs}", "committee").status_code == 200
    assert api.get(f"{API}/awards/{theirs}", "supervisor").status_code == 200

    listed = api.get(f"{API}/villages/BLM/awards?household_id={other}", "grid")
    assert listed.status_code == 200 and listed.get_json()["items"] == []
    everything = api.get(f"{API}/villages/BLM/awards?limit=200", "grid").get_json()["items"]
    assert mine in [a["id"] for a in everything] and theirs not in [a["id"] for a in everything]
    assert {a["household_id"] for a in everything} <= _households_of_hamlet_of(app, own)
    by_committee = api.get(f"{API}/villages/BLM/awards?household_id={other}", "committee").get_json()["items"]
    assert theirs in [a["id"] for a in by_committee]

    grid = _web_login(app, "grid")
    assert grid.get(f"/awards/{mine}").status_code == 200
    assert grid.get(f"/awards/{mine}/photo").status_code == 200
    page = grid.get(f"/awards/{theirs}")
    assert page.status_code == 404
    assert grid.get(f"/awards/{theirs}/photo").status_code == 404
    committee = _web_login(app, "committee")
    assert committee.get(f"/awards/{theirs}/photo").status_code == 200


def _households_of_hamlet_of(app, household_id: int) -> set[int]:
    from moralbank.people.models import Household

    with session_of(app) as session:
        hamlet = session.get(Household, household_id).hamlet_id
        return set(session.scalars(select(Household.id).where(Household.hamlet_id == hamlet)))


def test_the_residents_still_read_their_own_household_and_award(app, api):
    from moralbank.people.models import Household, User
    from support import PHONES

    with session_of(app) as session:
        user = session.scalar(select(User).where(User.phone == PHONES["resident"]))
        household = next(g.household_id for g in user.grants if g.role == "resident")
        hamlet = session.get(Household, household).hamlet_id
        neighbour = session.scalar(select(Household.id).where(Household.hamlet_id == hamlet,
                                                              Household.id != household))
    award = _award_with_photo(app, api, household)
    assert api.get(f"{API}/households/{household}", "resident").status_code == 200
    assert api.get(f"{API}/awards/{award}", "resident").status_code == 200
    assert api.get(f"{API}/households/{neighbour}", "resident").status_code == 404
    assert _web_login(app, "resident").get(f"/awards/{award}/photo").status_code == 200


# --- a shop's shelf is for its village ---------------------------------------------------------------------------

def test_a_store_shelf_is_read_only_by_users_of_its_village(app, api):
    from moralbank.people.models import Area
    from moralbank.stores.models import Store

    with session_of(app) as session:
        blm = session.scalar(select(Area).where(Area.code == "BLM"))
        store = session.scalar(select(Store.id).where(Store.village_id == blm.id).order_by(Store.id))
    for who in ("resident", "clerk", "grid", "committee", "supervisor"):
        response = api.get(f"{API}/stores/{store}/items", who)
        assert response.status_code == 200, who
        assert response.get_json()["items"], who
    refused = api.get(f"{API}/stores/{store}/items", "committee_xlc")
    assert refused.status_code == 403
    assert "items" not in refused.get_json()
    assert api.get(f"{API}/stores/999999/items", "resident").status_code == 404
    assert app.test_client().get(f"{API}/stores/{store}/items").status_code == 401


# --- one safe-redirect check -------------------------------------------------------------------------------------

BAD_TARGETS = ["//evil.example", "/\\evil.example", "\\\\evil.example", "\\/evil.example", "/\\/evil.example",
               "https://evil.example/", "javascript:alert(1)", "https:evil.example", "/\t/evil.example",
               "/\n/evil.example", "/\x00x", "/home\r\nSet-Cookie: x=1", "evil.example", ""]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_safe_next_refuses_other_hosts_schemes_and_control_characters(app, target):
    from moralbank.web.forms import safe_next

    assert safe_next(target) is None


@pytest.mark.parametrize("target", ["/home", "/committee/review?x=1", "/awards/3#top", "/v/BLM"])
def test_safe_next_keeps_local_paths(app, target):
    from moralbank.web.forms import safe_next

    assert safe_next(target) == target


@pytest.mark.parametrize("target", ["/\\evil.example", "/\\/evil.example", "\\\\evil.example", "//evil.example"])
def test_the_reversal_page_sends_back_only_to_local_paths(app, target):
    committee = _web_login(app, "committee")
    token = csrf_from(committee.get("/home").get_data(as_text=True))
    # an unknown transfer: the reversal is refused and the page goes back
    response = committee.post("/transfers/2000000000/reverse", data={
        "csrf_token": token, "idempotency_key": uuid.uuid4().hex, "reason": "test", "back": target,
        "confirm": "1"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/home"


def test_the_reversal_page_follows_a_local_back(app):
    committee = _web_login(app, "committee")
    token = csrf_from(committee.get("/home").get_data(as_text=True))
    response = committee.post("/transfers/2000000000/reverse", data={
        "csrf_token": token, "idempotency_key": uuid.uuid4().hex, "reason": "test", "back": "/committee/review",
        "confirm": "1"})
    assert response.headers["Location"] == "/committee/review"


# --- one rule for a code's QR picture ----------------------------------------------------------------------------

def test_a_paper_card_code_has_no_qr_picture_on_the_page_or_the_api(app, api):
    me = api.get(f"{API}/me", "resident").get_json()
    household = me["household"]["id"]
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    card = api.post(f"{API}/households/{household}/cards", "committee", json={"pin": "5173"})
    assert card.status_code == 201, card.get_json()
    unlocked = api.post(f"{API}/stores/{store}/card-unlocks", "clerk",
                        json={"card": card.get_json()["token"], "pin": "5173"})
    assert unlocked.status_code == 201, unlocked.get_json()
    code = unlocked.get_json()["code"]

    assert api.get(f"{API}/redemption-codes/{code}/qr.png", "resident").status_code == 404
    resident = _web_login(app, "resident")
    assert resident.get(f"/me/pay/qr/{code}.png").status_code == 404

    # the resident's own phone code still has its picture on both
    own = api.post(f"{API}/redemption-codes", "resident").get_json()["code"]
    assert api.get(f"{API}/redemption-codes/{own}/qr.png", "resident").status_code == 200
    shown = resident.get(f"/me/pay/qr/{own}.png")
    assert shown.status_code == 200 and shown.mimetype == "image/png"
