"""The shop through the JSON API: payment codes and their QR,
previews, redemptions and every refusal, idempotency, statements and settlements, paper cards.

After every refusal the test checks that nothing changed: the household's balance, the
store's stock and ledger, and (where it applies) that the same code still works.
"""
from __future__ import annotations

import io
import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import zxingcpp
from PIL import Image, ImageDraw
from sqlalchemy import func, select, update
from urllib.parse import parse_qs, urlsplit

from moralbank.database import travel, utcnow, write_transaction
from moralbank.extensions import db
from moralbank.ledger.models import Account, Transfer
from moralbank.people.models import Area, Household
from moralbank.people.service import create_user, village_by_code
from moralbank.stores.models import HouseholdCard, Item, Redemption, RedemptionCode, Store

API = "/api/v1"
PASSWORD = "demo-pass-2026"
ZONE = ZoneInfo("Asia/Shanghai")


# --- helpers ---------------------------------------------------------------------------------

def me(api, who):
    response = api.get(f"{API}/me", who)
    assert response.status_code == 200
    return response.get_json()


def my_store(api) -> int:
    return me(api, "clerk")["store"]["id"]


def my_household(api) -> int:
    return me(api, "resident")["household"]["id"]


def household_balance(api, household_id: int) -> int:
    response = api.get(f"{API}/households/{household_id}", "committee")
    assert response.status_code == 200
    return response.get_json()["balance"]


def new_code(api, who="resident") -> dict:
    response = api.post(f"{API}/redemption-codes", who)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["code"].isdigit() and len(body["code"]) == 8
    return body


def store_items(api, store_id: int, who="clerk") -> dict[int, dict]:
    response = api.get(f"{API}/stores/{store_id}/items", who)
    assert response.status_code == 200
    return {item["id"]: item for item in response.get_json()["items"]}


def redeem(api, store_id, body, who="clerk", key=None):
    return api.post(f"{API}/stores/{store_id}/redemptions", who, json=body, key=key)


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def other_blm_store(app, store_id: int) -> int:
    with app.app_context():
        village = village_by_code("BLM")
        other = db.session.scalar(select(Store.id).where(Store.village_id == village.id, Store.id != store_id)
                                  .order_by(Store.id))
        db.session.remove()
    assert other is not None
    return other


def add_clerk(app, store_id: int, phone: str) -> str:
    """A clerk login for ``store_id`` (the demo has one only for BLM's first store)."""
    with app.app_context():
        with write_transaction():
            store = db.session.get(Store, store_id)
            create_user(phone=phone, name="测试店员", password=PASSWORD, role="clerk", store=store)
        db.session.remove()
    return phone


def snapshot(app, store_id: int, household_id: int) -> dict:
    """Everything a refused request must leave alone."""
    with app.app_context():
        state = {
            "household": db.session.scalar(select(Account.balance).where(Account.household_id == household_id)),
            "store": db.session.scalar(select(Account.balance).where(Account.store_id == store_id)),
            "stock": dict(db.session.execute(select(Item.id, Item.stock).where(Item.store_id == store_id)).all()),
            "transfers": db.session.scalar(select(func.count(Transfer.id))),
            "redemptions": db.session.scalar(select(func.count(Redemption.id))),
            "used_codes": db.session.scalar(select(func.count(RedemptionCode.id))
                                            .where(RedemptionCode.consumed_at.is_not(None))),
        }
        db.session.remove()
    return state


@pytest.fixture
def patch(client, api):
    """``patch(path, who, json)``: a PATCH with the user's bearer token."""
    return lambda path, who, json: client.patch(path, headers=api.headers(who), json=json)


def cheapest_in_stock(api, store_id) -> dict:
    items = [item for item in store_items(api, store_id).values() if item["stock"] > 0]
    return min(items, key=lambda item: item["points"])


# --- the code and its QR ---------------------------------------------------------------------

