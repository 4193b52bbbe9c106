"""Authorisation matrix, generated from the app's URL map ("Proof under load").

Every route in ``app.url_map`` (except ``static``) must have an entry in ``EXPECTED``;
a new route without one fails ``test_every_route_is_in_the_matrix`` by name.

Each entry names a *rule* (who may succeed) and how to build the request. The
matrix is then driven with every role in ``ROLES`` against objects of the OTHER
village (XLC) — household, award, rule, store, item, transfer, snapshot,
redemption — while the acting staff, residents and clerks belong to BLM:

* anonymous: 401 on the API and a redirect to /login on web pages, for every
  route that is not public;
* a role listed as an outsider for the rule: never 2xx (API: 401/403/404/409/422;
  web: 4xx or a redirect), and nothing of the other village changes;
* nobody: ever a 5xx.

The supervisor of 康平街道 is staff of both villages, so on staff *read* routes it
is not an outsider; ``committee_xlc`` owns the objects and is only driven on
reads (its writes would legitimately change data).

A second drive keeps to one village: the grid manager of BLM's first hamlet
against a household of another BLM hamlet, on every route whose request names a
household or something of it (its awards, photos, ledger lines, receipts, cards):
refused with 403/404 (a web form may go back with a message), changing nothing;
and the village lists the grid manager may open name none of those households.
"""
from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import func, select

from support import DEMO_PASSWORD, PHONES, csrf_from, session_of

ROLES = ("anonymous", "committee", "grid", "resident", "clerk", "supervisor", "committee_xlc")

BLM = frozenset({"committee", "grid", "resident", "clerk"})        # BLM people with no standing in XLC
BLM_SUP = BLM | {"supervisor"}                                     # ... and the town supervisor (no write rights)
NOBODY = frozenset()

# rule -> (login required?, roles refused on an XLC object, drive committee_xlc?)
RULES = {
    "public": (False, NOBODY, True),            # anyone; only "no 5xx"
    "login_public_api": (False, NOBODY, True),  # token endpoint itself
    "any_user": (True, NOBODY, True),           # any logged-in user, on their own things
    "any_user_catalogue": (True, NOBODY, True),  # any logged-in user may read any village's catalogue
    "staff_read": (True, BLM, True),            # staff of the object's village (supervisor above it included)
    "member_or_staff_read": (True, BLM, True),  # committee/supervisor, the grid manager of its hamlet, its members
    "village_user_read": (True, BLM, True),     # users of the object's village (residents, staff, clerks)
    "committee_or_sup_read": (True, BLM, True),  # committee / supervisor reaching the village
    "clerk_or_committee_read": (True, BLM, True),
    "committee_write": (True, BLM_SUP, False),  # committee of the object's village
    "staff_write": (True, BLM_SUP, False),      # grid/committee of the object's village
    "clerk_write": (True, BLM_SUP, False),      # clerk of the object's store
    "resident_write": (True, BLM_SUP, False),   # residents of the object's village
    "own_household": (True, NOBODY, False),     # the user's own household (no foreign object reachable)
    "own_store": (True, NOBODY, False),         # the clerk's own store
    "own_village_write": (True, NOBODY, False),  # acts on the user's own village; foreign ids in the form
}

# (endpoint, method) -> (rule, request spec)
# request spec: dict(path=callable(ids) -> url, json=callable(ids) or dict, form=callable(ids) or dict)
E = {}


def route(endpoint, method, rule, path, json=None, form=None, refuse=None, no_leak=None):
    """``refuse`` overrides the rule's outsiders; ``no_leak``: roles whose 2xx answer must not show XLC."""
    E[(endpoint, method)] = {"rule": rule, "path": path, "json": json, "form": form, "refuse": refuse,
                             "no_leak": no_leak or frozenset()}


# --- API --------------------------------------------------------------------------------------------------------
A = "/api/v1"
route("api.create_token", "POST", "login_public_api", lambda i: f"{A}/auth/tokens",
      json={"phone": "13800000099", "password": "wrong-password"})
route("api.delete_token", "DELETE", "any_user", lambda i: f"{A}/auth/tokens/current")
route("api.change_password", "POST", "any_user", lambda i: f"{A}/auth/password",
      json={"current_password": "wrong-password", "new_password": "Another-Long-One-2026"})
route("api.me", "GET", "any_user", lambda i: f"{A}/me")
route("api.openapi", "GET", "public", lambda i: f"{A}/openapi.json")
route("api.overview", "GET", "committee_or_sup_read", lambda i: f"{A}/overview",
      refuse=frozenset({"resident", "clerk"}), no_leak=frozenset({"committee", "grid"}))
route("api.get_village", "GET", "staff_read", lambda i: f"{A}/villages/XLC")
route("api.patch_village", "PATCH", "committee_write", lambda i: f"{A}/villages/XLC", json={"notice_days": 9})
route("api.list_households", "GET", "staff_read", lambda i: f"{A}/villages/XLC/households")
route("api.get_household", "GET", "member_or_staff_read", lambda i: f"{A}/households/{i['household']}")
route("api.household_transfers", "GET", "member_or_staff_read",
      lambda i: f"{A}/households/{i['household']}/transfers")
