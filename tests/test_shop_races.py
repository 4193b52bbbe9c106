"""Redemptions under concurrency, on whichever engine the suite runs (file SQLite with WAL and
BEGIN IMMEDIATE, or PostgreSQL with row locks): each thread has its own app/request context,
session and connection, and calls the service the API and the web pages call.

* one code, fifty clerks' taps: exactly one redemption, the household debited once;
* twenty buyers for the last five items: exactly five sales, stock ends at 0, never below;
* a household with points for three purchases and ten codes: exactly three, and the stock the
  refused ones took is put back;
* carts naming the same two items in opposite orders never deadlock.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from collections import Counter

import pytest
from sqlalchemy import func, select

from moralbank.awards.models import Rule
from moralbank.awards.service import record_award
from moralbank.database import write_transaction
from moralbank.extensions import db
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, Transfer
from moralbank.ledger.service import InsufficientPoints
from moralbank.ledger.verify import verify
from moralbank.people.models import Household, User
from moralbank.people.service import create_user, village_by_code
from moralbank.stores import service as stores
from moralbank.stores.models import Item, Redemption, RedemptionCode, RedemptionLine, Store

pytestmark = pytest.mark.slow

DEADLINE = 25
RESIDENT, CLERK, COMMITTEE = "13800000003", "13800000004", "13800000001"


def user(phone: str) -> User:
    return db.session.scalar(select(User).where(User.phone == phone))


def race(app, workers: int, body):
    """``body(n)`` in ``workers`` threads released together; returns (results, errors, seconds)."""
    barrier = threading.Barrier(workers)
    results, errors = [], []
    lock = threading.Lock()

    def run(number: int) -> None:
        with app.test_request_context():
            try:
                barrier.wait(timeout=DEADLINE)
                outcome = body(number)
                with lock:
                    results.append(outcome)
            except BaseException as error:  # noqa: BLE001 - reported by the test
                with lock:
                    errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, DEADLINE - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), f"threads still running after {DEADLINE} s"
    return results, errors, elapsed


def clerk_store() -> Store:
    return stores.clerk_store(user(CLERK))


def household_balance(household_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(select(Account.balance).where(Account.household_id == household_id))


def give_points(household: Household, at_least: int) -> None:
    """Award the household enough to hold ``at_least`` points (inside a write transaction)."""
    rule = db.session.scalar(select(Rule).where(Rule.village_id == household.village_id, Rule.points > 0)
                             .order_by(Rule.points.desc()))
    have = ledger.household_account(household.id).balance
    if have < at_least:
        quantity = (at_least - have) // rule.points + 1
        record_award(household, rule, approver=user(COMMITTEE), quantity=quantity)


def resident_logins(app, count: int) -> list[tuple[int, int]]:
    """(user id, household id) of ``count`` residents of BLM: the demo one and new logins for others."""
    with app.app_context():
        with write_transaction():
            demo = user(RESIDENT)
            pairs = [(demo.id, min(g.household_id for g in demo.grants if g.role == "resident"))]
            village = village_by_code("BLM")
            others = db.session.scalars(select(Household).where(Household.village_id == village.id,
                                                                Household.id != pairs[0][1])
                                        .order_by(Household.id).limit(count - 1)).all()
            for number, household in enumerate(others):
                login = create_user(phone=f"1390000{number + 1:04d}", name=household.head.name,
                                    password="demo-pass-2026", role="resident", household=household)
                pairs.append((login.id, household.id))
        db.session.remove()
    return pairs


def open_code(resident: User) -> stores.IssuedCode:
    """Another open code of the resident's household, beside its earlier ones.

    ``issue_code`` keeps one open code per household (a new one ends the old); these races need
    several codes of one household live at once (as a phone code and paper-card codes at other
    shops can be), so the test opens them with the code maker itself.
    """
    household = db.session.get(Household, min(g.household_id for g in resident.grants if g.role == "resident"))
    from moralbank.stores.codes import _new_code

    return _new_code(household, timedelta(minutes=5), creator=resident)


def issue_codes(app, resident_ids: list[int], per_resident: int, *, points_each: int) -> list[tuple[str, int]]:
    """Fresh codes, ``per_resident`` each, with the households holding ``points_each``: [(number, household)]."""
    codes = []
    with app.test_request_context():
        with write_transaction():
            for resident_id in resident_ids:
                resident = db.session.get(User, resident_id)
                for _ in range(per_resident):
                    issued = open_code(resident)
                    codes.append((issued.record.code, issued.record.household_id))
                give_points(db.session.get(Household, codes[-1][1]), points_each)
        db.session.remove()
    return codes


def assert_verifies(app) -> None:
    with app.app_context():
        report = verify()
        db.session.remove()
    assert report.ok, report.discrepancies


# --- one code, many taps ---------------------------------------------------------------------

def test_fifty_taps_on_one_code_redeem_once(app):
    points = 7
    with app.test_request_context():
        with write_transaction():
            resident = user(RESIDENT)
            issued = stores.issue_code(resident)
            number, household_id = issued.record.code, issued.record.household_id
            give_points(db.session.get(Household, household_id), 50)
        store_id = clerk_store().id
        clerk_id = user(CLERK).id
        start = household_balance(household_id)
        store_start = db.session.scalar(select(Account.balance).where(Account.store_id == store_id))
        transfers_start = db.session.scalar(select(func.count(Transfer.id)))
        db.session.remove()

    def tap(n: int) -> str:
        clerk, store = db.session.get(User, clerk_id), db.session.get(Store, store_id)
        try:
            with write_transaction():
                redemption = stores.redeem_with_code(clerk, store, number, points=points)
                return f"ok:{redemption.id}"
        except stores.CodeUsed:
            return "code_used"

    results, errors, elapsed = race(app, 50, tap)
    assert not errors, errors
    outcome = Counter(result.split(":")[0] for result in results)
    assert outcome == {"ok": 1, "code_used": 49}, outcome

    with app.app_context():
        code = db.session.scalar(select(RedemptionCode).where(RedemptionCode.code == number))
        redemptions = db.session.scalars(select(Redemption).where(Redemption.code_id == code.id)).all()
        assert code.consumed_at is not None
        assert [r.points for r in redemptions] == [points]
        assert f"ok:{redemptions[0].id}" in results
        assert household_balance(household_id) == start - points
        assert db.session.scalar(select(Account.balance).where(Account.store_id == store_id)) == store_start + points
        assert db.session.scalar(select(func.count(Transfer.id))) == transfers_start + 1
        db.session.remove()
    assert_verifies(app)
    assert elapsed < DEADLINE


# --- the last five items ---------------------------------------------------------------------

def test_twenty_buyers_for_the_last_five_items(app):
    buyers, stock = 20, 5
    residents = resident_logins(app, 4)
    with app.test_request_context():
        store = clerk_store()
        store_id, clerk_id = store.id, user(CLERK).id
        item = db.session.scalar(select(Item).where(Item.store_id == store_id, Item.active.is_(True))
                                 .order_by(Item.points, Item.id))
        item_id, price = item.id, item.points
        with write_transaction():
            stores.update_item(user(COMMITTEE), item, stock=stock)
        db.session.remove()
    codes = issue_codes(app, [resident_id for resident_id, _ in residents], buyers // len(residents),
                        points_each=price * stock + 10)
    assert len(codes) == buyers and len({number for number, _ in codes}) == buyers
    with app.app_context():
        start = {household: household_balance(household) for _, household in residents}
        store_start = db.session.scalar(select(Account.balance).where(Account.store_id == store_id))
        db.session.remove()

    def buy(n: int) -> tuple[str, int]:
        number, household = codes[n]
        clerk, store = db.session.get(User, clerk_id), db.session.get(Store, store_id)
        try:
            with write_transaction():
                stores.redeem_with_code(clerk, store, number, items=[(item_id, 1)])
            return "sold", household
        except stores.OutOfStock:
            return "out_of_stock", household

    results, errors, elapsed = race(app, buyers, buy)
    assert not errors, errors
    outcome = Counter(kind for kind, _ in results)
    assert outcome == {"sold": stock, "out_of_stock": buyers - stock}, outcome

    with app.app_context():
        assert db.session.get(Item, item_id).stock == 0
        sold_lines = db.session.scalars(select(RedemptionLine.quantity).where(RedemptionLine.item_id == item_id,
                                                                              RedemptionLine.redemption_id.in_(
            select(Redemption.id).where(Redemption.code_id.is_not(None))))).all()
        assert sum(sold_lines) == stock
        # Every household paid for exactly what it got; the refused codes are still unused.
        bought = Counter(household for kind, household in results if kind == "sold")
        for _, household in residents:
            assert household_balance(household) == start[household] - price * bought[household]
        used = db.session.scalar(select(func.count(RedemptionCode.id)).where(
            RedemptionCode.code.in_([number for number, _ in codes]), RedemptionCode.consumed_at.is_not(None)))
        assert used == stock
        assert db.session.scalar(select(Account.balance).where(Account.store_id == store_id)) \
            == store_start + price * stock
        db.session.remove()
    assert_verifies(app)
    assert elapsed < DEADLINE


# --- points run out before stock -------------------------------------------------------------

def test_points_for_three_ten_codes_exactly_three_and_stock_put_back(app):
    tries, affordable = 10, 3
    with app.test_request_context():
        store = clerk_store()
        store_id, clerk_id = store.id, user(CLERK).id
        item = db.session.scalar(select(Item).where(Item.store_id == store_id, Item.active.is_(True))
                                 .order_by(Item.points.desc(), Item.id))
        item_id, price = item.id, item.points
        with write_transaction():
            stores.update_item(user(COMMITTEE), item, stock=50)
            resident = user(RESIDENT)
            household_id = min(g.household_id for g in resident.grants if g.role == "resident")
            account = ledger.household_account(household_id)
            # Bring the balance to exactly three prices (plus change that buys nothing more).
            target = price * affordable + price // 2
            diff = target - account.balance
            other = ledger.village_account(account.village_id, "issuance" if diff > 0 else "sink")
            if diff:
                ledger.transfer(debit=other if diff > 0 else account, credit=account if diff > 0 else other,
                                amount=abs(diff), code="adjustment", idempotency_key=f"race-setup-{item_id}",
                                reason="test set-up")
            numbers = [open_code(resident).record.code for _ in range(tries)]
        db.session.remove()

    def buy(n: int) -> str:
        clerk, store = db.session.get(User, clerk_id), db.session.get(Store, store_id)
        try:
            with write_transaction():
                stores.redeem_with_code(clerk, store, numbers[n], items=[(item_id, 1)])
            return "sold"
        except InsufficientPoints:
            return "insufficient_points"

    results, errors, elapsed = race(app, tries, buy)
    assert not errors, errors
    assert Counter(results) == {"sold": affordable, "insufficient_points": tries - affordable}
    with app.app_context():
        assert db.session.get(Item, item_id).stock == 50 - affordable
        assert household_balance(household_id) == price // 2
        assert db.session.scalar(select(func.count(RedemptionCode.id)).where(
            RedemptionCode.code.in_(numbers), RedemptionCode.consumed_at.is_(None))) == tries - affordable
        db.session.remove()
    assert_verifies(app)
    assert elapsed < DEADLINE


# --- opposite carts --------------------------------------------------------------------------

def test_carts_with_the_same_items_in_opposite_orders_do_not_deadlock(app):
    buyers = 16
    residents = resident_logins(app, 4)
    with app.test_request_context():
        store = clerk_store()
        store_id, clerk_id = store.id, user(CLERK).id
        first, second = db.session.scalars(select(Item).where(Item.store_id == store_id, Item.active.is_(True))
                                           .order_by(Item.points, Item.id).limit(2)).all()
        pair, cost = (first.id, second.id), first.points + second.points
        with write_transaction():
            for item in (first, second):
                stores.update_item(user(COMMITTEE), item, stock=100)
        db.session.remove()
    codes = issue_codes(app, [resident_id for resident_id, _ in residents], buyers // len(residents),
                        points_each=cost * buyers)

    def buy(n: int) -> str:
        number, _household = codes[n]
        order = pair if n % 2 else pair[::-1]
        clerk, store = db.session.get(User, clerk_id), db.session.get(Store, store_id)
        with write_transaction():
            stores.redeem_with_code(clerk, store, number, items=[(order[0], 1), (order[1], 1)])
        return "sold"

    results, errors, elapsed = race(app, buyers, buy)
    assert not errors, errors
    assert results == ["sold"] * buyers
    with app.app_context():
        assert [db.session.get(Item, item_id).stock for item_id in pair] == [100 - buyers] * 2
        db.session.remove()
    assert_verifies(app)
    assert elapsed < DEADLINE
