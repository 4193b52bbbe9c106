"""The ledger under concurrency: many threads, each with its own app context,
session and database connection, against a file SQLite database (WAL, BEGIN
IMMEDIATE, busy timeout) or PostgreSQL (row locks, READ COMMITTED), whichever
the suite runs on.

* racing spends never overdraw a household, and every refused spend leaves nothing behind;
* an award posted by many hands at once is posted exactly once;
* a transfer is reversed exactly once however many reversals race;
* transfers in opposite directions between two accounts never deadlock.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from moralbank.awards.models import Award, Rule
from moralbank.awards.service import post_award
from moralbank.database import utcnow, write_transaction
from moralbank.extensions import db
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, Transfer
from moralbank.ledger.service import AlreadyReversed, InsufficientPoints
from moralbank.ledger.verify import verify
from moralbank.people.models import Household
from moralbank.people.service import village_by_code
from moralbank.rankings.models import HouseholdScore
from moralbank.stores.models import Store

pytestmark = pytest.mark.slow

#: no race may take longer than this (seconds) before it counts as hung
DEADLINE = 20


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def balance_of(account_id: int) -> int:
    return db.session.execute(text("SELECT balance FROM accounts WHERE id = :id"), {"id": account_id}).scalar_one()


def blm_households(count: int) -> list[Household]:
    village = village_by_code("BLM")
    return list(db.session.scalars(select(Household).where(Household.village_id == village.id)
                                   .order_by(Household.id).limit(count)))


def set_balance(household_id: int, target: int) -> int:
    """Bring a household's balance to ``target`` by an adjustment; return its account id."""
    with write_transaction():
        household = db.session.get(Household, household_id)
        account = ledger.household_account(household_id)
        diff = target - account.balance
        if diff:
            other = ledger.village_account(household.village_id, "issuance" if diff > 0 else "sink")
            debit, credit = (other, account) if diff > 0 else (account, other)
            ledger.transfer(debit=debit, credit=credit, amount=abs(diff), code="adjustment",
                            idempotency_key=key("set"), reason="test set-up")
    db.session.rollback()
    assert balance_of(account.id) == target
    return account.id


def race(app, workers: int, body, *, deadline: float = DEADLINE):
    """Run ``body(worker_number)`` in ``workers`` threads released together; return (results, errors, seconds).

    Each thread has its own app context, hence its own session and connection.
    """
    barrier = threading.Barrier(workers)
    results: list = []
    errors: list = []
    lock = threading.Lock()

    def run(number: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=deadline)
                outcome = body(number)
                with lock:
                    results.append(outcome)
            except BaseException as error:  # noqa: BLE001 - every failure is reported by the test
                with lock:
                    errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n,), daemon=True, name=f"ledger-race-{n}")
               for n in range(workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"threads still running after {deadline} s (deadlock or lock wait?): {hung}"
    return results, errors, elapsed


def assert_verifies(app) -> None:
    with app.app_context():
        report = verify()
        db.session.remove()
    assert report.ok, report.discrepancies


# --- overspending ----------------------------------------------------------------------------

def test_racing_spends_never_overdraw(app):
    """16 clerks' devices spend 10 points at a time, 5 times each, from a household holding 100."""
    threads, spends_each, price, start = 16, 5, 10, 100
    with app.app_context():
        household = blm_households(1)[0]
        household_id = household.id
        store_id = db.session.scalar(select(Store.id).where(Store.village_id == household.village_id)
                                     .order_by(Store.id))
        account_id = set_balance(household_id, start)
        store_account_id = ledger.store_account(store_id).id
        store_before = balance_of(store_account_id)
        transfers_before = db.session.scalar(select(func.count()).select_from(Transfer))
        db.session.remove()

    def spender(number: int) -> Counter:
        outcome = Counter()
        for attempt in range(spends_each):
            try:
                with write_transaction():
                    ledger.transfer(debit=ledger.household_account(household_id),
                                    credit=ledger.store_account(store_id), amount=price, code="redemption",
                                    idempotency_key=f"race-{number}-{attempt}", reason="race")
                outcome["spent"] += 1
            except InsufficientPoints:
                outcome["refused"] += 1
        return outcome

    results, errors, elapsed = race(app, threads, spender)
    assert not errors, f"spends failed with something other than a refusal: {errors!r}"
    total = sum(results, Counter())
    assert total["spent"] + total["refused"] == threads * spends_each

    with app.app_context():
        final = balance_of(account_id)
        store_after = balance_of(store_account_id)
        spent_transfers = db.session.scalars(select(Transfer.amount).where(
            Transfer.debit_account_id == account_id, Transfer.code == "redemption",
            Transfer.idempotency_key.like("race-%"))).all()
        transfers_written = db.session.scalar(select(func.count()).select_from(Transfer)) - transfers_before
        db.session.remove()

    assert final >= 0, f"overdrawn: balance {final}"
    # Nothing was refused while points were left: exactly the 100 points were spent, 10 at a time.
    assert total["spent"] == start // price, total
    assert final == start - price * total["spent"] == 0
    assert sum(spent_transfers) == price * total["spent"] == len(spent_transfers) * price
    assert store_after - store_before == price * total["spent"]
    # A refused spend leaves no transfer behind.
    assert transfers_written == total["spent"]
    assert_verifies(app)
    assert elapsed < DEADLINE


# --- posting an award ------------------------------------------------------------------------

def test_an_award_posted_by_many_hands_at_once_is_posted_once(app):
    with app.app_context():
        household = blm_households(1)[0]
        household_id = household.id
        account_id = ledger.household_account(household_id).id
        rule = db.session.scalar(select(Rule).where(Rule.village_id == household.village_id, Rule.points > 0,
                                                    Rule.active.is_(True)).order_by(Rule.id))
        now = utcnow()
        with write_transaction():
            award = Award(village_id=household.village_id, household_id=household_id, rule_id=rule.id,
                          quantity=1, points=rule.points, status="approved", occurred_on=now.date(),
                          proposed_at=now, decided_at=now, notice_ends_at=now)
            db.session.add(award)
            db.session.flush()
            award_id, points = award.id, award.points
        db.session.rollback()
        balance_before = balance_of(account_id)
        score_before = db.session.scalar(select(HouseholdScore.score).where(
            HouseholdScore.household_id == household_id, HouseholdScore.period == "all")) or 0
        db.session.remove()

    def poster(number: int) -> str:
        with write_transaction():
            award = db.session.get(Award, award_id)
            post_award(award)
            return award.status

    results, errors, _ = race(app, 8, poster)
    assert not errors, errors
    assert results == ["posted"] * 8

    with app.app_context():
        transfers = db.session.scalars(select(Transfer).where(Transfer.award_id == award_id)).all()
        assert [(t.code, t.amount, t.credit_account_id) for t in transfers] == [("award", points, account_id)]
        assert balance_of(account_id) == balance_before + points
        assert db.session.scalar(select(HouseholdScore.score).where(
            HouseholdScore.household_id == household_id, HouseholdScore.period == "all")) == score_before + points
        assert db.session.get(Award, award_id).status == "posted"
        db.session.remove()
    assert_verifies(app)


# --- reversing -------------------------------------------------------------------------------

def test_racing_reversals_reverse_a_transfer_once(app):
    with app.app_context():
        household = blm_households(1)[0]
        account_id = ledger.household_account(household.id).id
        with write_transaction():
            original_id = ledger.transfer(
                debit=ledger.village_account(household.village_id, "issuance"),
                credit=ledger.household_account(household.id), amount=25, code="award",
                idempotency_key=key("award"), reason="to be reversed").transfer.id
        db.session.rollback()
        balance_before = balance_of(account_id)
        db.session.remove()

    def reverser(number: int) -> str:
        try:
            with write_transaction():
                ledger.reverse(db.session.get(Transfer, original_id), reason=f"committee member {number}",
                               idempotency_key=f"reverse-{number}")
            return "reversed"
        except AlreadyReversed:
            return "already"

    results, errors, _ = race(app, 8, reverser)
    assert not errors, errors
    assert sorted(results) == ["already"] * 7 + ["reversed"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Transfer)
                                 .where(Transfer.reverses_id == original_id)) == 1
        assert balance_of(account_id) == balance_before - 25
        db.session.remove()
    assert_verifies(app)