route("api.list_rules", "GET", "any_user_catalogue", lambda i: f"{A}/villages/XLC/rules")
route("api.create_rule", "POST", "committee_write", lambda i: f"{A}/villages/XLC/rules",
      json={"category": "volunteer", "title": "matrix rule", "points": 3})
route("api.patch_rule", "PATCH", "committee_write", lambda i: f"{A}/rules/{i['rule']}", json={"points": 7})
route("api.create_award", "POST", "staff_write", lambda i: f"{A}/awards",
      json=lambda i: {"household_id": i["household"], "rule_id": i["rule"]})
route("api.get_award", "GET", "member_or_staff_read", lambda i: f"{A}/awards/{i['award']}")
route("api.list_awards", "GET", "staff_read", lambda i: f"{A}/villages/XLC/awards")
route("api.approve_award", "POST", "committee_write", lambda i: f"{A}/awards/{i['pending']}/approve")
route("api.reject_award", "POST", "committee_write", lambda i: f"{A}/awards/{i['pending']}/reject",
      json={"reason": "matrix"})
route("api.review_awards", "POST", "committee_write", lambda i: f"{A}/awards/reviews",
      json=lambda i: {"award_ids": [i["pending"]], "decision": "reject", "reason": "matrix"})
route("api.object_award", "POST", "resident_write", lambda i: f"{A}/awards/{i['noticed']}/objections",
      json={"reason": "matrix"})
route("api.reverse_transfer", "POST", "committee_write", lambda i: f"{A}/transfers/{i['transfer']}/reversal",
      json={"reason": "matrix"})
route("api.get_ranking", "GET", "public", lambda i: f"{A}/rankings?village=XLC&period=all")
route("api.list_snapshots", "GET", "public", lambda i: f"{A}/villages/XLC/ranking-snapshots")
route("api.get_snapshot", "GET", "public", lambda i: f"{A}/ranking-snapshots/{i['snapshot']}")
route("api.publish_snapshot", "POST", "committee_write", lambda i: f"{A}/villages/XLC/ranking-snapshots",
      json={"period": "all", "title": "matrix"})
route("api.dashboard", "GET", "committee_or_sup_read", lambda i: f"{A}/villages/XLC/dashboard")
route("api.create_code", "POST", "own_household", lambda i: f"{A}/redemption-codes")
route("api.code_qr_png", "GET", "own_household", lambda i: f"{A}/redemption-codes/{i['code']}/qr.png")
route("api.code_qr_svg", "GET", "own_household", lambda i: f"{A}/redemption-codes/{i['code']}/qr.svg")
route("api.list_items", "GET", "village_user_read", lambda i: f"{A}/stores/{i['store']}/items")
route("api.create_item", "POST", "committee_write", lambda i: f"{A}/stores/{i['store']}/items",
      json={"name": "matrix item", "points": 5, "stock": 5})
route("api.patch_item", "PATCH", "committee_write", lambda i: f"{A}/items/{i['item']}", json={"stock": 1})
route("api.preview", "POST", "clerk_write", lambda i: f"{A}/stores/{i['store']}/redemption-previews",
      json=lambda i: {"code": i["code"]})
route("api.redeem", "POST", "clerk_write", lambda i: f"{A}/stores/{i['store']}/redemptions",
      json=lambda i: {"code": i["code"], "items": [{"item_id": i["item"], "quantity": 1}]})
route("api.list_redemptions", "GET", "clerk_or_committee_read", lambda i: f"{A}/stores/{i['store']}/redemptions",
      refuse=BLM_SUP)
route("api.get_statement", "GET", "clerk_or_committee_read", lambda i: f"{A}/stores/{i['store']}/statement")
route("api.create_settlement", "POST", "committee_write", lambda i: f"{A}/stores/{i['store']}/settlements",
      json=lambda i: {"period": i["month"]})
route("api.issue_card", "POST", "committee_write", lambda i: f"{A}/households/{i['household']}/cards",
      json={"pin": "1234"})
route("api.revoke_cards", "DELETE", "committee_write", lambda i: f"{A}/households/{i['household']}/cards")
route("api.offline_key", "GET", "any_user_catalogue", lambda i: f"{A}/villages/XLC/offline-key")
route("api.issue_voucher", "POST", "resident_write", lambda i: f"{A}/stores/{i['store']}/offline-vouchers",
      json=lambda i: {"points": 1})
route("api.offline_sales", "POST", "clerk_write", lambda i: f"{A}/stores/{i['store']}/offline-sales",
      json={"sales": [{"token": "x" * 20, "points": 1, "taken_at": "2026-12-01T00:00:00+00:00"}]})
route("api.offline_conflicts", "GET", "committee_or_sup_read", lambda i: f"{A}/villages/XLC/offline-conflicts")
route("api.unlock_card", "POST", "clerk_write", lambda i: f"{A}/stores/{i['store']}/card-unlocks",
      json={"card": "x" * 20, "pin": "1234"})