def check_qr_decodes_to_the_store_redeem_url_with_the_token(app, api, auth, client, kind):
    code = new_code(api)
    response = api.get(f"{API}/redemption-codes/{code['code']}/qr.{kind}", "resident")
    assert response.status_code == 200
    if kind == "png":
        assert response.mimetype == "image/png"
        assert decode_png(response.data) == code["url"]
        image = Image.open(io.BytesIO(response.data))
    else:
        assert response.mimetype == "image/svg+xml"
        image = svg_to_image(response.data)
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, "the QR image did not decode"
    url = found[0].text
    assert url == code["url"]
    parts = urlsplit(url)
    assert parse_qs(parts.query)["t"] == [code["token"]]
    assert code["code"] not in url  # the QR carries the token, not the typed number

    # A phone camera opens that URL; the logged-in clerk lands on the preview page.
    full_name = me(api, "resident")["user"]["name"]
    balance = household_balance(api, my_household(api))
    page = client.get(f"{parts.path}?{parts.query}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    masked = full_name[0] + "*" * (len(full_name) - 2) + full_name[-1]
    assert masked in html
    assert full_name not in html
    assert f'id="available">{balance}<' in html
    # Looking at it changed nothing: the code still redeems.
    assert redeem(api, my_store(api), {"code": code["token"], "points": 1}).status_code == 201


def svg_to_image(data: bytes) -> Image.Image:
    """Rasterise the SVG (a white background and one path of unit squares, ``Mx yh1v1h-1z``) with Pillow."""
    source = data.decode()
    assert "<script" not in source and "href" not in source  # nothing active, nothing fetched
    box = [float(v) for v in re.search(r'viewBox="([\d.\s-]+)"', source).group(1).split()]
    path = re.search(r'<path[^>]* d="([^"]+)"', source).group(1)
    scale = 10
    image = Image.new("L", (int(box[2] * scale), int(box[3] * scale)), 255)
    draw = ImageDraw.Draw(image)
    squares = re.findall(r"M(\d+) (\d+)h1v1h-1z", path)
    assert len("".join(f"M{x} {y}h1v1h-1z" for x, y in squares)) == len(path), "unexpected path commands"
    for x, y in squares:
        left, top = (int(x) - box[0]) * scale, (int(y) - box[1]) * scale
        draw.rectangle([left, top, left + scale - 1, top + scale - 1], fill=0)
    return image


def test_payment_code_qr_png_and_svg_open_the_preview(app, api, auth, client):
    """The QR (PNG and SVG) decodes to the redeem URL; only the household's residents get codes and images."""
    auth.login("clerk")
    for kind in ("png", "svg"):
        check_qr_decodes_to_the_store_redeem_url_with_the_token(app, api, auth, client, kind)
    check_qr_of_a_used_code_or_someone_elses_is_not_served(app, api)
    check_only_residents_get_codes(api)


def test_qr_image_is_drawn_once_per_code_and_never_outlives_the_code(app, api, auth, client, monkeypatch):
    """A phone fetching its code's picture again gets the same image without a redraw (the
    in-process cache); each code still gets its own picture; and once the code is used or expired
    the cached picture is refused like any other (PNG and SVG, API and the resident's page)."""
    import qrcode

    from moralbank.stores import qr

    drawn = []
    make = qrcode.QRCode.make

    def counted(symbol, *args, **kwargs):
        drawn.append(symbol.data_list)
        return make(symbol, *args, **kwargs)

    monkeypatch.setattr(qrcode.QRCode, "make", counted)
    qr.clear_cache()
    auth.login("resident")
    codes, images = [], {}
    for _ in range(2):  # the second code ends the first (one open code a household)
        code = new_code(api)
        codes.append(code)
        for kind in ("png", "svg"):
            first = api.get(f"{API}/redemption-codes/{code['code']}/qr.{kind}", "resident")
            again = api.get(f"{API}/redemption-codes/{code['code']}/qr.{kind}", "resident")
            by_token = api.get(f"{API}/redemption-codes/{code['token']}/qr.{kind}", "resident")
            assert first.status_code == again.status_code == by_token.status_code == 200
            assert again.data == first.data == by_token.data
            images[code["code"], kind] = first.data
        page = client.get(f"/me/pay/qr/{code['code']}.png")
        assert page.status_code == 200 and page.data == images[code["code"], "png"]
    assert len(drawn) == 4, "one drawing per code and format, however often it is fetched"
    for code in codes:
        assert decode_png(images[code["code"], "png"]) == code["url"]
        assert zxingcpp.read_barcodes(svg_to_image(images[code["code"], "svg"]))[0].text == code["url"]
    assert images[codes[0]["code"], "png"] != images[codes[1]["code"], "png"]

    replaced, used = codes
    assert redeem(api, my_store(api), {"code": used["code"], "points": 1}).status_code == 201
    for code, error in ((used, "code_used"), (replaced, "code_replaced")):
        for kind in ("png", "svg"):
            response = api.get(f"{API}/redemption-codes/{code['code']}/qr.{kind}", "resident")
            assert response.status_code == 404 and error_code(response) == error
        assert client.get(f"/me/pay/qr/{code['code']}.png").status_code == 404
    expiring = new_code(api)
    assert api.get(f"{API}/redemption-codes/{expiring['code']}/qr.png", "resident").status_code == 200
    ttl = api.get(f"{API}/villages/BLM", "committee").get_json()["code_ttl_seconds"]
    travel(timedelta(seconds=ttl + 5))
    response = api.get(f"{API}/redemption-codes/{expiring['code']}/qr.png", "resident")
    assert response.status_code == 404 and error_code(response) == "code_expired"
    assert client.get(f"/me/pay/qr/{expiring['code']}.png").status_code == 404


def decode_png(data: bytes) -> str:
    """The text of a served PNG, after checking it is a one-bit greyscale PNG of whole 8-pixel modules."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert data[24:26] == b"\x01\x00", "bit depth 1, greyscale"
    image = Image.open(io.BytesIO(data))
    assert image.mode == "1" and image.width == image.height and image.width % 8 == 0
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, "the QR image did not decode"
    return found[0].text


def check_qr_of_a_used_code_or_someone_elses_is_not_served(app, api):
    code = new_code(api)
    assert api.get(f"{API}/redemption-codes/{code['code']}/qr.png", "clerk").status_code == 404
    assert redeem(api, my_store(api), {"code": code["code"], "points": 1}).status_code == 201
    assert api.get(f"{API}/redemption-codes/{code['code']}/qr.png", "resident").status_code == 404


def check_only_residents_get_codes(api):
    for who in ("clerk", "committee"):
        response = api.post(f"{API}/redemption-codes", who)
        assert response.status_code == 403


def test_code_expires_after_the_village_ttl(app, api):
    ttl = api.get(f"{API}/villages/BLM", "committee").get_json()["code_ttl_seconds"]
    assert ttl >= 30
    store, household = my_store(api), my_household(api)
    code = new_code(api)
    expires = datetime.fromisoformat(code["expires_at"])
    assert abs((expires - utcnow()).total_seconds() - ttl) < 10

    travel(timedelta(seconds=ttl - 5))
    preview = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": code["code"]})
    assert preview.status_code == 200, "the code must still work just before its TTL"

    travel(timedelta(seconds=10))
    before = snapshot(app, store, household)
    for body in ({"code": code["code"], "points": 1}, {"code": code["token"], "points": 1}):
        response = redeem(api, store, body)
        assert response.status_code == 409
        assert error_code(response) == "code_expired"
    preview = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": code["code"]})
    assert preview.status_code == 409 and error_code(preview) == "code_expired"
    assert snapshot(app, store, household) == before
    # A fresh code works again.
    assert redeem(api, store, {"code": new_code(api)["code"], "points": 1}).status_code == 201


# --- preview ---------------------------------------------------------------------------------

def check_preview(app, api):
    store, household = my_store(api), my_household(api)
    full_name = me(api, "resident")["user"]["name"]
    balance = household_balance(api, household)
    assert balance > 0
    code = new_code(api)
    before = snapshot(app, store, household)
    for text_ in (code["code"], code["token"], f"{code['code'][:4]} {code['code'][4:]}"):
        response = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": text_})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["household_id"] == household
        assert body["balance"] == balance
        assert full_name not in body["label"]
        assert body["label"].startswith(full_name[0] + "*")
        assert full_name[-1] in body["label"]
    assert snapshot(app, store, household) == before
    assert redeem(api, store, {"code": code["code"], "points": 1}).status_code == 201


def check_preview_refusals(app, api):
    store = my_store(api)
    other = other_blm_store(app, store)
    code = new_code(api)
    response = api.post(f"{API}/stores/{other}/redemption-previews", "clerk", json={"code": code["code"]})
    assert response.status_code == 403
    response = api.post(f"{API}/stores/{store}/redemption-previews", "committee", json={"code": code["code"]})
    assert response.status_code == 403
    unknown = "1" + code["code"][1:] if code["code"][0] != "1" else "2" + code["code"][1:]
    response = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": unknown})
    assert response.status_code == 404
    response = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={})
    assert response.status_code in (400, 422)


def test_preview_shows_masked_name_and_balance_and_changes_nothing(app, api):
    check_preview(app, api)
    check_preview_refusals(app, api)


# --- redemption ------------------------------------------------------------------------------

def check_redeem_items_debits_household_credits_store_and_takes_stock(app, api):
    store, household = my_store(api), my_household(api)
    balance = household_balance(api, household)
    items = sorted(store_items(api, store).values(), key=lambda item: item["points"])
    cheap = [item for item in items if item["stock"] >= 2]
    first, second = cheap[0], cheap[1]
    cost = first["points"] * 2 + second["points"]
    assert cost <= balance, "the demo resident should afford the two cheapest items"
    before = snapshot(app, store, household)

    code = new_code(api)
    response = redeem(api, store, {"code": code["code"], "items": [
        {"item_id": first["id"], "quantity": 2}, {"item_id": second["id"], "quantity": 1}]})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["household_id"] == household
    assert body["points"] == cost
    assert body["balance_after"] == balance - cost
    assert household_balance(api, household) == body["balance_after"]
    assert me(api, "resident")["household"]["balance"] == body["balance_after"]

    after_items = store_items(api, store)
    assert after_items[first["id"]]["stock"] == first["stock"] - 2
    assert after_items[second["id"]]["stock"] == second["stock"] - 1
    after = snapshot(app, store, household)
    assert after["store"] == before["store"] + cost
    assert after["redemptions"] == before["redemptions"] + 1

    # The store's ledger got exactly one redemption credit of that amount.
    with app.app_context():
        row = db.session.execute(select(Transfer.code, Transfer.amount, Account.store_id)
                                 .join(Account, Account.id == Transfer.credit_account_id)
                                 .where(Transfer.redemption_id == body["id"])).all()
        db.session.remove()
    assert [tuple(r) for r in row] == [("redemption", cost, store)]

    # The household's history shows the spend.
    lines = api.get(f"{API}/households/{household}/transfers", "resident").get_json()["items"]
    assert lines[0]["code"] == "redemption" and lines[0]["amount"] == -cost


def check_listed_redemptions_keep_the_balance_after_each(app, api):
    """An earlier redemption still shows the balance right after it, not today's balance."""
    store, household = my_store(api), my_household(api)
    first = redeem(api, store, {"code": new_code(api)["code"], "points": 2}).get_json()
    second = redeem(api, store, {"code": new_code(api)["code"], "points": 3}).get_json()
    assert second["balance_after"] == first["balance_after"] - 3 == household_balance(api, household)
    listed = {row["id"]: row for row in api.get(f"{API}/stores/{store}/redemptions", "clerk").get_json()["items"]}
    assert listed[second["id"]]["balance_after"] == second["balance_after"]
    assert listed[first["id"]]["balance_after"] == first["balance_after"]


def check_redeem_points_only_and_reuse_is_code_used(app, api):
    store, household = my_store(api), my_household(api)
    balance = household_balance(api, household)
    code = new_code(api)
    response = redeem(api, store, {"code": code["token"], "points": 3})
    assert response.status_code == 201
    assert response.get_json()["balance_after"] == balance - 3 == household_balance(api, household)

    before = snapshot(app, store, household)
    for body in ({"code": code["token"], "points": 1}, {"code": code["code"], "points": 1}):
        again = redeem(api, store, body)
        assert again.status_code == 409
        assert error_code(again) == "code_used"
    assert snapshot(app, store, household) == before
    preview = api.post(f"{API}/stores/{store}/redemption-previews", "clerk", json={"code": code["code"]})
    assert preview.status_code == 409 and error_code(preview) == "code_used"


def test_redeem_items_then_points_then_reuse(app, api):
    check_redeem_items_debits_household_credits_store_and_takes_stock(app, api)
    check_listed_redemptions_keep_the_balance_after_each(app, api)
    check_redeem_points_only_and_reuse_is_code_used(app, api)


def check_insufficient_points_changes_nothing_and_the_code_still_works(app, api):
    store, household = my_store(api), my_household(api)
    balance = household_balance(api, household)
    item = cheapest_in_stock(api, store)
    code = new_code(api)
    before = snapshot(app, store, household)

    response = redeem(api, store, {"code": code["code"], "points": balance + 1})
    assert response.status_code == 422
    assert error_code(response) == "insufficient_points"
    # Items plus points over the balance: the stock taken for the item is put back too.
    response = redeem(api, store, {"code": code["code"], "items": [{"item_id": item["id"], "quantity": 1}],
                                   "points": balance})
    assert response.status_code == 422 and error_code(response) == "insufficient_points"
    assert snapshot(app, store, household) == before

    response = redeem(api, store, {"code": code["code"], "items": [{"item_id": item["id"], "quantity": 1}]})
    assert response.status_code == 201
    assert response.get_json()["balance_after"] == balance - item["points"]
    assert store_items(api, store)[item["id"]]["stock"] == item["stock"] - 1


def check_out_of_stock_changes_nothing_and_the_code_still_works(app, api, patch):
    store, household = my_store(api), my_household(api)
    items = sorted((item for item in store_items(api, store).values() if item["stock"] > 0),
                   key=lambda item: item["points"])
    empty, other = items[0], items[1]
    changed = patch(f"{API}/items/{empty['id']}", "committee", {"stock": 0})
    assert changed.status_code == 200 and changed.get_json()["stock"] == 0
    code = new_code(api)
    before = snapshot(app, store, household)

    response = redeem(api, store, {"code": code["code"], "items": [{"item_id": empty["id"], "quantity": 1}]})
    assert response.status_code == 422 and error_code(response) == "out_of_stock"
    # A cart with one good line and one empty line takes nothing from either.
    response = redeem(api, store, {"code": code["code"], "items": [{"item_id": other["id"], "quantity": 1},
                                                                   {"item_id": empty["id"], "quantity": 1}]})
    assert response.status_code == 422 and error_code(response) == "out_of_stock"
    # More than the stock (the clerk sets 2, the cart wants 3).
    assert patch(f"{API}/items/{other['id']}", "clerk", {"stock": 2}).status_code == 200
    before = snapshot(app, store, household)
    response = redeem(api, store, {"code": code["code"], "items": [{"item_id": other["id"], "quantity": 3}]})
    assert response.status_code == 422 and error_code(response) == "out_of_stock"
    assert snapshot(app, store, household) == before
    assert before["stock"][empty["id"]] == 0 and before["stock"][other["id"]] == 2

    response = redeem(api, store, {"code": code["code"], "items": [{"item_id": other["id"], "quantity": 2}]})
    assert response.status_code == 201
    assert store_items(api, store)[other["id"]]["stock"] == 0


def check_unknown_code_is_404_and_changes_nothing(app, api):
    store, household = my_store(api), my_household(api)
    code = new_code(api)
    unknown = f"{(int(code['code']) + 1) % 10 ** 8:08d}"
    before = snapshot(app, store, household)
    for text_ in (unknown, "not-a-real-token-at-all-xxxxxxxxxxxx"):
        response = redeem(api, store, {"code": text_, "points": 1})
        assert response.status_code == 404, response.get_json()
    assert snapshot(app, store, household) == before


def test_refusals_change_nothing_and_leave_the_code_usable(app, api, patch):
    """insufficient_points, out_of_stock, unknown code, bad bodies: 4xx, and nothing moved."""
    check_insufficient_points_changes_nothing_and_the_code_still_works(app, api)
    check_out_of_stock_changes_nothing_and_the_code_still_works(app, api, patch)
    check_unknown_code_is_404_and_changes_nothing(app, api)
    check_bad_bodies_are_clear_4xx_and_change_nothing(app, api)


def test_clerk_of_another_store_or_village_is_refused(app, api):
    store, household = my_store(api), my_household(api)
    other = other_blm_store(app, store)
    other_clerk = add_clerk(app, other, "13900000041")
    with app.app_context():
        xlc_store = db.session.scalar(select(Store.id).where(Store.village_id == village_by_code("XLC").id))
        db.session.remove()
    xlc_clerk = add_clerk(app, xlc_store, "13900000042")
    code = new_code(api)
    before = snapshot(app, store, household)

    # The demo clerk at the other store's endpoint; the other store's clerk at this one.
    response = redeem(api, other, {"code": code["code"], "points": 1})
    assert response.status_code == 403
    response = redeem(api, store, {"code": code["code"], "points": 1}, who=other_clerk)
    assert response.status_code == 403
    # Residents and the committee are not clerks.
    assert redeem(api, store, {"code": code["code"], "points": 1}, who="resident").status_code == 403
    assert redeem(api, store, {"code": code["code"], "points": 1}, who="committee").status_code == 403
    # Another village's clerk at their own store does not know a BLM code.
    response = redeem(api, xlc_store, {"code": code["code"], "points": 1}, who=xlc_clerk)
    assert response.status_code == 404
    response = redeem(api, xlc_store, {"code": code["token"], "points": 1}, who=xlc_clerk)
    assert response.status_code == 404
    assert snapshot(app, store, household) == before

    # A resident's code is good at any store of the village: the other store's clerk uses it there.
    other_before = snapshot(app, other, household)
    response = redeem(api, other, {"code": code["code"], "points": 2}, who=other_clerk)
    assert response.status_code == 201
    other_after = snapshot(app, other, household)
    assert other_after["store"] == other_before["store"] + 2
    assert other_after["household"] == other_before["household"] - 2
    assert snapshot(app, store, household)["store"] == before["store"]


def check_bad_bodies_are_clear_4xx_and_change_nothing(app, api):
    store, household = my_store(api), my_household(api)
    code = new_code(api)
    item = cheapest_in_stock(api, store)
    other = other_blm_store(app, store)
    with app.app_context():
        foreign_item = db.session.scalar(select(Item.id).where(Item.store_id == other))
        db.session.remove()
    before = snapshot(app, store, household)
    bodies = [
        {"code": code["code"]},                                        # nothing to buy
        {"code": code["code"], "points": 0},
        {"code": code["code"], "points": -5},
        {"code": code["code"], "points": "10"},
        {"code": code["code"], "items": [{"item_id": item["id"], "quantity": 0}]},
        {"code": code["code"], "items": [{"item_id": item["id"], "quantity": -1}]},
        {"code": code["code"], "items": [{"item_id": foreign_item, "quantity": 1}]},
        {"code": code["code"], "items": [{"item_id": 999999, "quantity": 1}]},
        {"items": [{"item_id": item["id"], "quantity": 1}]},
    ]
    for body in bodies:
        response = redeem(api, store, body)
        assert 400 <= response.status_code < 500, (body, response.status_code)
        assert "error" in response.get_json()
    assert snapshot(app, store, household) == before
    assert redeem(api, store, {"code": code["code"], "points": 1}).status_code == 201


# --- idempotency -----------------------------------------------------------------------------

def check_same_key_replays(app, api):
    store, household = my_store(api), my_household(api)
    balance = household_balance(api, household)
    code = new_code(api)
    key = f"redeem-{uuid.uuid4().hex}"
    body = {"code": code["code"], "points": 4}

    first = redeem(api, store, body, key=key)
    assert first.status_code == 201
    second = redeem(api, store, body, key=key)
    assert second.status_code == 201
    assert second.get_json()["id"] == first.get_json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert household_balance(api, household) == balance - 4

    before = snapshot(app, store, household)
    changed = redeem(api, store, {"code": code["code"], "points": 5}, key=key)
    assert changed.status_code == 409
    assert error_code(changed) != "code_used"  # refused for the key, not the code
    assert snapshot(app, store, household) == before
    # A new key with the used code is the ordinary code_used.
    assert error_code(redeem(api, store, body, key=f"redeem-{uuid.uuid4().hex}")) == "code_used"


def check_failed_request_leaves_its_key_free_for_a_retry(app, api):
    store, household = my_store(api), my_household(api)
    balance = household_balance(api, household)
    code = new_code(api)
    key = f"redeem-{uuid.uuid4().hex}"
    refused = redeem(api, store, {"code": code["code"], "points": balance + 1}, key=key)
    assert refused.status_code == 422
    retry = redeem(api, store, {"code": code["code"], "points": balance + 1}, key=key)
    assert retry.status_code == 422, "a refused request must not be replayed as if stored"
    assert redeem(api, store, {"code": code["code"], "points": 1}, key=key).status_code == 201


def test_idempotency_key_replays_once_and_refuses_a_different_body(app, api):
    check_same_key_replays(app, api)
    check_failed_request_leaves_its_key_free_for_a_retry(app, api)


# --- items -----------------------------------------------------------------------------------

def test_clerk_may_change_stock_only(app, api, patch):
    store = my_store(api)
    item = cheapest_in_stock(api, store)
    response = patch(f"{API}/items/{item['id']}", "clerk", {"points": item["points"] + 1})
    assert response.status_code == 403 and error_code(response) == "clerk_stock_only"
    response = patch(f"{API}/items/{item['id']}", "clerk", {"stock": 7, "points": 1})
    assert response.status_code == 403 and error_code(response) == "clerk_stock_only"
    items = store_items(api, store)
    assert items[item["id"]]["points"] == item["points"] and items[item["id"]]["stock"] == item["stock"]

    assert patch(f"{API}/items/{item['id']}", "clerk", {"stock": 7}).get_json()["stock"] == 7
    response = patch(f"{API}/items/{item['id']}", "clerk", {"stock": -1})
    assert response.status_code == 422
    response = patch(f"{API}/items/{item['id']}", "committee", {"points": item["points"] + 1})
    assert response.status_code == 200
    assert store_items(api, store)[item["id"]] == dict(item, stock=7, points=item["points"] + 1)

    # Another store's item is not the clerk's to count.
    other = other_blm_store(app, store)
    foreign = next(iter(store_items(api, other).values()))
    assert patch(f"{API}/items/{foreign['id']}", "clerk", {"stock": 1}).status_code == 403


# --- statements and settlements --------------------------------------------------------------

def previous_month(now_local: datetime) -> str:
    first = now_local.replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year}-{last.month:02d}"