# --- lock order ------------------------------------------------------------------------------

def test_opposite_transfers_between_two_accounts_do_not_deadlock(app):
    """Half the threads move points A → B, half B → A, at the same time; all finish, none errs."""
    threads, rounds = 8, 12
    with app.app_context():
        first, second = blm_households(2)
        a_id = set_balance(first.id, 1000)
        b_id = set_balance(second.id, 1000)
        db.session.remove()

    def mover(number: int) -> int:
        debit_id, credit_id = (a_id, b_id) if number % 2 == 0 else (b_id, a_id)
        for attempt in range(rounds):
            with write_transaction():
                ledger.transfer(debit=db.session.get(Account, debit_id), credit=db.session.get(Account, credit_id),
                                amount=number + 1, code="adjustment",
                                idempotency_key=f"swap-{number}-{attempt}", reason="lock order")
        return number

    results, errors, elapsed = race(app, threads, mover)
    assert not errors, f"opposite transfers failed (deadlock?): {errors!r}"
    assert sorted(results) == list(range(threads))
    a_to_b = sum((n + 1) * rounds for n in range(threads) if n % 2 == 0)
    b_to_a = sum((n + 1) * rounds for n in range(threads) if n % 2 == 1)
    with app.app_context():
        assert balance_of(a_id) == 1000 - a_to_b + b_to_a
        assert balance_of(b_id) == 1000 + a_to_b - b_to_a
        assert db.session.scalar(select(func.count()).select_from(Transfer)
                                 .where(Transfer.idempotency_key.like("swap-%"))) == threads * rounds
        db.session.remove()
    assert_verifies(app)
    assert elapsed < DEADLINE


def test_the_race_database_is_a_file_or_postgresql(app):
    """The races above mean something only with real separate connections."""
    with app.app_context():
        url = db.engine.url
        db.session.remove()
    if url.get_backend_name() == "sqlite":
        assert url.database and url.database != ":memory:"
        with app.app_context():
            assert db.session.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert db.session.execute(text("PRAGMA busy_timeout")).scalar_one() > 0
            db.session.remove()
    else:
        assert url.get_backend_name() == "postgresql"