route("api.declare_kinship", "POST", "staff_write", lambda i: f"{A}/villages/XLC/kinships",
      json=lambda i: {"user_id": 1, "household_id": i["household"], "relation": "父母"})
route("api.list_kinships", "GET", "staff_read", lambda i: f"{A}/villages/XLC/kinships")
route("api.get_integrity", "GET", "committee_or_sup_read", lambda i: f"{A}/villages/XLC/integrity")

# gov-rules (issue 14): villagers' meetings adopting the catalogue's drafts
route("api.create_meeting", "POST", "committee_write", lambda i: f"{A}/villages/XLC/meetings",
      json=lambda i: {"held_on": "2026-03-12", "kind": "assembly", "entitled": 10, "present": 8, "votes_for": 8,
                      "votes_against": 0, "votes_abstain": 0, "adopts": [i["rule"]]})
route("api.list_meetings", "GET", "staff_read", lambda i: f"{A}/villages/XLC/meetings")
route("awards.meetings_page", "GET", "any_user", lambda i: "/committee/meetings")
route("awards.meetings_page", "POST", "own_village_write", lambda i: "/committee/meetings",
      form=lambda i: {"held_on": "2026-03-12", "kind": "assembly", "entitled": "10", "present": "8",
                      "votes_for": "8", "votes_against": "0", "votes_abstain": "0", "adopts": str(i["rule"])})
route("awards.meeting_minutes", "GET", "village_user_read", lambda i: f"/committee/meetings/{i['meeting']}/minutes")
route("board.catalogue", "GET", "public", lambda i: "/v/XLC/catalogue")

# --- web --------------------------------------------------------------------------------------------------------
route("web.index", "GET", "public", lambda i: "/")
route("health.healthz", "GET", "public", lambda i: "/healthz")
route("health.readyz", "GET", "public", lambda i: "/readyz")
# loopback or METRICS_TOKEN only (the matrix's client is loopback): tests/test_metrics.py
route("metrics.scrape", "GET", "public", lambda i: "/metrics")
route("web.home", "GET", "any_user", lambda i: "/home")
route("web.set_language", "GET", "public", lambda i: "/lang/zh")
route("web.text_size", "POST", "public", lambda i: "/settings/text?next=/home", form={"size": "large"})
route("web.login", "GET", "public", lambda i: "/login")
route("web.login", "POST", "public", lambda i: "/login", form={"phone": "13800000099", "password": "nope"})
route("web.logout", "POST", "public", lambda i: "/logout", form={})
route("web.password", "GET", "any_user", lambda i: "/account/password")
route("web.password", "POST", "any_user", lambda i: "/account/password", form={})
route("board.public_board", "GET", "public", lambda i: "/v/XLC")
route("board.snapshot_page", "GET", "public", lambda i: f"/v/XLC/rankings/{i['snapshot']}")
route("board.notices_print", "GET", "public", lambda i: "/v/XLC/notices/print")
route("awards.notices", "GET", "public", lambda i: "/v/XLC/notices")
route("awards.notices", "POST", "resident_write", lambda i: "/v/XLC/notices",
      form=lambda i: {"award_id": i["noticed"], "reason": "matrix"})  # a public page: anonymous POST gets 403
route("awards.award_detail", "GET", "member_or_staff_read", lambda i: f"/awards/{i['award']}")
route("awards.photo", "GET", "member_or_staff_read", lambda i: f"/awards/{i['photo_award']}/photo")
route("awards.propose", "GET", "any_user", lambda i: "/awards/new")
route("awards.propose", "POST", "own_village_write", lambda i: "/awards/new",
      form=lambda i: {"household_id": i["household"], "rule_id": i["rule"], "quantity": "1"})
route("awards.audit_log", "GET", "any_user", lambda i: "/committee/audit?village=XLC")
route("awards.review", "GET", "any_user", lambda i: "/committee/review")
route("awards.review", "POST", "own_village_write", lambda i: "/committee/review",
      form=lambda i: {"award": str(i["pending"]), "decision": "approve"})
route("awards.rules", "GET", "any_user", lambda i: "/committee/rules")
route("awards.create_rule", "POST", "own_village_write", lambda i: "/committee/rules/new",
      form={"category": "volunteer", "title": "matrix", "points": "1"})
route("awards.revise_rule", "POST", "own_village_write", lambda i: f"/committee/rules/{i['rule']}/revise",
      form={"category": "volunteer", "title": "matrix", "points": "1"})
route("awards.retire_rule", "POST", "own_village_write", lambda i: f"/committee/rules/{i['rule']}/retire", form={})
route("awards.village_settings", "GET", "any_user", lambda i: "/committee/settings")
route("awards.village_settings", "POST", "own_village_write", lambda i: "/committee/settings",
      form={"notice_days": "9", "code_ttl_seconds": "300", "approval_threshold": "10",
            "star_thresholds": "50 100 200 400 800"})
