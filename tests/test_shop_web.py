"""The shop in the browser-less web client: the resident's pay page, the clerk's number/QR →
preview → cart → receipt, stock pages, the committee's stores, statements and paper cards.

Several people act in one test, each with their own test client (their own cookies).
"""
from __future__ import annotations

import base64
import html as htmllib
import io
import re
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import zxingcpp
from PIL import Image
from sqlalchemy import func, select

from support import DEMO_PASSWORD, PHONES, csrf_from
from moralbank.database import utcnow
from moralbank.extensions import db
from moralbank.ledger.models import Account
from moralbank.people.models import Household
from moralbank.stores.models import Item, Redemption, Store

API = "/api/v1"
ZONE = ZoneInfo("Asia/Shanghai")


# --- helpers ---------------------------------------------------------------------------------

def login(app, who):
    """A fresh test client logged in through the web form."""
    client = app.test_client()
    page = client.get("/login")
    response = client.post("/login", data={"phone": PHONES.get(who, who), "password": DEMO_PASSWORD,
                                           "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def text_of(response) -> str:
    return htmllib.unescape(response.get_data(as_text=True))


def form_fields(html: str, form_id: str | None = None) -> dict:
    """The hidden inputs of a form (the first, or the one with ``id=form_id``)."""
    if form_id:
        match = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S)
        assert match, f"no form #{form_id}"
        html = match.group(0)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def me(api, who):
    return api.get(f"{API}/me", who).get_json()


def balance(api, household_id):
    return api.get(f"{API}/households/{household_id}", "committee").get_json()["balance"]


def items_of(api, store_id) -> dict[int, dict]:
    return {item["id"]: item for item in api.get(f"{API}/stores/{store_id}/items", "committee").get_json()["items"]}


def new_code(api) -> dict:
    response = api.post(f"{API}/redemption-codes", "resident")
    assert response.status_code == 201
    return response.get_json()


def redemptions_count(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(Redemption.id)))
        db.session.remove()
    return count


