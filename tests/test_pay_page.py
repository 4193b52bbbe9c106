"""The resident's payment-code page (issue 12): it never opens on a code about to run out, 换一个码
ends the previous code (a clerk who scans it is told it was replaced: ``code_replaced``), and the
page's poll says 已付款 for whichever of the household's codes a shop took since it opened."""
from __future__ import annotations

import html as htmllib
import re
from datetime import timedelta

import pytest

from moralbank.database import travel
from support import csrf_from

API = "/api/v1"


def shown_code(page_html: str) -> str | None:
    """The 8-digit number the page shows (``1234 5678``), or None when it shows none."""
    found = re.search(r'id="digits"[^>]*>(\d{4}) (\d{4})<', page_html)
    return found.group(1) + found.group(2) if found else None


def status_url(page_html: str) -> str:
    return htmllib.unescape(re.search(r'data-status-url="([^"]+)"', page_html).group(1))


def store_of(api) -> int:
    return api.get(f"{API}/me", "clerk").get_json()["store"]["id"]


@pytest.mark.clock("2026-12-01 10:00")
def test_the_page_never_opens_on_a_code_with_less_than_a_minute_left(app, api, client, auth):
    auth.login("resident")
    first = client.get("/me/pay").get_data(as_text=True)
    number = shown_code(first)
    assert number, "opening the page shows a code at once (minted by the server, no script needed)"
    assert shown_code(client.get("/me/pay").get_data(as_text=True)) == number, "a fresh code is shown again"
    ttl = api.get(f"{API}/villages/BLM", "committee").get_json()["code_ttl_seconds"]
    travel(timedelta(seconds=ttl - 50))
    again = client.get("/me/pay").get_data(as_text=True)
    renewed = shown_code(again)
    assert renewed and renewed != number, "50 seconds left: the page mints a new code instead"
    left = int(re.search(r'data-seconds-left="(\d+)"', again).group(1))
    assert left >= ttl - 2
    # the code it replaced is refused by name at the till
    preview = api.post(f"{API}/stores/{store_of(api)}/redemption-previews", "clerk", json={"code": number})
    assert preview.status_code == 409 and preview.get_json()["error"]["code"] == "code_replaced"


@pytest.mark.clock("2026-12-01 10:00")
def test_a_new_code_ends_the_old_one_and_the_till_says_replaced(app, api, client, auth):
    auth.login("resident")
    page = client.get("/me/pay").get_data(as_text=True)
    old = shown_code(page)
    changed = client.post("/me/pay", data={"csrf_token": csrf_from(page)})
    assert changed.status_code == 302
    new = shown_code(client.get("/me/pay").get_data(as_text=True))
    assert new and new != old
    store = store_of(api)
    sale = api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": old, "points": 1})
    assert sale.status_code == 409
    error = sale.get_json()["error"]
    assert error["code"] == "code_replaced" and "新的付款码" in error["message"]
    # the resident's QR of the old code is gone too, and says why
    qr = api.get(f"{API}/redemption-codes/{old}/qr.png", "resident")
    assert qr.status_code == 404 and qr.get_json()["error"]["code"] == "code_replaced"
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": new, "points": 1}).status_code == 201


@pytest.mark.clock("2026-12-01 10:00")
def test_the_poll_says_paid_for_whichever_code_the_shop_took(app, api, client, auth):
    auth.login("resident")
    page = client.get("/me/pay").get_data(as_text=True)
    poll = status_url(page)
    assert "/me/pay/status?since=" in poll and shown_code(page) not in poll, "polled by household, not by code"
    assert client.get(poll).get_json()["used"] is False
    # the resident taps 换一个码 after the page opened; the shop takes the newer code
    client.post("/me/pay", data={"csrf_token": csrf_from(page)})
    newer = shown_code(client.get("/me/pay").get_data(as_text=True))
    before = client.get(poll).get_json()["balance"]
    assert api.post(f"{API}/stores/{store_of(api)}/redemptions", "clerk",
                    json={"code": newer, "points": 3}).status_code == 201
    status = client.get(poll).get_json()
    assert status == {"used": True, "spent": 3, "balance": before - 3}
    # a page opened after that payment does not claim it
    travel(timedelta(seconds=2))
    later = status_url(client.get("/me/pay").get_data(as_text=True))
    assert client.get(later).get_json()["used"] is False
    assert client.get("/me/pay/status").status_code == 400
    assert client.get("/me/pay/status?since=abc").status_code == 400


@pytest.mark.clock("2026-12-01 10:00")
def test_the_clerk_page_says_replaced_in_words(app, client, auth):
    auth.login("resident")
    page = client.get("/me/pay").get_data(as_text=True)
    old = shown_code(page)
    client.post("/me/pay", data={"csrf_token": csrf_from(page)})
    auth.logout()
    auth.login("clerk")
    answer = client.get(f"/shop/redeem?code={old}")
    assert answer.status_code == 409
    assert "村民已换了新的付款码" in htmllib.unescape(answer.get_data(as_text=True))


@pytest.mark.clock("2026-12-01 10:00")
@pytest.mark.parametrize("app_config", [{"CODE_MINT_LIMIT": "2 per minute"}])
def test_opening_the_page_counts_against_the_minting_budget(app, api, client, auth):
    auth.login("resident")
    assert shown_code(client.get("/me/pay").get_data(as_text=True))       # mint 1
    assert api.post(f"{API}/redemption-codes", "resident").status_code == 201  # mint 2 ends the page's code
    ttl = api.get(f"{API}/villages/BLM", "committee").get_json()["code_ttl_seconds"]
    travel(timedelta(seconds=ttl - 30))
    page = client.get("/me/pay")
    assert page.status_code == 200, "over the budget the page still opens"
    text = htmllib.unescape(page.get_data(as_text=True))
    assert shown_code(text) is None and "显示付款码" in text