def month_utc(period: str) -> tuple[datetime, datetime]:
    year, month = map(int, period.split("-"))
    start = datetime(year, month, 1, tzinfo=ZONE)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=ZONE)
    return start, end


def ledger_credits(app, store_id: int, period: str) -> tuple[int, int]:
    """(sum, count) of redemption transfers crediting the store's account in the period."""
    start, end = month_utc(period)
    with app.app_context():
        account = db.session.scalar(select(Account.id).where(Account.store_id == store_id))
        total, count = db.session.execute(
            select(func.coalesce(func.sum(Transfer.amount), 0), func.count(Transfer.id))
            .where(Transfer.credit_account_id == account, Transfer.code == "redemption",
                   Transfer.created_at >= start, Transfer.created_at < end)).one()
        db.session.remove()
    return int(total), int(count)


def set_fen_per_point(app, code: str, fen: int) -> None:
    with app.app_context():
        with write_transaction():
            db.session.execute(update(Area).where(Area.code == code).values(fen_per_point=fen))
        db.session.remove()


def check_statement_matches_the_ledger(app, api):
    store = my_store(api)
    set_fen_per_point(app, "BLM", 37)
    now_local = utcnow().astimezone(ZONE)
    last = previous_month(now_local)
    this = f"{now_local.year}-{now_local.month:02d}"

    response = api.get(f"{API}/stores/{store}/statement?period={last}", "committee")
    assert response.status_code == 200
    body = response.get_json()
    total, count = ledger_credits(app, store, last)
    assert count > 0, "the demo has shopping in the last month"
    assert body["period"] == last
    assert body["gross"] == total
    assert len(body["redemptions"]) == count
    assert sum(row["points"] for row in body["redemptions"]) == total
    assert body["points"] == total  # nothing reversed in the demo
    assert body["amount_fen"] == total * 37
    assert body["settlement"] is None
    # Names on the statement are masked.
    with app.app_context():
        heads = {h.id: h.head.name for h in db.session.scalars(select(Household).where(
            Household.id.in_({row["household_id"] for row in body["redemptions"]})))}
        db.session.remove()
    for row in body["redemptions"]:
        assert row["household"] != heads[row["household_id"]]

    # The clerk sees the same; a redemption now lands in this month's statement only.
    assert api.get(f"{API}/stores/{store}/statement?period={last}", "clerk").get_json()["gross"] == total
    before_this = api.get(f"{API}/stores/{store}/statement?period={this}", "clerk").get_json()
    assert redeem(api, store, {"code": new_code(api)["code"], "points": 6}).status_code == 201
    after_this = api.get(f"{API}/stores/{store}/statement?period={this}", "clerk").get_json()
    assert after_this["gross"] == before_this["gross"] + 6 == ledger_credits(app, store, this)[0]
    assert after_this["amount_fen"] == after_this["points"] * 37
    assert api.get(f"{API}/stores/{store}/statement?period={last}", "clerk").get_json()["gross"] == total


