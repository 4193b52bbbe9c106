"""Weak paper-card PINs (issue 10, item 9): the PINs people guess first — a keypad column like
2580, a repeated pair like 1212, a run, a year, the household's own phone tail — are refused with
a readable message on the API and the committee's card page, and no card is issued."""
from __future__ import annotations

import html as htmllib

from sqlalchemy import func, select

from moralbank.stores.models import HouseholdCard
from support import DEMO_PASSWORD, PHONES, csrf_from, session_of

API = "/api/v1"
WEAK = ["2580", "0852", "1470", "3690", "147258", "1212", "121212", "12341234", "1111", "1234", "9876",
        "45678", "1987", "2026"]


def cards(app, household: int) -> int:
    with session_of(app) as session:
        return session.scalar(select(func.count(HouseholdCard.id)).where(HouseholdCard.household_id == household))


def test_weak_pins_are_refused_on_the_api(app, api):
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    before = cards(app, household)
    tail = PHONES["resident"][-4:]  # the resident's own phone: 13800000003 → 0003
    for pin in WEAK + [tail, PHONES["resident"][-6:]]:
        response = api.post(f"{API}/households/{household}/cards", "committee", json={"pin": pin})
        assert response.status_code == 422, (pin, response.get_json())
        error = response.get_json()["error"]
        assert "pin" in error["fields"] and "密码太简单" in error["message"], (pin, error)
    assert cards(app, household) == before
    assert api.post(f"{API}/households/{household}/cards", "committee", json={"pin": "5173"}).status_code == 201
    assert cards(app, household) == before + 1


def test_weak_pin_is_refused_on_the_card_page(app, client):
    page = client.get("/login")
    client.post("/login", data={"phone": PHONES["committee"], "password": DEMO_PASSWORD,
                                "csrf_token": csrf_from(page.get_data(as_text=True))})
    with session_of(app) as session:
        from moralbank.people.models import User
        resident = session.scalar(select(User).where(User.phone == PHONES["resident"]))
        household = next(g.household_id for g in resident.grants if g.role == "resident")
    before = cards(app, household)
    form = client.get(f"/committee/households/{household}/card").get_data(as_text=True)
    for pin in ("2580", "1212"):
        shown = client.post(f"/committee/households/{household}/card",
                            data={"csrf_token": csrf_from(form), "pin": pin})
        text = htmllib.unescape(shown.get_data(as_text=True))
        assert "密码太简单" in text and ("键盘" in text or "重复" in text), pin
    assert cards(app, household) == before