def decode_qr(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, "the QR image does not decode"
    return found[0].text


def masked(name: str) -> str:
    return name[0] + "*" * (len(name) - 2) + name[-1] if len(name) > 2 else name[0] + "*"


# --- the clerk: number → preview → cart → receipt --------------------------------------------

def check_cart_and_receipt(app, api):
    store = me(api, "clerk")["store"]["id"]
    household = me(api, "resident")["household"]["id"]
    head = me(api, "resident")["user"]["name"]
    start = balance(api, household)
    shelf = sorted((item for item in items_of(api, store).values() if item["stock"] >= 2),
                   key=lambda item: item["points"])
    first, second = shelf[0], shelf[1]
    cost = first["points"] * 2 + second["points"]
    assert cost <= start
    code = new_code(api)

    clerk = login(app, "clerk")
    home = text_of(clerk.get("/shop"))
    assert 'action="/shop/redeem"' in home and 'name="code"' in home
    page = clerk.get(f"/shop/redeem?code={code['code']}")
    assert page.status_code == 200
    html = text_of(page)
    assert masked(head) in html and head not in html
    assert f'id="available">{start}<' in html
    assert f'name="item-{first["id"]}"' in html

    form = form_fields(html, "cart")
    assert form["code"] == code["code"] and form["idempotency_key"] and form["csrf_token"]
    form.update({f"item-{first['id']}": "2", f"item-{second['id']}": "1", "points": ""})
    before = redemptions_count(app)
    response = clerk.post("/shop/redeem", data=form)
    assert response.status_code == 302
    receipt_url = response.headers["Location"]
    assert "/shop/receipts/" in receipt_url
    receipt = text_of(clerk.get(receipt_url))
    assert f"{first['name']} ×2" in receipt and f"{second['name']} ×1" in receipt
    assert f'id="receipt-total">{cost}<' in receipt
    assert f'id="balance-after">{start - cost}<' in receipt
    assert masked(head) in receipt and head not in receipt
    assert balance(api, household) == start - cost
    shelf_after = items_of(api, store)
    assert shelf_after[first["id"]]["stock"] == first["stock"] - 2
    assert shelf_after[second["id"]]["stock"] == second["stock"] - 1

    # The clerk taps "confirm" again (or the browser resubmits): the same receipt, nothing twice.
    again = clerk.post("/shop/redeem", data=form)
    assert again.status_code == 302 and again.headers["Location"] == receipt_url
    assert redemptions_count(app) == before + 1
    assert balance(api, household) == start - cost
    assert items_of(api, store)[first["id"]]["stock"] == first["stock"] - 2

    # A new form (new key) with the used code is refused with a clear message.
    form["idempotency_key"] = uuid.uuid4().hex
    refused = clerk.post("/shop/redeem", data=form, follow_redirects=True)
    assert "用过" in text_of(refused)
    assert redemptions_count(app) == before + 1
    # The receipt shows on the shop's home page and history.
    receipt_id = receipt_url.rsplit("/", 1)[-1]
    assert f"#{receipt_id}" in text_of(clerk.get("/shop"))
    assert f"#{receipt_id}" in text_of(clerk.get("/shop/history"))


def check_a_reopened_receipt_keeps_its_balance_after(app, api):
    store = me(api, "clerk")["store"]["id"]
    household = me(api, "resident")["household"]["id"]
    start = balance(api, household)
    clerk = login(app, "clerk")
    form = form_fields(text_of(clerk.get(f"/shop/redeem?code={new_code(api)['code']}")), "cart")
    receipt_url = clerk.post("/shop/redeem", data=dict(form, points="2")).headers["Location"]
    assert f'id="balance-after">{start - 2}<' in text_of(clerk.get(receipt_url))
    # The household shops again; yesterday's receipt, reprinted, still says what it said.
    assert api.post(f"{API}/stores/{store}/redemptions", "clerk",
                    json={"code": new_code(api)["code"], "points": 5}).status_code == 201
    assert f'id="balance-after">{start - 2}<' in text_of(clerk.get(receipt_url))


def test_clerk_types_number_buys_a_cart_and_gets_a_receipt_once(app, api):
    check_cart_and_receipt(app, api)
    check_a_reopened_receipt_keeps_its_balance_after(app, api)


def test_web_refusals_change_nothing_and_keep_the_code(app, api):
    check_web_refusals(app, api)
    check_expired_code_on_the_web_is_refused(app, api)  # last: it moves the clock


def test_history_today_total_follows_the_local_day(app, api):
    """At 07:30 Beijing time, "today" began at 00:00 Beijing time, not at 08:00 yesterday (UTC midnight)."""
    from datetime import timezone

    from moralbank.database import travel, write_transaction
    from moralbank.stores import service as stores

    store_id = me(api, "clerk")["store"]["id"]
    household_id = me(api, "resident")["household"]["id"]
    now_local = utcnow().astimezone(ZONE)
    target = now_local.replace(hour=7, minute=30, second=0, microsecond=0)
    if target <= now_local:
        target += timedelta(days=1)
    travel(target - now_local)
    midnight = target.replace(hour=0, minute=0)
    with app.test_request_context():
        with write_transaction():
            household, store = db.session.get(Household, household_id), db.session.get(Store, store_id)
            stores.redeem(household, store, points=1, at=midnight + timedelta(hours=6))       # today 06:00
            stores.redeem(household, store, points=2, at=midnight - timedelta(hours=15))      # yesterday 09:00
        expected = db.session.scalar(select(func.coalesce(func.sum(Redemption.points), 0)).where(
            Redemption.store_id == store_id, Redemption.created_at >= midnight.astimezone(timezone.utc)))
        db.session.remove()
    page = text_of(login(app, "clerk").get("/shop/history"))
    total = int(re.search(r"<strong>(\d+)</strong>", page).group(1))
    assert total == expected


def check_web_refusals(app, api):
    store = me(api, "clerk")["store"]["id"]
    household = me(api, "resident")["household"]["id"]
    start = balance(api, household)
    code = new_code(api)
    clerk = login(app, "clerk")

    unknown = f"{(int(code['code']) + 1) % 10 ** 8:08d}"
    page = clerk.get(f"/shop/redeem?code={unknown}")
    assert page.status_code == 404
    assert "没有这个付款码" in text_of(page)

    html = text_of(clerk.get(f"/shop/redeem?code={code['code']}"))
    form = form_fields(html, "cart")
    too_much = dict(form, points=str(start + 1))
    response = clerk.post("/shop/redeem", data=too_much, follow_redirects=True)
    assert response.status_code == 422 and "积分不足" in text_of(response)
    assert f'name="points" type="number" min="1" inputmode="numeric" value="{start + 1}"' in text_of(response), \
        "the cart comes back as the clerk filled it"
    assert 'id="total-error"' in text_of(response), "the refusal is said next to the total"
    assert balance(api, household) == start

    # Nonsense quantities are refused, not a server error.
    item = next(item for item in items_of(api, store).values() if item["stock"] > 0)
    nonsense = dict(form, **{f"item-{item['id']}": "abc"}, idempotency_key=uuid.uuid4().hex)
    response = clerk.post("/shop/redeem", data=nonsense, follow_redirects=True)
    assert response.status_code == 422 and "「数量」要填不小于 0 的整数" in text_of(response)
    assert f'id="item-{item["id"]}-error">{item["name"]}：要填不小于 0 的整数' in text_of(response)
    assert items_of(api, store)[item["id"]]["stock"] == item["stock"]

    # The same code then buys what the household can afford (a fresh page gives a fresh key).
    form = form_fields(text_of(clerk.get(f"/shop/redeem?code={code['code']}")), "cart")
    response = clerk.post("/shop/redeem", data=dict(form, points="1"))
    assert response.status_code == 302 and "/shop/receipts/" in response.headers["Location"]
    assert balance(api, household) == start - 1

    # Only clerks use the shop pages.
    resident = login(app, "resident")
    assert resident.get("/shop").status_code == 403
    assert resident.get(f"/shop/redeem?code={code['code']}").status_code == 403


def check_expired_code_on_the_web_is_refused(app, api):
    from moralbank.database import travel

    ttl = api.get(f"{API}/villages/BLM", "committee").get_json()["code_ttl_seconds"]
    code = new_code(api)
    clerk = login(app, "clerk")
    form = form_fields(text_of(clerk.get(f"/shop/redeem?code={code['code']}")), "cart")
    travel(timedelta(seconds=ttl + 1))
    before = redemptions_count(app)
    response = clerk.post("/shop/redeem", data=dict(form, points="1"), follow_redirects=True)
    assert "过期" in text_of(response)
    assert redemptions_count(app) == before
    assert clerk.get(f"/shop/redeem?code={code['code']}").status_code == 409


def test_scanned_qr_url_leads_the_clerk_through_login_to_the_preview(app, api):
    head = me(api, "resident")["user"]["name"]
    household = me(api, "resident")["household"]["id"]
    code = new_code(api)
    url = decode_qr(api.get(f"{API}/redemption-codes/{code['code']}/qr.png", "resident").data)
    parts = urlsplit(url)
    assert parts.path == "/shop/redeem" and parse_qs(parts.query) == {"t": [code["token"]]}

    clerk = app.test_client()
    first = clerk.get(f"{parts.path}?{parts.query}")
    assert first.status_code == 302 and "/login" in first.headers["Location"]
    login_url = first.headers["Location"]
    page = clerk.get(login_url)
    response = clerk.post(login_url, data={"phone": PHONES["clerk"], "password": DEMO_PASSWORD,
                                           "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert response.status_code == 302
    landed = urlsplit(response.headers["Location"])
    assert landed.path == "/shop/redeem" and parse_qs(landed.query) == {"t": [code["token"]]}
    preview = text_of(clerk.get(f"{landed.path}?{landed.query}"))
    assert masked(head) in preview and head not in preview
    assert f'id="available">{balance(api, household)}<' in preview
    # The cart posts the token back and redeems.
    form = form_fields(preview, "cart")
    assert form["code"] == code["token"]
    assert clerk.post("/shop/redeem", data=dict(form, points="2")).status_code == 302


# --- the resident's pay page -----------------------------------------------------------------

def check_resident_pay_page(app, api):
    household = me(api, "resident")["household"]["id"]
    start = balance(api, household)
    resident = login(app, "resident")
    page = text_of(resident.get("/me/pay"))
    assert 'id="code-area" hidden' not in page  # the page opens on a code, minted by the server
    assert f'data-testid="balance">{start}<' in page

    response = resident.post("/me/pay", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302
    page = text_of(resident.get("/me/pay"))
    qr = re.search(r'<img id="qr" class="qr" src="([^"]+)"', page).group(1)
    digits = re.search(r'id="digits"[^>]*>(\d{4}) (\d{4})<', page)
    assert digits, "the page shows the 8-digit number"
    number = digits.group(1) + digits.group(2)
    image = resident.get(qr)
    assert image.status_code == 200 and image.mimetype == "image/png"
    url = decode_qr(image.data)
    token = parse_qs(urlsplit(url).query)["t"][0]

    status = resident.get(f"/me/pay/status/{number}").get_json()
    assert status["used"] is False and status["balance"] == start

    # The shop scans the QR (token) — the same code as the number.
    store = me(api, "clerk")["store"]["id"]
    seen = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": token}).get_json()
    assert seen["household_id"] == household
    done = api.post(f"{API}/stores/{store}/redemptions", "clerk", json={"code": number, "points": 5})
    assert done.status_code == 201

    status = resident.get(f"/me/pay/status/{number}").get_json()
    assert status["used"] is True
    assert status["balance"] == start - 5 == done.get_json()["balance_after"]
    assert status["spent"] == 5
    page = text_of(resident.get("/me/pay"))
    assert number[:4] + " " + number[4:] not in page  # the used code is gone from the page
    assert f'data-testid="balance">{start - 5}<' in page

    # Nobody else reads this household's code status or QR.
    other = login(app, "clerk")
    assert other.get(f"/me/pay/status/{number}").status_code in (403, 404)
    assert other.get(qr).status_code in (403, 404)


def check_pay_page_json_refresh_gives_a_new_code(app):
    resident = login(app, "resident")
    page = text_of(resident.get("/me/pay"))
    first = resident.post("/me/pay", data={"csrf_token": csrf_from(page)}, headers={"Accept": "application/json"})
    assert first.status_code == 201
    second = resident.post("/me/pay", data={"csrf_token": csrf_from(page)}, headers={"Accept": "application/json"})
    assert first.get_json()["code"] != second.get_json()["code"]
    shown = text_of(resident.get("/me/pay"))
    assert second.get_json()["pretty"] in shown
    # Without the CSRF token, no code.
    assert resident.post("/me/pay", headers={"Accept": "application/json"}).status_code == 400


def test_resident_pay_page_shows_qr_and_number_then_used_with_new_balance(app, api):
    check_resident_pay_page(app, api)
    check_pay_page_json_refresh_gives_a_new_code(app)


# --- stock and the committee's stores --------------------------------------------------------

def test_clerk_changes_stock_on_shop_items_but_not_price(app, api, client):
    store = me(api, "clerk")["store"]["id"]
    item = next(iter(items_of(api, store).values()))
    clerk = login(app, "clerk")
    html = text_of(clerk.get("/shop/items"))
    key = re.search(r'name="idempotency_key" value="([^"]+)-' + str(item["id"]) + '"', html).group(1)
    form = {"csrf_token": csrf_from(html), "idempotency_key": f"{key}-{item['id']}", "item_id": str(item["id"]),
            "stock": "3"}
    response = clerk.post("/shop/items", data=form)
    assert response.status_code == 302
    assert items_of(api, store)[item["id"]]["stock"] == 3
    assert "库存改为 3" in text_of(clerk.get("/shop/items"))

    bad = dict(form, stock="-1", idempotency_key=uuid.uuid4().hex)
    response = clerk.post("/shop/items", data=bad)
    assert response.status_code == 200 and "「库存」要填整数" in text_of(response)
    assert items_of(api, store)[item["id"]]["stock"] == 3

    with app.app_context():
        foreign = db.session.scalar(select(Item.id).where(Item.store_id != store).order_by(Item.id))
        foreign_stock = db.session.get(Item, foreign).stock
        db.session.remove()
    response = clerk.post("/shop/items", data=dict(form, item_id=str(foreign), stock="1",
                                                   idempotency_key=uuid.uuid4().hex))
    assert "找不到这件商品" in text_of(response)
    with app.app_context():
        assert db.session.get(Item, foreign).stock == foreign_stock
        db.session.remove()

    # Through the API the clerk may count stock but not set prices.
    response = client.patch(f"{API}/items/{item['id']}", headers=api.headers("clerk"), json={"points": 1})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "clerk_stock_only"
    assert items_of(api, store)[item["id"]]["points"] == item["points"]
    # The committee page is not the clerk's.
    assert clerk.get("/committee/stores").status_code == 403


def test_committee_adds_an_item_and_edits_price_and_stock(app, api):
    store = me(api, "clerk")["store"]["id"]
    committee = login(app, "committee")
    html = text_of(committee.get("/committee/stores"))
    add_key = re.search(rf'name="idempotency_key" value="([^"]+-new{store})"', html).group(1)
    assert f'action="/committee/stores/{store}/items"' in html  # the page's form posts to the add route
    add = {"csrf_token": csrf_from(html), "idempotency_key": add_key,
           "name": "测试老陈醋", "points": "9", "stock": "4", "unit": "瓶"}
    response = committee.post(f"/committee/stores/{store}/items", data=add)
    assert response.status_code == 302
    assert committee.post(f"/committee/stores/{store}/items", data=add).status_code == 302  # double tap
    new = [item for item in items_of(api, store).values() if item["name"] == "测试老陈醋"]
    assert len(new) == 1
    item = new[0]
    assert (item["points"], item["stock"], item["unit"]) == (9, 4, "瓶")
    assert "测试老陈醋" in text_of(committee.get("/committee/stores"))

    edit_url = f"/committee/stores/{store}/items/{item['id']}"
    assert f'action="{edit_url}"' in text_of(committee.get("/committee/stores"))
    edit = {"csrf_token": csrf_from(html), "idempotency_key": uuid.uuid4().hex, "name": "测试老陈醋",
            "points": "11", "stock": "6", "active": "1"}
    assert committee.post(edit_url, data=edit).status_code == 302
    changed = items_of(api, store)[item["id"]]
    assert (changed["points"], changed["stock"]) == (11, 6)

    # The clerk's cart shows the new price; taking it off the shelf hides it from the cart.
    code = new_code(api)
    clerk = login(app, "clerk")
    cart = text_of(clerk.get(f"/shop/redeem?code={code['code']}"))
    assert re.search(r"测试老陈醋</td><td class=\"num\">11/瓶", cart)
    off = dict(edit, idempotency_key=uuid.uuid4().hex)
    del off["active"]
    assert committee.post(edit_url, data=off).status_code == 302
    cart = text_of(clerk.get(f"/shop/redeem?code={code['code']}"))
    assert "测试老陈醋" not in cart

    # Bad input is a message, not a change.
    bad = dict(edit, points="0", idempotency_key=uuid.uuid4().hex)
    response = committee.post(edit_url, data=bad)
    assert response.status_code == 200 and "正整数" in text_of(response)
    assert items_of(api, store)[item["id"]]["points"] == 11
    # Another village's committee cannot touch BLM's store.
    xlc = login(app, "committee_xlc")
    page = text_of(xlc.get("/committee/stores"))
    foreign = dict(edit, csrf_token=csrf_from(page), points="1", idempotency_key=uuid.uuid4().hex)
    xlc.post(edit_url, data=foreign)
    assert items_of(api, store)[item["id"]]["points"] == 11


# --- statement page --------------------------------------------------------------------------

def test_committee_settles_last_month_on_the_statement_page_once(app, api):
    store = me(api, "clerk")["store"]["id"]
    first = utcnow().astimezone(ZONE).replace(day=1) - timedelta(days=1)
    period = f"{first.year}-{first.month:02d}"
    owed = api.get(f"{API}/stores/{store}/statement?period={period}", "committee").get_json()
    assert owed["points"] > 0
    with app.app_context():
        before = db.session.scalar(select(Account.balance).where(Account.store_id == store))
        db.session.remove()
    committee = login(app, "committee")
    html = text_of(committee.get(f"/stores/{store}/statement?period={period}"))
    assert f'id="owed-points">{owed["points"]}<' in html
    assert re.search(rf'id="owed-yuan"[^>]*>[^<]*{owed["amount_fen"] / 100:.2f}', html)
    form = dict(form_fields(html), confirm="1")
    assert form["period"] == period
    response = committee.post(f"/stores/{store}/statement?period={period}", data=form, follow_redirects=True)
    assert "已结算" in text_of(response)
    again = dict(form, idempotency_key=uuid.uuid4().hex)
    response = committee.post(f"/stores/{store}/statement?period={period}", data=again, follow_redirects=True)
    assert "已经结算过了" in text_of(response)
    with app.app_context():
        after = db.session.scalar(select(Account.balance).where(Account.store_id == store))
        db.session.remove()
    assert after == before - owed["points"]
    # The clerk reads the statement but has no settle button.
    clerk_page = text_of(login(app, "clerk").get(f"/stores/{store}/statement?period={period}"))
    assert f'id="owed-points">{owed["points"]}<' in clerk_page and "记录结算" not in clerk_page


# --- paper cards -----------------------------------------------------------------------------

def test_committee_issues_a_card_and_the_clerk_unlocks_it_with_the_pin(app, api):
    household = me(api, "resident")["household"]["id"]
    head = me(api, "resident")["user"]["name"]
    start = balance(api, household)
    committee = login(app, "committee")
    page = text_of(committee.get(f"/committee/households/{household}/card"))
    weak = committee.post(f"/committee/households/{household}/card", data={"csrf_token": csrf_from(page),
                                                                          "pin": "1111"})
    assert "太简单" in text_of(weak)
    printed = committee.post(f"/committee/households/{household}/card",
                             data={"csrf_token": csrf_from(page), "pin": "5173"})
    assert printed.status_code == 200
    html = text_of(printed)
    data = re.search(r'<img class="qr" src="data:image/png;base64,([^"]+)"', html).group(1)
    url = decode_qr(base64.b64decode(data))
    parts = urlsplit(url)
    assert parts.path == "/shop/card"
    card_url = f"{parts.path}?{parts.query}"

    clerk = login(app, "clerk")
    pin_page = text_of(clerk.get(card_url))
    assert masked(head) in pin_page and head not in pin_page and 'name="pin"' in pin_page
    wrong = clerk.post(card_url, data={"csrf_token": csrf_from(pin_page), "pin": "9999"})
    assert wrong.status_code == 200 and "密码不对" in text_of(wrong)
    right = clerk.post(card_url, data={"csrf_token": csrf_from(pin_page), "pin": "5173"})
    assert right.status_code == 302
    landed = right.headers["Location"]
    assert "/shop/redeem?code=" in landed
    preview = text_of(clerk.get(landed))
    assert masked(head) in preview and f'id="available">{start}<' in preview
    form = form_fields(preview, "cart")
    done = clerk.post("/shop/redeem", data=dict(form, points="3"), follow_redirects=True)
    assert f'id="balance-after">{start - 3}<' in text_of(done)
    assert balance(api, household) == start - 3

    # Re-issuing kills the old card: its QR now leads back to the shop home with a message.
    page = text_of(committee.get(f"/committee/households/{household}/card"))
    assert "有效" in page
    committee.post(f"/committee/households/{household}/card", data={"csrf_token": csrf_from(page), "pin": "7391"})
    old = clerk.get(card_url, follow_redirects=True)
    assert "已停用" in text_of(old)
    assert 'name="pin"' not in text_of(old)

    # A lost card is revoked from the same page: its QR leads nowhere any more.
    page = text_of(committee.get(f"/committee/households/{household}/card"))
    assert f'action="/committee/households/{household}/card/revoke"' in page
    revoked = committee.post(f"/committee/households/{household}/card/revoke",
                             data={"csrf_token": csrf_from(page), "confirm": "1"}, follow_redirects=True)
    assert "已停用 1 张卡" in text_of(revoked)
    assert "有效" not in text_of(committee.get(f"/committee/households/{household}/card"))

    # Only the committee of the household's village issues cards.
    assert clerk.get(f"/committee/households/{household}/card").status_code == 403
    assert login(app, "committee_xlc").get(f"/committee/households/{household}/card").status_code == 403
