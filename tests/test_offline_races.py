"""Offline vouchers under concurrency (threads, each with its own session and connection, calling
the service the API calls), on whichever engine the suite runs:

* one voucher synced from several devices at once with different sales: one ``posted``, the rest
  ``voucher_used`` (and listed as conflicts), the household debited once;
* the same sale from two devices at once: one ``posted``, one ``replay``;
* a late sale racing ``expire-holds`` for the same hold: exactly one of post and void ends it.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from moralbank.database import travel, utcnow, write_transaction
from moralbank.extensions import db
from moralbank.ledger import holds
from moralbank.stores import offline
from moralbank.stores.offline_models import OfflineConflict
from test_shop_races import CLERK, RESIDENT, assert_verifies, clerk_store, household_balance, race, user

pytestmark = [pytest.mark.slow, pytest.mark.clock("2026-12-01 10:00", tick=True)]


def new_voucher(app, points: int) -> tuple[int, str, int]:
    """(voucher id, token, household id) of a fresh voucher of the resident for the clerk's store."""
    with app.test_request_context():
        with write_transaction():
            made = offline.issue_voucher(user(RESIDENT), clerk_store(), points)
            found = (made.voucher.id, made.token, made.voucher.household_id)
        db.session.remove()
    return found


def sync_one(token: str, points: int, minute: int) -> dict:
    with write_transaction():
        return offline.sync_sales(user(CLERK), clerk_store(), [
            {"token": token, "points": points, "items": [], "taken_at": utcnow() - timedelta(minutes=minute)}])[0]


def test_one_voucher_from_several_devices_is_spent_once(app):
    voucher_id, token, household_id = new_voucher(app, 20)
    with app.app_context():
        before = household_balance(household_id)
        db.session.remove()
    results, errors, _ = race(app, 6, lambda n: sync_one(token, 5 + n, minute=n))
    assert not errors, errors
    assert Counter(r["status"] for r in results) == {"posted": 1, "voucher_used": 5}
    posted = next(r for r in results if r["status"] == "posted")
    with app.app_context():
        # The hold returned what the one posted sale did not take: the household paid once.
        spent = db.session.get(offline.OfflineVoucher, voucher_id).sold_points
        assert spent in {5 + n for n in range(6)}
        assert household_balance(household_id) == before + 20 - spent
        assert db.session.scalar(select(func.count()).select_from(OfflineConflict)
                                 .where(OfflineConflict.voucher_id == voucher_id)) == 5
        assert posted["redemption_id"]
        db.session.remove()
    assert_verifies(app)


def test_the_same_sale_from_two_devices_is_a_replay(app):
    _voucher_id, token, household_id = new_voucher(app, 12)
    with app.app_context():
        before = household_balance(household_id)
        moment = utcnow()
        db.session.remove()

    def same_sale(_n):
        with write_transaction():
            return offline.sync_sales(user(CLERK), clerk_store(), [
                {"token": token, "points": 7, "items": [], "taken_at": moment}])[0]
    results, errors, _ = race(app, 2, same_sale)
    assert not errors, errors
    assert sorted(r["status"] for r in results) == ["posted", "replay"]
    assert len({r["redemption_id"] for r in results}) == 1
    with app.app_context():
        assert household_balance(household_id) == before + 12 - 7
        db.session.remove()
    assert_verifies(app)


def test_a_late_sale_racing_expiry_ends_the_hold_once(app):
    vouchers = [new_voucher(app, 9) for _ in range(3)]
    with app.app_context():
        household_id = vouchers[0][2]
        before = household_balance(household_id)
        db.session.remove()
    # Past the voucher's expiry but inside the hold's grace: a sale taken before expiry still posts,
    # and past the hold's expiry expire-holds voids it. Move to where both may run at once.
    travel(timedelta(days=31, hours=49))
    outcomes = []
    for voucher_id, token, _household in vouchers:
        with app.app_context():
            hold_id = db.session.get(offline.OfflineVoucher, voucher_id).hold_id
            taken = db.session.get(offline.OfflineVoucher, voucher_id).expires_at - timedelta(hours=1)
            db.session.remove()

        def contender(n, token=token, hold_id=hold_id, taken=taken):
            with write_transaction():
                if n == 0:
                    return offline.sync_sales(user(CLERK), clerk_store(), [
                        {"token": token, "points": 4, "items": [], "taken_at": taken}])[0]["status"]
                hold = db.session.get(holds.Hold, hold_id)
                try:
                    holds.void(hold, reason="expired")
                    return "voided"
                except holds.HoldResolved:
                    return "already"
        results, errors, _ = race(app, 2, contender)
        assert not errors, errors
        outcomes.append(sorted(results))
    for pair in outcomes:
        assert pair in (["already", "posted"], ["expired", "voided"]), outcomes
    with app.app_context():
        posted = sum(1 for pair in outcomes if "posted" in pair)
        assert household_balance(household_id) == before + 27 - 4 * posted
        assert holds.held(household_id) == 0
        db.session.remove()
    assert_verifies(app)