route("awards.grid_home", "GET", "any_user", lambda i: "/grid")
route("awards.sheet", "GET", "any_user", lambda i: f"/grid/sheet?hamlet={i['hamlet']}")
route("awards.sheet", "POST", "own_village_write", lambda i: f"/grid/sheet?hamlet={i['hamlet']}",
      form=lambda i: {"hamlet": i["hamlet"], "rule_id": i["rule"], f"h-{i['household']}": "1"})
route("awards.keep_sheet_photo", "POST", "own_village_write", lambda i: "/grid/photos", form={})
route("awards.sheet_photo", "GET", "any_user", lambda i: "/grid/photos/1")  # the uploader's own, else 404
route("awards.declare", "GET", "any_user", lambda i: "/me/declare")
route("awards.declare", "POST", "own_household", lambda i: "/me/declare",
      form=lambda i: {"rule_id": i["rule"], "quantity": "1"})
route("awards.reverse", "POST", "committee_write", lambda i: f"/transfers/{i['transfer']}/reverse",
      form={"reason": "matrix", "back": "/home", "confirm": "1"})
route("board.history", "GET", "any_user", lambda i: "/me/history")
route("board.members", "GET", "any_user", lambda i: "/me/household")
route("board.dashboard", "GET", "committee_or_sup_read", lambda i: "/dashboard?village=XLC")
route("board.publish", "POST", "committee_write", lambda i: "/committee/rankings",
      form={"village": "XLC", "period": "all", "title": "matrix", "confirm": "1"})
route("board.overview", "GET", "committee_or_sup_read", lambda i: "/overview",
      refuse=frozenset({"resident", "clerk"}), no_leak=frozenset({"committee", "grid"}))
route("board.export", "GET", "committee_or_sup_read", lambda i: "/exports/awards.csv?village=XLC")
route("shop.pay", "GET", "any_user", lambda i: "/me/pay")
route("shop.new_code", "POST", "own_household", lambda i: "/me/pay", form={})
route("shop.pay_qr", "GET", "own_household", lambda i: f"/me/pay/qr/{i['code']}.png")
route("shop.pay_status", "GET", "own_household", lambda i: f"/me/pay/status/{i['code']}")
route("shop.pay_status_household", "GET", "any_user", lambda i: "/me/pay/status?since=0")
route("shop.shop_home", "GET", "any_user", lambda i: "/shop")
route("shop.redeem_page", "GET", "any_user", lambda i: f"/shop/redeem?code={i['code']}")
route("shop.redeem", "POST", "own_store", lambda i: "/shop/redeem",
      form=lambda i: {"code": i["code"], f"qty-{i['item']}": "1", "item": str(i["item"])})
route("shop.receipt", "GET", "clerk_or_committee_read", lambda i: f"/shop/receipts/{i['redemption']}",
      refuse=BLM_SUP)
route("shop.history", "GET", "any_user", lambda i: "/shop/history")
route("shop.scan", "GET", "any_user", lambda i: "/shop/scan")
route("shop.shop_items", "GET", "any_user", lambda i: "/shop/items")
route("shop.shop_items", "POST", "own_store", lambda i: "/shop/items",
      form=lambda i: {"item_id": i["item"], "stock": "1"})
route("shop.card_page", "GET", "any_user", lambda i: "/shop/card?t=" + "x" * 20)
route("shop.card_page", "POST", "own_store", lambda i: "/shop/card", form={"t": "x" * 20, "pin": "1234"})
route("shop.committee_stores", "GET", "any_user", lambda i: "/committee/stores")
# offline vouchers
route("shop.my_vouchers", "GET", "any_user", lambda i: "/me/offline")
route("shop.new_voucher", "POST", "own_village_write", lambda i: "/me/offline",
      form=lambda i: {"store_id": i["store"], "points": "1"})
route("shop.offline_voucher_qr", "GET", "own_household", lambda i: "/offline/vouchers/999999/qr.png")
route("shop.offline_page", "GET", "any_user", lambda i: "/shop/offline")
route("shop.offline_worker", "GET", "public", lambda i: "/shop/offline-sw.js")
route("shop.offline_data", "GET", "any_user", lambda i: "/shop/offline/data")
route("shop.offline_sync", "POST", "own_store", lambda i: "/shop/offline/sync",
      json={"sales": [{"token": "x" * 20, "points": 1, "taken_at": "2026-12-01T00:00:00+00:00"}]})
route("shop.offline_conflicts", "GET", "any_user", lambda i: "/shop/offline/conflicts")
route("shop.offline_sheet", "GET", "any_user", lambda i: "/shop/offline/sheet")
route("shop.offline_sheet", "POST", "own_village_write", lambda i: "/shop/offline/sheet",
      form=lambda i: {"number": "BLM-001", "store_id": i["store"], "points": "1", "count": "1"})
route("shop.add_item", "POST", "own_village_write", lambda i: f"/committee/stores/{i['store']}/items",
      form={"name": "matrix", "points": "1", "stock": "1"})
