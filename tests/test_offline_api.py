"""Offline vouchers through the API: the village key, a voucher holds points (balance down, held
up), a shop's batch of offline sales posts each voucher once (the rest of the hold returns), a
second different sale is refused and listed for the committee, and expire-holds returns every
point of a voucher nobody used."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from moralbank.database import travel

pytestmark = pytest.mark.clock("2026-12-01 10:00")


def household(api) -> dict:
    me = api.get("/api/v1/me", "resident").get_json()
    return api.get(f"/api/v1/households/{me['household']['id']}", "resident").get_json()


def clerk_store(api) -> int:
    return api.get("/api/v1/me", "clerk").get_json()["store"]["id"]


def other_store(api, store_id: int) -> int:
    """The village's other store (not the clerk's)."""
    from moralbank.extensions import db
    from moralbank.stores.models import Store
    from sqlalchemy import select
    with api.app.app_context():
        mine = db.session.get(Store, store_id)
        return db.session.scalar(select(Store.id).where(Store.village_id == mine.village_id, Store.id != store_id))


def issue(api, store_id: int, points: int, who: str = "resident", **extra):
    return api.post(f"/api/v1/stores/{store_id}/offline-vouchers", who, json={"points": points, **extra})


def sale(token: str, points: int, *, items=(), taken_at: datetime | None = None) -> dict:
    moment = taken_at or datetime.now(timezone.utc)
    return {"token": token, "points": points, "items": [{"item_id": i, "quantity": q} for i, q in items],
            "taken_at": moment.isoformat()}


def sync(api, store_id: int, *sales, key=None, who: str = "clerk"):
    return api.post(f"/api/v1/stores/{store_id}/offline-sales", who, json={"sales": list(sales)}, key=key)


@pytest.fixture
def app_config(tmp_path):
    """Vouchers that last two days, and half a day's grace for late syncs (API tokens outlive both)."""
    return {"UPLOAD_FOLDER": str(tmp_path / "uploads"), "OFFLINE_VOUCHER_DAYS": 2, "OFFLINE_SYNC_GRACE_HOURS": 12}


@pytest.fixture
def offline_api(api, app, client):
    api.app, api.client = app, client
    return api


def test_the_village_key_verifies_a_voucher_token(offline_api):
    api = offline_api
    key = api.get("/api/v1/villages/BLM/offline-key", "clerk").get_json()
    assert key["alg"] == "ES256" and key["public_key"]["crv"] == "P-256"
    assert api.get("/api/v1/villages/BLM/offline-key", "resident").get_json() == key  # one key per village
    assert api.get("/api/v1/villages/XLC/offline-key", "clerk").get_json()["public_key"] != key["public_key"]
    voucher = issue(api, clerk_store(api), 5).get_json()
    prefix, body, signature = voucher["token"].split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    public = serialization.load_pem_public_key(key["pem"].encode())
    public.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                  f"{prefix}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    assert payload["v"] == voucher["id"] and payload["p"] == 5 and payload["s"] == clerk_store(api)
    assert voucher["url"].endswith("/shop/offline#v=" + voucher["token"])
    assert len(voucher["code"]) == 8 and voucher["code"].isdigit()


def test_a_voucher_holds_points_and_a_sync_posts_it_once(offline_api):
    api = offline_api
    store = clerk_store(api)
    before = household(api)
    assert before["held"] == 0
    item = min(api.get(f"/api/v1/stores/{store}/items", "clerk").get_json()["items"], key=lambda i: i["points"])
    held = item["points"] + 10
    answer = issue(api, store, held)
    assert answer.status_code == 201, answer.get_json()
    voucher = answer.get_json()
    after = household(api)
    assert after["balance"] == before["balance"] - held and after["held"] == held

    taken = datetime.now(timezone.utc)
    first = sale(voucher["token"], item["points"], items=[(item["id"], 1)], taken_at=taken)
    result = sync(api, store, first).get_json()["results"][0]
    assert result["status"] == "posted" and result["voucher_id"] == voucher["id"]
    assert result["redemption_id"]
    spent = household(api)
    assert spent["balance"] == before["balance"] - item["points"] and spent["held"] == 0

    # The same sale from another device or a resent batch: a replay, nothing moves.
    again = sync(api, store, first).get_json()["results"][0]
    assert again == {"voucher_id": voucher["id"], "status": "replay", "redemption_id": result["redemption_id"]}
    # A different sale of the spent voucher: refused, and the committee sees the conflict.
    other = sync(api, store, sale(voucher["token"], 3, taken_at=taken + timedelta(minutes=5))).get_json()
    assert other["results"][0]["status"] == "voucher_used"
    assert household(api)["balance"] == spent["balance"]
    conflicts = api.get("/api/v1/villages/BLM/offline-conflicts", "committee").get_json()["items"]
    assert [(c["voucher_id"], c["points"]) for c in conflicts] == [(voucher["id"], 3)]
    assert api.get("/api/v1/villages/BLM/offline-conflicts", "clerk").status_code == 403

    # The resident's history shows the sale as a redemption at the store.
    lines = api.get(f"/api/v1/households/{before['id']}/transfers?limit=5", "resident").get_json()["items"]
    codes = [(line["code"], line["amount"]) for line in lines]
    assert ("redemption", -item["points"]) in codes and ("pending", -held) in codes and ("post", held) in codes
    listed = api.get(f"/api/v1/stores/{store}/redemptions", "clerk").get_json()["items"]
    assert listed[0]["id"] == result["redemption_id"] and listed[0]["points"] == item["points"]


