"""Payment-code minting (issue 10, item 4b): a resident minted 1,123 codes in 10 s, each an open
8-digit number a clerk could stumble on. Now a household holds one open code at a time (a new
code ends the old, which a clerk is told plainly), and minting is capped per household."""
from __future__ import annotations

import html as htmllib
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from moralbank.database import travel, utcnow, write_transaction
from moralbank.extensions import db
from moralbank.people.models import Household
from moralbank.people.service import create_user
from moralbank.stores.models import RedemptionCode
from support import DEMO_PASSWORD, csrf_from, session_of

API = "/api/v1"


def mint(api, who="resident"):
    return api.post(f"{API}/redemption-codes", who)


def open_codes(app, household_id: int) -> int:
    with session_of(app) as session:
        return session.scalar(select(func.count(RedemptionCode.id)).where(
            RedemptionCode.household_id == household_id, RedemptionCode.consumed_at.is_(None),
            RedemptionCode.expires_at > utcnow()))


def test_a_new_code_ends_the_old_one_and_the_clerk_is_told(app, api, client):
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    balance = api.get(f"{API}/households/{household}", "committee").get_json()["balance"]
    first = mint(api).get_json()
    second = mint(api).get_json()
    assert first["code"] != second["code"]
    assert open_codes(app, household) == 1

    for text in (first["code"], first["token"]):
        preview = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": text})
        assert preview.status_code == 409, preview.get_json()
        error = preview.get_json()["error"]
        assert error["code"] == "code_replaced" and "新的付款码" in error["message"]
        sale = api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": text, "points": 1})
        assert sale.status_code == 409 and sale.get_json()["error"]["code"] == "code_replaced"
    assert api.get(f"{API}/households/{household}", "committee").get_json()["balance"] == balance

    # the clerk's page says it in words too
    page = client.get("/login")
    client.post("/login", data={"phone": "13800000004", "password": DEMO_PASSWORD,
                                "csrf_token": csrf_from(page.get_data(as_text=True))})
    shown = htmllib.unescape(client.get(f"/shop/redeem?code={first['code']}").get_data(as_text=True))
    assert "村民已换了新的付款码" in shown

    # the newest code works; a code that simply ran out says so, not "replaced"
    sale = api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": second["code"], "points": 1})
    assert sale.status_code == 201, sale.get_json()
    third = mint(api).get_json()
    travel(timedelta(hours=1))
    preview = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": third["code"]})
    assert preview.status_code == 409
    assert "过期" in preview.get_json()["error"]["message"]
    assert "新的付款码" not in preview.get_json()["error"]["message"]


def test_a_thousand_codes_leave_one_open(app, api):
    """The attack itself, through the service (the rate cap is the edge's, tested below)."""
    from moralbank.people.models import User
    from moralbank.stores import service as stores

    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    with app.test_request_context():
        resident = db.session.scalar(select(User).where(User.phone == "13800000003"))
        for _ in range(50):
            with write_transaction():
                stores.issue_code(resident)
        db.session.remove()
    assert open_codes(app, household) == 1


@pytest.mark.parametrize("app_config", [{"CODE_MINT_LIMIT": "3 per minute"}])
def test_minting_is_capped_per_household(app, api, client):
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    for _ in range(3):
        assert mint(api).status_code == 201
    refused = mint(api)
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited" and error["message"]

    # another member of the same household shares the budget, on the web page too
    with app.app_context():
        with write_transaction():
            create_user(phone="13900009001", name="王二", password=DEMO_PASSWORD, role="resident",
                        household=db.session.get(Household, household))
        db.session.remove()
    page = client.get("/login")
    client.post("/login", data={"phone": "13900009001", "password": DEMO_PASSWORD,
                                "csrf_token": csrf_from(page.get_data(as_text=True))})
    page = client.get("/me/pay")
    assert page.status_code == 200
    response = client.post("/me/pay", data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 429
    assert "操作太频繁" in response.get_data(as_text=True)
    assert open_codes(app, household) == 1

    # the clerk and the committee are not residents: their budget is their own, and they get no code
    assert mint(api, "committee").status_code == 403


def test_a_codes_state_follows_its_times(app, api):
    """``code_state`` (what a page may report) reads the same facts the till refuses on."""
    from moralbank.stores import service as stores
    from moralbank.stores.models import CodeState

    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    first, second = mint(api).get_json(), mint(api).get_json()
    api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": second["code"], "points": 1})
    third = mint(api).get_json()

    def states():
        with session_of(app) as session:
            return [stores.code_state(session.scalar(select(RedemptionCode).where(
                RedemptionCode.code == code["code"]))) for code in (first, second, third)]

    assert states() == [CodeState.REPLACED, CodeState.USED, CodeState.OPEN]
    travel(timedelta(hours=1))
    assert states() == [CodeState.REPLACED, CodeState.USED, CodeState.EXPIRED]
    assert [str(state) for state in states()] == ["replaced", "used", "expired"]