route("shop.edit_item", "POST", "own_village_write", lambda i: f"/committee/stores/{i['store']}/items/{i['item']}",
      form={"name": "matrix", "points": "1", "stock": "1", "active": "1"})
route("shop.statement", "GET", "clerk_or_committee_read", lambda i: f"/stores/{i['store']}/statement")
route("shop.statement", "POST", "committee_write", lambda i: f"/stores/{i['store']}/statement",
      form=lambda i: {"period": i["month"], "confirm": "1"})
route("shop.statement_xlsx", "GET", "clerk_or_committee_read", lambda i: f"/stores/{i['store']}/statement.xlsx")
route("shop.household_card", "GET", "committee_or_sup_read", lambda i: f"/committee/households/{i['household']}/card")
route("shop.household_card", "POST", "committee_write", lambda i: f"/committee/households/{i['household']}/card",
      form={"pin": "1234"})
route("shop.revoke_card", "POST", "committee_write",
      lambda i: f"/committee/households/{i['household']}/card/revoke", form={"confirm": "1"})
route("board.kinship_page", "GET", "any_user", lambda i: "/kinships")
route("board.kinship_page", "POST", "own_village_write", lambda i: "/kinships",
      form={"household": "XLC-001", "relation": "父母"})
route("board.integrity_page", "GET", "committee_or_sup_read", lambda i: "/integrity?village=XLC")

EXPECTED = E

#: Web routes that are public pages (no login_required) but refuse an anonymous POST with 403, not a login redirect.
ANONYMOUS_403_OK = {("awards.notices", "POST")}

#: Known deviations from "a refusal is never 2xx" (reported, not fixed here). The request is still refused by the
#: service and must change nothing (the fingerprint check below still applies to them).
#: refusals that a page answers with 2xx (a flashed message); none at present — keep it empty
KNOWN_2XX_REFUSALS: set = set()


def _routes(app):
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((rule.endpoint, method))
    return found


def test_every_route_is_in_the_matrix(app):
    routes = _routes(app)
    missing = sorted(routes - set(EXPECTED))
    assert not missing, "routes without an authorisation-matrix entry: " + ", ".join(f"{m} {e}" for e, m in missing)
    stale = sorted(set(EXPECTED) - routes)
    assert not stale, "matrix entries for routes that no longer exist: " + ", ".join(f"{m} {e}" for e, m in stale)
    for key, entry in EXPECTED.items():
        assert entry["rule"] in RULES, key


# --- the other village's objects ----------------------------------------------------------------------------------

def _xlc_ids(app, api) -> dict:
    from moralbank.awards.models import Award, Rule
    from moralbank.ledger.models import Transfer
    from moralbank.people.models import Area, Household
    from moralbank.stores.models import Item, Redemption, Store

    # Arrange the other village's objects through its own committee: a snapshot, a pending and a noticed award.
    response = api.post("/api/v1/villages/XLC/ranking-snapshots", "committee_xlc", json={"period": "all"})
    assert response.status_code == 201, response.get_json()
    snapshot = response.get_json()["id"]
    with session_of(app) as s:
        xlc = s.scalar(select(Area).where(Area.code == "XLC"))
        household = s.scalar(select(Household.id).where(Household.village_id == xlc.id).order_by(Household.id))
        rules = s.scalars(select(Rule).where(Rule.village_id == xlc.id, Rule.active.is_(True))
                          .order_by(Rule.id)).all()
        big = next(r for r in rules if r.points >= 20)
        small = next(r for r in rules if 0 < r.points < 20 and not r.photo_required)
        award = s.scalar(select(Award.id).where(Award.village_id == xlc.id).order_by(Award.id))
        photo_award = s.scalar(select(Award.id).where(Award.village_id == xlc.id, Award.photo_path.is_not(None))
                               .order_by(Award.id)) or award
        transfer = s.scalar(select(Transfer.id).where(Transfer.village_id == xlc.id, Transfer.award_id.is_not(None))
                            .order_by(Transfer.id))
        store = s.scalar(select(Store.id).where(Store.village_id == xlc.id))
        item = s.scalar(select(Item.id).where(Item.store_id == store).order_by(Item.id))
        redemption = s.scalar(select(Redemption.id).where(Redemption.store_id == store).order_by(Redemption.id))
        hamlet = min(h.id for h in xlc.children)
        households = s.scalars(select(Household.id).where(Household.village_id == xlc.id)
                               .order_by(Household.id)).all()
    ids = {"household": household, "rule": small.id, "award": award, "photo_award": photo_award,
           "transfer": transfer, "store": store, "item": item, "redemption": redemption, "hamlet": hamlet,
           "snapshot": snapshot, "code": "12345678", "month": "2026-01"}
    # A proposal of >= threshold points waits for review; a small one goes to public notice (or straight through).
    created = []
    for index, rule in enumerate((big, small)):
        response = api.post("/api/v1/awards", "committee_xlc",
                            json={"household_id": households[1 + index], "rule_id": rule.id})
        assert response.status_code == 201, response.get_json()
        created.append(response.get_json())
    ids["pending"] = created[0]["id"]
    ids["noticed"] = created[1]["id"]
    response = api.post(f"/api/v1/awards/{ids['noticed']}/approve", "committee_xlc")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "approved", response.get_json()  # 公示中: open to objections
    from datetime import date
    from moralbank.awards.models import Meeting
    from moralbank.database import write_transaction
    with session_of(app) as s:
        with write_transaction():
            meeting = Meeting(village_id=s.scalar(select(Area.id).where(Area.code == "XLC")), held_on=date(2026, 3, 12),
                              kind="assembly", entitled=20, present=15, votes_for=15, votes_against=0,
                              votes_abstain=0, minutes_path="missing.jpg")
            s.add(meeting)
            s.flush()
            ids["meeting"] = meeting.id
    assert None not in ids.values(), ids
    return ids