def check_statement_months_follow_the_local_calendar(app, api):
    """A redemption at 00:30 Beijing time on the 1st (16:30 UTC the day before) belongs to the new month."""
    from moralbank.stores import service as stores

    store, household = my_store(api), my_household(api)
    now_local = utcnow().astimezone(ZONE)
    last = previous_month(now_local)
    start, _end = month_utc(last)
    before_start = previous_month(start)
    gross_last = api.get(f"{API}/stores/{store}/statement?period={last}", "committee").get_json()["gross"]
    gross_before = api.get(f"{API}/stores/{store}/statement?period={before_start}", "committee").get_json()["gross"]
    with app.test_request_context():
        with write_transaction():
            stores.redeem(db.session.get(Household, household), db.session.get(Store, store), points=2,
                          at=start + timedelta(minutes=30))
        db.session.remove()
    assert api.get(f"{API}/stores/{store}/statement?period={last}", "committee").get_json()["gross"] \
        == gross_last + 2
    assert api.get(f"{API}/stores/{store}/statement?period={before_start}", "committee").get_json()["gross"] \
        == gross_before


def check_statement_access(app, api):
    store = my_store(api)
    other = other_blm_store(app, store)
    assert api.get(f"{API}/stores/{other}/statement", "clerk").status_code == 403
    assert api.get(f"{API}/stores/{store}/statement", "resident").status_code == 403
    assert api.get(f"{API}/stores/{store}/statement", "committee_xlc").status_code == 403
    assert api.get(f"{API}/stores/{store}/statement?period=2026-13", "committee").status_code == 422
    assert api.get(f"{API}/stores/{store}/statement?period=junk", "committee").status_code == 422