def test_each_refusal_has_its_status(offline_api):
    api = offline_api
    store = clerk_store(api)
    second = other_store(api, store)
    start = household(api)["balance"]
    mine = issue(api, store, 10).get_json()
    foreign = issue(api, second, 10).get_json()
    prefix, body, signature = mine["token"].split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps(
        {**json.loads(base64.urlsafe_b64decode(body + "==")), "p": 1000}).encode()).decode().rstrip("=")
    late = datetime.fromisoformat(mine["expires_at"]) + timedelta(minutes=1)
    results = sync(api, store,
                   sale(foreign["token"], 5),
                   sale(f"{prefix}.{forged_body}.{signature}", 5),
                   sale("MB1.e30.AAAA", 5),
                   sale("00000000" if mine["code"] != "00000000" else "00000001", 5),
                   sale(mine["token"], 11),
                   sale(mine["token"], 5, taken_at=late)).get_json()["results"]
    assert [r["status"] for r in results] == ["wrong_store", "bad_signature", "bad_signature", "bad_signature",
                                              "over_limit", "expired"]
    assert household(api)["balance"] == start - 20  # both still held, nothing spent
    # Typed: the 8-digit number stands for the token.
    typed = sync(api, store, sale(mine["code"], 10)).get_json()["results"][0]
    assert typed["status"] == "posted"
    assert household(api)["held"] == 10


def test_who_may_do_what(offline_api):
    api = offline_api
    store = clerk_store(api)
    assert issue(api, store, 5, who="clerk").status_code == 403
    assert issue(api, store, 0).status_code == 422
    too_much = issue(api, store, household(api)["balance"] + 1)
    assert too_much.status_code == 422 and too_much.get_json()["error"]["code"] == "insufficient_points"
    assert household(api)["held"] == 0
    hh = household(api)["id"]
    by_committee = issue(api, store, 4, who="committee", household_id=hh)
    assert by_committee.status_code == 201 and by_committee.get_json()["household_id"] == hh
    assert issue(api, store, 4, who="resident", household_id=hh).status_code == 403
    # The limit of open vouchers a household may hold (3 by default).
    assert [issue(api, store, 1).status_code for _ in range(3)] == [201, 201, 422]
    token = by_committee.get_json()["token"]
    unkeyed = api.client.post(f"/api/v1/stores/{store}/offline-sales", headers=api.headers("clerk"),
                              json={"sales": [sale(token, 1)]})
    assert unkeyed.status_code == 422
    assert sync(api, store, sale(token, 1), who="resident").status_code == 403
    assert sync(api, store, {"token": token, "points": 1}).status_code == 422  # taken_at is required


def test_expire_holds_returns_every_held_point(offline_api, runner):
    api = offline_api
    store = clerk_store(api)
    start = household(api)
    vouchers = [issue(api, store, points).get_json() for points in (7, 8)]
    used = sync(api, store, sale(vouchers[0]["token"], 2)).get_json()["results"][0]
    assert used["status"] == "posted"
    assert household(api)["held"] == 8
    nothing = runner.invoke(args=["ledger", "expire-holds"])
    assert nothing.exit_code == 0 and "0 holds voided" in nothing.output
    travel(timedelta(hours=12))
    assert "0 holds voided" in runner.invoke(args=["ledger", "expire-holds"]).output  # in its grace
    travel(timedelta(days=2, hours=1))
    done = runner.invoke(args=["ledger", "expire-holds"])
    assert done.exit_code == 0, done.output
    assert "1 holds voided, 8 points returned" in done.output
    end = household(api)
    assert end["held"] == 0 and end["balance"] == start["balance"] - 2
    late = sync(api, store, sale(vouchers[1]["token"], 1,
                                 taken_at=datetime.fromisoformat(vouchers[1]["expires_at"]) - timedelta(hours=1)))
    assert late.get_json()["results"][0]["status"] == "expired"
    again = runner.invoke(args=["ledger", "expire-holds"])
    assert "0 holds voided" in again.output
    verify = runner.invoke(args=["ledger", "verify"])
    assert verify.exit_code == 0, verify.output


def test_verify_finds_a_hold_out_of_step_with_its_transfers(offline_api, runner):
    from moralbank.extensions import db
    from sqlalchemy import text
    api = offline_api
    voucher = issue(api, clerk_store(api), 6).get_json()
    with api.app.app_context():
        hold_id = db.session.execute(text("SELECT hold_id FROM offline_vouchers WHERE id = :id"),
                                     {"id": voucher["id"]}).scalar_one()
        # A hold marked voided without its void transfer (and its points still in the hold account).
        db.session.execute(text("UPDATE holds SET status = 'voided', resolved_at = created_at WHERE id = :id"),
                           {"id": hold_id})
        db.session.commit()
        broken = runner.invoke(args=["ledger", "verify"])
        assert broken.exit_code == 1
        assert f"hold {hold_id} (voided): ended by nothing, expected void" in broken.output
        assert "(hold): holds" in broken.output
        db.session.execute(text("UPDATE holds SET status = 'pending', resolved_at = NULL WHERE id = :id"),
                           {"id": hold_id})
        db.session.commit()
        db.session.remove()
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