def _fingerprint(app) -> str:
    """Everything a refused request must not change."""
    from moralbank.awards.models import Award, Meeting, Objection, Rule
    from moralbank.ledger.models import Transfer
    from moralbank.people.kinships import Kinship
    from moralbank.people.models import Area
    from moralbank.rankings.models import RankingSnapshot
    from moralbank.stores.models import HouseholdCard, Item, Redemption, Settlement

    with session_of(app) as s:
        parts = [
            s.scalar(select(func.count()).select_from(Transfer)),
            s.scalar(select(func.count()).select_from(Redemption)),
            s.scalar(select(func.count()).select_from(Settlement)),
            s.scalar(select(func.count()).select_from(RankingSnapshot)),
            s.scalar(select(func.count()).select_from(Objection)),
            s.execute(select(HouseholdCard.id, HouseholdCard.revoked_at).order_by(HouseholdCard.id)).all()
            if hasattr(HouseholdCard, "revoked_at") else s.scalar(select(func.count()).select_from(HouseholdCard)),
            s.execute(select(Award.id, Award.status).order_by(Award.id)).all(),
            s.execute(select(Rule.id, Rule.active, Rule.points, Rule.status).order_by(Rule.id)).all(),
            s.scalar(select(func.count()).select_from(Meeting)),
            s.execute(select(Item.id, Item.name, Item.points, Item.stock, Item.active).order_by(Item.id)).all(),
            s.execute(select(Area.code, Area.notice_days, Area.approval_threshold).order_by(Area.code)).all(),
            s.execute(select(Area.code, Area.expiry).order_by(Area.code)).all(),
            s.scalar(select(func.count()).select_from(Kinship)),
        ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


# --- driving the matrix -------------------------------------------------------------------------------------------

API_REFUSED = {401, 403, 404, 409, 422}


class Web:
    """One logged-in browser-like test client per role."""

    def __init__(self, app):
        self.app = app
        self.clients = {}
        self.tokens = {}

    def client(self, who):
        if who not in self.clients:
            client = self.app.test_client()
            if who != "anonymous":
                token = csrf_from(client.get("/login").get_data(as_text=True))
                response = client.post("/login", data={"phone": PHONES[who], "password": DEMO_PASSWORD,
                                                       "csrf_token": token})
                assert response.status_code == 302, (who, response.status_code)
            # the grid manager's and the clerk's 首页 is their job's page (follow it for the token)
            page = client.get("/login" if who == "anonymous" else "/home", follow_redirects=True)
            self.tokens[who] = csrf_from(page.get_data(as_text=True))
            self.clients[who] = client
        return self.clients[who]


def _resolve(value, ids):
    return value(ids) if callable(value) else value


def _send(web, api, who, endpoint, method, path, entry, ids, *, rewrite=lambda value: value):
    """One request of ``who`` as the matrix entry describes it (``rewrite`` edits the resolved body)."""
    if endpoint.startswith("api."):
        client = web.client("anonymous") if who == "anonymous" else None
        headers = {} if who == "anonymous" else api.headers(who)
        if method != "GET":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        body = rewrite(_resolve(entry["json"], ids))
        return (client or web.app.test_client()).open(
            path, method=method, headers=headers, json=body if body is not None else
            ({} if method in ("POST", "PATCH") else None))
    client = web.client(who)
    data = None
    if method == "POST":
        data = dict(rewrite(_resolve(entry["form"], ids)) or {})
        data["csrf_token"] = web.tokens[who]
        data["idempotency_key"] = uuid.uuid4().hex
    return client.open(path, method=method, data=data)


def _drive(app, api, kinds, *, roles=ROLES):
    ids = _xlc_ids(app, api)
    web = Web(app)
    problems = []
    count = 0
    for (endpoint, method), entry in sorted(EXPECTED.items()):
        is_api = endpoint.startswith("api.")
        if ("api" if is_api else "web") not in kinds:
            continue
        if endpoint in ("api.delete_token", "web.logout"):
            continue  # would log the role out; checked separately below
        login_required, outsiders, drive_owner = RULES[entry["rule"]]
        refuse = entry["refuse"] if entry["refuse"] is not None else outsiders
        path = _resolve(entry["path"], ids)
        for who in roles:
            if who == "committee_xlc" and not drive_owner:
                continue
            if who not in refuse and who != "anonymous" and method != "GET" and entry["rule"] not in (
                    "public", "login_public_api"):
                continue  # an allowed write would change data; only refusals are driven
            before = _fingerprint(app) if method != "GET" else None
            response = _send(web, api, who, endpoint, method, path, entry, ids)
            count += 1
            status = response.status_code
            where = f"{who:13} {method:6} {path} ({endpoint}, rule {entry['rule']}) -> {status}"
            if status >= 500:
                problems.append("5xx: " + where)
                continue
            if who == "anonymous" and login_required:
                if is_api and status != 401:
                    problems.append("anonymous not 401: " + where)
                if not is_api and not (status in (301, 302, 303) and "/login" in response.headers.get("Location", "")
                                       or status == 403 and (endpoint, method) in ANONYMOUS_403_OK):
                    problems.append("anonymous not sent to login: " + where)
            elif who in refuse:
                if is_api and status not in API_REFUSED:
                    problems.append("not refused: " + where)
                if not is_api and 200 <= status < 300 and (endpoint, method, who) not in KNOWN_2XX_REFUSALS:
                    problems.append("not refused: " + where)
            if who in entry["no_leak"] and 200 <= status < 300:
                text = response.get_data(as_text=True)
                if "XLC" in text or "新立村" in text:
                    problems.append("other village shown: " + where)
            if before is not None and (who in refuse or (who == "anonymous" and login_required)):
                if _fingerprint(app) != before:
                    problems.append("data changed by a refused request: " + where)
    return count, problems


def test_api_matrix_other_village(app, api):
    count, problems = _drive(app, api, {"api"})
    assert count > 100
    assert not problems, f"{len(problems)} problems in {count} API requests:\n" + "\n".join(problems)


def test_web_matrix_other_village(app, api):
    count, problems = _drive(app, api, {"web"})
    assert count > 100
    assert not problems, f"{len(problems)} problems in {count} web requests:\n" + "\n".join(problems)


def test_logout_routes_need_a_session(app, api):
    """The two routes skipped in the matrix (they end the caller's session)."""
    client = app.test_client()
    assert client.delete("/api/v1/auth/tokens/current").status_code == 401
    assert client.delete("/api/v1/auth/tokens/current",
                         headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    for who in ROLES[1:]:
        response = client.delete("/api/v1/auth/tokens/current", headers=api.headers(who))
        assert response.status_code < 300, (who, response.status_code)
        assert client.get("/api/v1/me", headers=api.headers(who)).status_code == 401
    web = Web(app)
    anonymous = web.client("anonymous")
    response = anonymous.post("/logout", data={"csrf_token": web.tokens["anonymous"]})
    assert response.status_code < 500


# --- a grid manager and another hamlet of the same village ----------------------------------------------------------

#: ids that name one household or something of it (its awards, their photos, its ledger lines, its receipts)
HOUSEHOLD_KEYS = frozenset({"household", "award", "photo_award", "pending", "noticed", "transfer", "redemption"})


class _Recorder(dict):
    """The ids a matrix entry reads when its request is built."""

    def __init__(self, ids):
        super().__init__(ids)
        self.used = set()

    def __getitem__(self, key):
        self.used.add(key)
        return super().__getitem__(key)


def _keys_used(entry, ids) -> set:
    recorder = _Recorder(ids)
    for part in ("path", "json", "form"):
        _resolve(entry[part], recorder)
    return recorder.used


def _to_blm(value):
    """A resolved path or body with the village code of the matrix (XLC) turned into BLM."""
    if isinstance(value, str):
        return value.replace("XLC", "BLM")
    if isinstance(value, dict):
        return {key: _to_blm(item) for key, item in value.items()}
    return value


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (120, 60, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _other_hamlet_ids(app, api) -> dict:
    """Objects of BLM outside the grid manager's hamlet: households, their awards (one with a photo, one
    waiting for review, one in public notice), a posted award's transfer and a receipt; the village's own
    rule, store, item and snapshot for the rest."""
    import io

    from moralbank.awards.models import Award, Rule
    from moralbank.ledger.models import Transfer
    from moralbank.people.models import Area, Household, User
    from moralbank.stores.models import Item, Redemption, Store

    response = api.post("/api/v1/villages/BLM/ranking-snapshots", "committee", json={"period": "all"})
    assert response.status_code == 201, response.get_json()
    snapshot = response.get_json()["id"]
    with session_of(app) as s:
        blm = s.scalar(select(Area).where(Area.code == "BLM"))
        grid = s.scalar(select(User).where(User.phone == PHONES["grid"]))
        mine = {g.area_id for g in grid.grants if g.role == "grid"}
        others = [h.id for h in blm.children if h.id not in mine]
        outside = Household.hamlet_id.in_(others)
        households = s.scalars(select(Household.id).where(outside).order_by(Household.id)).all()
        transfer, household = s.execute(
            select(Transfer.id, Award.household_id).join(Award, Award.id == Transfer.award_id)
            .join(Household, Household.id == Award.household_id)
            .where(outside, Award.status == "posted").order_by(Transfer.id).limit(1)).one()
        redemption = s.scalar(select(Redemption.id).join(Household, Household.id == Redemption.household_id)
                              .where(outside).order_by(Redemption.id))
        rules = s.scalars(select(Rule).where(Rule.village_id == blm.id, Rule.active.is_(True))
                          .order_by(Rule.id)).all()
        big = next(r for r in rules if r.points >= 20)
        small = next(r for r in rules if 0 < r.points < 20 and not r.photo_required)
        store = s.scalar(select(Store.id).where(Store.village_id == blm.id).order_by(Store.id))
        item = s.scalar(select(Item.id).where(Item.store_id == store).order_by(Item.id))
        numbers = dict(s.execute(select(Household.id, Household.number).where(outside)).all())
    neighbours = [h for h in households if h != household]
    ids = {"household": household, "rule": small.id, "transfer": transfer, "redemption": redemption,
           "store": store, "item": item, "hamlet": others[0], "snapshot": snapshot, "code": "12345678",
           "month": "2026-01", "meeting": 1}  # a meeting names no household (gov-rules)
    photo = api.post("/api/v1/awards", "committee", data={
        "household_id": str(household), "rule_id": str(small.id), "photo": (io.BytesIO(_jpeg()), "yard.jpg")},
        content_type="multipart/form-data")
    assert photo.status_code == 201, photo.get_json()
    ids["award"] = ids["photo_award"] = photo.get_json()["id"]
    for key, rule, neighbour in (("pending", big, neighbours[0]), ("noticed", small, neighbours[1])):
        response = api.post("/api/v1/awards", "committee", json={"household_id": neighbour, "rule_id": rule.id})
        assert response.status_code == 201, response.get_json()
        ids[key] = response.get_json()["id"]
    response = api.post(f"/api/v1/awards/{ids['noticed']}/approve", "committee")
    assert response.status_code == 200 and response.get_json()["status"] == "approved", response.get_json()
    assert None not in ids.values(), ids
    ids["numbers"] = numbers
    ids["awards"] = {ids["photo_award"], ids["pending"], ids["noticed"]}
    return ids


def test_grid_manager_is_refused_the_households_of_other_hamlets(app, api):
    """Every route that shows or acts on one household — its members, ledger lines, awards, photos,
    receipts, cards — refuses the grid manager (403/404, web or API) for a household of another hamlet of
    the same village, and changes nothing."""
    ids = _other_hamlet_ids(app, api)
    web = Web(app)
    problems, count = [], 0
    for (endpoint, method), entry in sorted(EXPECTED.items()):
        if not _keys_used(entry, ids) & HOUSEHOLD_KEYS:
            continue
        path = _to_blm(_resolve(entry["path"], ids))
        before = _fingerprint(app) if method != "GET" else None
        response = _send(web, api, "grid", endpoint, method, path, entry, ids, rewrite=_to_blm)
        count += 1
        status = response.status_code
        where = f"grid {method:6} {path} ({endpoint}) -> {status}"
        if endpoint.startswith("api.") or method == "GET":
            if status not in (403, 404):
                problems.append("not refused: " + where)
        elif status not in (302, 303, 403, 404):  # a refused form goes back with a message, or 403/404
            problems.append("not refused: " + where)
        if before is not None and _fingerprint(app) != before:
            problems.append("data changed by a refused request: " + where)
    assert count >= 20, count
    assert not problems, f"{len(problems)} problems in {count} requests:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", [
    "/api/v1/villages/BLM/households?limit=200", "/api/v1/villages/BLM/awards?limit=200",
    "/api/v1/villages/BLM/awards?household_id={household}", "/api/v1/villages/BLM/awards?household_id={pending}",
    "/grid", "/home", "/awards/new"])
def test_grid_manager_lists_show_no_household_of_other_hamlets(app, api, path):
    """The village's lists a grid manager may open name none of another hamlet's households or awards."""
    import re

    ids = _other_hamlet_ids(app, api)
    households = set(ids["numbers"])
    path = path.format(household=ids["household"], pending=_household_of_award(app, ids["pending"]))
    if path.startswith("/api/"):
        response = api.get(path, "grid")
        assert response.status_code == 200, response.get_json()
        items = response.get_json()["items"]
        shown = {item.get("household_id", item.get("id")) for item in items}
        assert not shown & households, sorted(shown & households)
        assert not {item["id"] for item in items} & ids["awards"] or "households" in path
    else:
        response = Web(app).client("grid").get(path, follow_redirects=True)  # /home: the grid's sheet
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        leaked = [number for number in ids["numbers"].values() if re.search(rf"\b{re.escape(number)}\b", text)]
        assert not leaked, leaked


def _household_of_award(app, award_id: int) -> int:
    from moralbank.awards.models import Award

    with session_of(app) as s:
        return s.get(Award, award_id).household_id