def test_statement_matches_ledger_local_months_access_and_xlsx(app, api, auth, client):
    check_statement_matches_the_ledger(app, api)
    check_statement_months_follow_the_local_calendar(app, api)
    check_statement_access(app, api)
    check_statement_xlsx_has_the_rows(app, api, auth, client)


def test_settle_a_finished_month_once(app, api):
    store = my_store(api)
    now_local = utcnow().astimezone(ZONE)
    last = previous_month(now_local)
    this = f"{now_local.year}-{now_local.month:02d}"
    owed = api.get(f"{API}/stores/{store}/statement?period={last}", "committee").get_json()
    assert owed["points"] > 0
    store_balance = snapshot(app, store, my_household(api))["store"]

    # Not the clerk, not for the month still running.
    assert api.post(f"{API}/stores/{store}/settlements", "clerk", json={"period": last}).status_code == 403
    open_month = api.post(f"{API}/stores/{store}/settlements", "committee", json={"period": this})
    assert open_month.status_code == 422
    assert api.post(f"{API}/stores/{store}/settlements", "committee_xlc", json={"period": last}).status_code == 403
    assert snapshot(app, store, my_household(api))["store"] == store_balance

    response = api.post(f"{API}/stores/{store}/settlements", "committee", json={"period": last})
    assert response.status_code == 201, response.get_json()
    settled = response.get_json()
    assert settled["points"] == owed["points"] and settled["period"] == last
    assert settled["amount_fen"] == owed["amount_fen"]
    assert snapshot(app, store, my_household(api))["store"] == store_balance - owed["points"]
    with app.app_context():
        account = db.session.scalar(select(Account.id).where(Account.store_id == store))
        rows = db.session.execute(select(Transfer.amount, Transfer.debit_account_id).where(
            Transfer.code == "settlement", Transfer.settlement_id == settled["id"])).all()
        db.session.remove()
    assert [tuple(r) for r in rows] == [(owed["points"], account)]

    nothing = api.post(f"{API}/stores/{store}/settlements", "committee", json={"period": "2020-01"})
    assert nothing.status_code == 422
    again = api.post(f"{API}/stores/{store}/settlements", "committee", json={"period": last})
    assert again.status_code == 409 and error_code(again) == "already_settled"
    assert snapshot(app, store, my_household(api))["store"] == store_balance - owed["points"]
    statement = api.get(f"{API}/stores/{store}/statement?period={last}", "clerk").get_json()
    assert statement["settlement"]["points"] == owed["points"]


