"""Offline vouchers on the web pages: the committee's printed sheet for a paper-card household, the
conflicts page, the clerk's data and sync endpoints (CSRF header, Idempotency-Key), and who may
open what."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import pytest

from test_shop_web import decode_qr, login, text_of

pytestmark = pytest.mark.clock("2026-12-01 10:00")
API = "/api/v1"


def test_the_committee_prints_a_sheet_of_vouchers_for_a_household(app, api):
    committee = login(app, "committee")
    page = text_of(committee.get("/shop/offline/sheet?number=BLM-002"))
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    store = re.search(r'<option value="(\d+)">', page).group(1)
    form = {"csrf_token": csrf, "idempotency_key": key, "number": "BLM-002", "store_id": store,
            "points": "3", "count": "2"}
    answer = committee.post("/shop/offline/sheet", data=form)
    assert answer.status_code == 302
    assert committee.post("/shop/offline/sheet", data=form).status_code == 302  # a double tap: once
    sheet = text_of(committee.get("/shop/offline/sheet?number=BLM-002"))
    images = re.findall(r'src="(/offline/vouchers/\d+/qr\.png)"', sheet)
    assert len(images) == 2 and "最多 3 分" in sheet
    url = decode_qr(committee.get(images[0]).get_data())
    assert re.search(r"/shop/offline#v=MB1\.", url)
    # Too many at once is refused with the allowed range, and nothing is made.
    form.update(idempotency_key=uuid.uuid4().hex, count="4")
    refused = text_of(committee.post("/shop/offline/sheet", data=form, follow_redirects=True))
    assert "张数必须是 1 到 3" in refused
    assert len(re.findall(r'/offline/vouchers/\d+/qr\.png', refused)) == 2
    # Another household's QR is not the resident's to see.
    resident = login(app, "resident")
    assert resident.get(images[0]).status_code == 404
    assert resident.get("/shop/offline/sheet").status_code == 403


def test_the_clerks_page_syncs_with_its_csrf_header_and_conflicts_reach_the_committee(app, api):
    store = api.get(f"{API}/me", "clerk").get_json()["store"]["id"]
    voucher = api.post(f"{API}/stores/{store}/offline-vouchers", "resident", json={"points": 9}).get_json()
    clerk = login(app, "clerk")
    assert clerk.get("/shop/offline").status_code == 200
    worker = clerk.get("/shop/offline-sw.js")
    assert worker.headers["Service-Worker-Allowed"] == "/shop/"
    data = clerk.get("/shop/offline/data").get_json()
    assert data["store"]["id"] == store and data["key"]["crv"] == "P-256"
    assert [v["id"] for v in data["vouchers"]] == [voucher["id"]] and "token" not in data["vouchers"][0]
    taken = datetime.now(timezone.utc).isoformat()
    body = {"sales": [{"token": voucher["code"], "points": 4, "items": [], "taken_at": taken}]}
    headers = {"X-CSRFToken": data["csrf"], "Idempotency-Key": uuid.uuid4().hex}
    assert clerk.post("/shop/offline/sync", json=body).status_code == 400  # no CSRF token
    first = clerk.post("/shop/offline/sync", json=body, headers=headers)
    assert first.get_json()["results"][0]["status"] == "posted"
    other = {"sales": [{**body["sales"][0], "points": 5}]}
    second = clerk.post("/shop/offline/sync", json=other,
                        headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    assert second.get_json()["results"][0]["status"] == "voucher_used"
    assert clerk.get("/shop/offline/data").get_json()["vouchers"] == []
    committee = login(app, "committee")
    conflicts = text_of(committee.get("/shop/offline/conflicts"))
    assert voucher["code"] in conflicts and "又记 5 分" in conflicts
    assert login(app, "resident").get("/shop/offline").status_code == 403
    assert clerk.get("/shop/offline/conflicts").status_code == 403