def check_statement_xlsx_has_the_rows(app, api, auth, client):
    store = my_store(api)
    last = previous_month(utcnow().astimezone(ZONE))
    body = api.get(f"{API}/stores/{store}/statement?period={last}", "committee").get_json()
    auth.login("committee")
    response = client.get(f"/stores/{store}/statement.xlsx?period={last}")
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    sheet = book.active
    rows = list(sheet.iter_rows(values_only=True))
    ids = [row[0] for row in rows if isinstance(row[0], int)]
    assert ids == [row["id"] for row in body["redemptions"]]
    points = {row[0]: row[3] for row in rows if isinstance(row[0], int)}
    assert points == {row["id"]: row["points"] for row in body["redemptions"]}
    labels = {row[0]: row[1] for row in rows if isinstance(row[0], str) and len(row) > 1}
    assert labels["应结积分"] == body["points"]
    assert labels["应付金额（元）"] == pytest.approx(body["amount_fen"] / 100)


# --- paper cards -----------------------------------------------------------------------------

def issue_card(api, household, pin="5173", who="committee"):
    return api.post(f"{API}/households/{household}/cards", who, json={"pin": pin})


def unlock(api, store, card, pin, who="clerk"):
    return api.post(f"{API}/stores/{store}/card-unlocks", who, json={"card": card, "pin": pin})


def failed_pins(app, card_id) -> int:
    with app.app_context():
        count = db.session.scalar(select(HouseholdCard.failed_pins).where(HouseholdCard.id == card_id))
        db.session.remove()
    return count


@pytest.mark.parametrize("app_config", [{"PIN_LIMIT_PER_CARD_AND_ADDRESS": "100 per minute"}])
def test_paper_card_unlock_wrong_pins_lock_and_reissue(app, api, client):
    store, household = my_store(api), my_household(api)
    other = other_blm_store(app, store)
    other_clerk = add_clerk(app, other, "13900000043")
    assert issue_card(api, household, who="clerk").status_code == 403
    assert issue_card(api, household, who="committee_xlc").status_code == 403
    assert issue_card(api, household, pin="1234").status_code == 422
    assert issue_card(api, household, pin="12a4").status_code in (400, 422)
    response = issue_card(api, household)
    assert response.status_code == 201
    card = response.get_json()
    assert "pin" not in card

    # The right PIN gives a code for this store only.
    opened = unlock(api, store, card["token"], "5173")
    assert opened.status_code == 201, opened.get_json()
    code = opened.get_json()
    before = snapshot(app, store, household)
    refused = redeem(api, other, {"code": code["code"], "points": 1}, who=other_clerk)
    assert refused.status_code in (403, 404)
    assert snapshot(app, store, household) == before
    assert unlock(api, other, card["token"], "5173", who="clerk").status_code == 403
    used = redeem(api, store, {"code": code["code"], "points": 2})
    assert used.status_code == 201
    assert used.get_json()["balance_after"] == household_balance(api, household)

    # Wrong PINs are refused and counted, even though the request failed.
    wrong = unlock(api, store, card["token"], "1111")
    assert wrong.status_code == 403 and error_code(wrong) == "wrong_pin"
    assert failed_pins(app, card["id"]) == 1
    assert unlock(api, store, card["token"], "5173").status_code == 201
    assert failed_pins(app, card["id"]) == 0
    for attempt in range(5):
        wrong = unlock(api, store, card["token"], "0000")
        assert wrong.status_code == 403 and error_code(wrong) == "wrong_pin", attempt
    assert failed_pins(app, card["id"]) == 5
    locked = unlock(api, store, card["token"], "5173")
    assert locked.status_code == 403 and error_code(locked) == "card_locked"

    # Re-issuing gives a working card and kills the old one.
    new = issue_card(api, household, pin="7391").get_json()
    assert new["token"] != card["token"]
    revoked = unlock(api, store, card["token"], "5173")
    assert revoked.status_code == 409 and error_code(revoked) == "card_revoked"
    assert unlock(api, store, new["token"], "5173").status_code == 403
    assert unlock(api, store, new["token"], "7391").status_code == 201
    assert unlock(api, store, "x" * 32, "7391").status_code == 404

    # The committee can also just stop the card (lost card).
    response = client.delete(f"{API}/households/{household}/cards", headers=api.headers("committee"))
    assert response.status_code == 204
    stopped = unlock(api, store, new["token"], "7391")
    assert stopped.status_code == 409 and error_code(stopped) == "card_revoked"


@pytest.mark.parametrize("app_config", [{"PIN_LIMIT_PER_CARD_AND_ADDRESS": "3 per minute"}])
def test_pin_attempts_per_card_are_throttled(app, api):
    store, household = my_store(api), my_household(api)
    card = issue_card(api, household).get_json()
    with app.app_context():
        other_household = db.session.scalar(select(Household.id).where(
            Household.village_id == village_by_code("BLM").id, Household.id != household).order_by(Household.id))
        db.session.remove()
    other_card = issue_card(api, other_household, pin="4826").get_json()

    for _ in range(3):
        assert error_code(unlock(api, store, card["token"], "9999")) == "wrong_pin"
    throttled = unlock(api, store, card["token"], "5173")
    assert throttled.status_code == 429
    assert failed_pins(app, card["id"]) == 3  # the throttled try was not even checked
    # Another card at the same shop is not held up.
    assert unlock(api, store, other_card["token"], "4826").status_code == 201
