"""The ledger: append-only transfers, cached balances, the spending guard,
idempotency, reversals, and ``verify`` / ``flask ledger verify``.

Every test runs on the engine the suite runs on (SQLite by default, PostgreSQL
with ``MORALBANK_TEST_DB=postgresql``), on its own copy of the demo database;
the ``app`` fixture checks after each test that the ledger still verifies clean.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import exc, func, select, text

from moralbank.database import utcnow, write_transaction
from moralbank.errors import Invalid
from moralbank.extensions import db
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, AppendOnlyError, Transfer
from moralbank.ledger.service import AlreadyReversed, IdempotencyConflict, InsufficientPoints
from moralbank.ledger.verify import verify
from moralbank.people.models import Household
from moralbank.people.service import village_by_code
from moralbank.rankings.models import HouseholdScore
from moralbank.periods import periods_of
from moralbank.stores.models import Item, Redemption, Store
from moralbank.stores.service import redeem


# --- helpers ---------------------------------------------------------------------------------

def key(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def blm():
    return village_by_code("BLM")


def blm_households(count: int) -> list[Household]:
    village = blm()
    return list(db.session.scalars(select(Household).where(Household.village_id == village.id)
                                   .order_by(Household.id).limit(count)))


def balance_of(account_id: int) -> int:
    """The cached balance as stored (a fresh read, not the ORM's copy)."""
    return db.session.execute(text("SELECT balance FROM accounts WHERE id = :id"), {"id": account_id}).scalar_one()


def transfer_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Transfer))


def scores_of(household_id: int) -> dict[str, int]:
    rows = db.session.execute(select(HouseholdScore.period, HouseholdScore.score)
                              .where(HouseholdScore.household_id == household_id)).all()
    return {period: score for period, score in rows}


def fresh() -> None:
    """End the session's transaction so the next read sees what is committed now."""
    db.session.rollback()


def set_balance(household: Household, target: int) -> Account:
    """Bring a household's balance to ``target`` by an adjustment (which changes no score)."""
    with write_transaction():
        account = ledger.household_account(household.id)
        diff = target - account.balance
        if diff > 0:
            ledger.transfer(debit=ledger.village_account(household.village_id, "issuance"), credit=account,
                            amount=diff, code="adjustment", idempotency_key=key("set"), reason="test set-up")
        elif diff < 0:
            ledger.transfer(debit=account, credit=ledger.village_account(household.village_id, "sink"),
                            amount=-diff, code="adjustment", idempotency_key=key("set"), reason="test set-up")
    fresh()
    assert balance_of(account.id) == target
    return account


def award(household: Household, amount: int, *, at=None, idempotency_key: str | None = None):
    with write_transaction():
        posted = ledger.transfer(debit=ledger.village_account(household.village_id, "issuance"),
                                 credit=ledger.household_account(household.id), amount=amount, code="award",
                                 idempotency_key=idempotency_key or key("award"), reason="test award", at=at)
    return posted


def deduct(household: Household, amount: int, *, at=None):
    with write_transaction():
        posted = ledger.transfer(debit=ledger.household_account(household.id),
                                 credit=ledger.village_account(household.village_id, "sink"), amount=amount,
                                 code="deduction", idempotency_key=key("deduct"), reason="test deduction", at=at)
    return posted


def first_store() -> Store:
    return db.session.scalar(select(Store).where(Store.village_id == blm().id).order_by(Store.id))


def spend(household: Household, points: int, store: Store | None = None):
    """A redemption at a store (the store's service; the ledger's guarded debit inside)."""
    store = store or first_store()
    with write_transaction():
        return redeem(household, store, points=points)


# --- append-only, in the database and in the ORM ---------------------------------------------

APPEND_ONLY_STATEMENTS = [
    ("transfers", "UPDATE transfers SET amount = amount + 1 WHERE id = (SELECT MIN(id) FROM transfers)"),
    ("transfers", "UPDATE transfers SET reason = 'edited'"),
    ("transfers", "DELETE FROM transfers WHERE id = (SELECT MAX(id) FROM transfers)"),
    ("transfers", "DELETE FROM transfers"),
    ("audit_log", "UPDATE audit_log SET action = 'edited' WHERE id = (SELECT MIN(id) FROM audit_log)"),
    ("audit_log", "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"),
    ("audit_log", "DELETE FROM audit_log"),
]


def _table_snapshot(table: str):
    """Row count, id range and the first rows in full: enough to see any UPDATE or DELETE."""
    return (db.session.execute(text(f"SELECT COUNT(*), SUM(id), MIN(id), MAX(id) FROM {table}")).one(),
            db.session.execute(text(f"SELECT * FROM {table} ORDER BY id LIMIT 3")).all())


@pytest.mark.parametrize("table,statement", APPEND_ONLY_STATEMENTS)
def test_database_refuses_raw_update_and_delete(ctx, table, statement):
    before = _table_snapshot(table)
    assert before[0][0] > 0, f"the demo data should have rows in {table}"
    fresh()
    with pytest.raises(exc.DBAPIError) as refused:
        with write_transaction():
            db.session.execute(text(statement))
    assert "append-only" in str(refused.value)
    fresh()
    assert _table_snapshot(table) == before


@pytest.mark.parametrize("table", ["transfers", "audit_log"])
def test_postgresql_refuses_truncate(ctx, table):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL (on SQLite it is DELETE, tested above)")
    count = db.session.scalar(text(f"SELECT COUNT(*) FROM {table}"))
    fresh()
    for statement in (f"TRUNCATE {table}", f"TRUNCATE {table} CASCADE"):
        with pytest.raises(exc.DBAPIError) as refused:
            with write_transaction():
                db.session.execute(text(statement))
        assert "append-only" in str(refused.value)
    fresh()
    assert db.session.scalar(text(f"SELECT COUNT(*) FROM {table}")) == count


def test_orm_refuses_to_change_or_delete_a_transfer(ctx):
    transfer_id = db.session.scalar(select(func.min(Transfer.id)))
    original = db.session.execute(text("SELECT amount, reason FROM transfers WHERE id = :id"),
                                  {"id": transfer_id}).one()
    count = transfer_count()
    fresh()

    with pytest.raises(AppendOnlyError):
        with write_transaction():
            row = db.session.get(Transfer, transfer_id)
            row.amount += 100
            db.session.flush()
    with pytest.raises(AppendOnlyError):
        with write_transaction():
            row = db.session.get(Transfer, transfer_id)
            row.reason = "quietly edited"
            # committing flushes too: the refusal must not depend on an explicit flush
    with pytest.raises(AppendOnlyError):
        with write_transaction():
            db.session.delete(db.session.get(Transfer, transfer_id))

    fresh()
    assert db.session.execute(text("SELECT amount, reason FROM transfers WHERE id = :id"),
                              {"id": transfer_id}).one() == original
    assert transfer_count() == count


# --- balances move with the transfer, atomically ---------------------------------------------

def test_transfer_moves_both_balances_in_the_same_transaction(app, ctx):
    household = blm_households(1)[0]
    account = ledger.household_account(household.id)
    issuance = ledger.village_account(household.village_id, "issuance")
    h0, i0, count = balance_of(account.id), balance_of(issuance.id), transfer_count()
    fresh()

    with write_transaction():
        posted = ledger.transfer(debit=issuance, credit=account, amount=7, code="award",
                                 idempotency_key=key(), reason="inside")
        # Inside the transaction the writer sees its own transfer and both new balances …
        assert balance_of(account.id) == h0 + 7 and balance_of(issuance.id) == i0 - 7
        assert account.balance == h0 + 7 and issuance.balance == i0 - 7
        # … while another connection sees none of it: not the transfer, not either balance.
        with db.engine.connect() as other:
            assert other.execute(text("SELECT balance FROM accounts WHERE id = :id"),
                                 {"id": account.id}).scalar_one() == h0
            assert other.execute(text("SELECT balance FROM accounts WHERE id = :id"),
                                 {"id": issuance.id}).scalar_one() == i0
            assert other.execute(text("SELECT COUNT(*) FROM transfers")).scalar_one() == count

    fresh()
    assert balance_of(account.id) == h0 + 7
    assert balance_of(issuance.id) == i0 - 7
    assert transfer_count() == count + 1
    assert db.session.get(Transfer, posted.transfer.id).amount == 7


def test_a_failing_transaction_leaves_balances_and_transfers_unchanged(ctx):
    household = blm_households(1)[0]
    account = ledger.household_account(household.id)
    issuance = ledger.village_account(household.village_id, "issuance")
    h0, i0, count = balance_of(account.id), balance_of(issuance.id), transfer_count()
    scores0 = scores_of(household.id)
    retry_key = key("retry")
    fresh()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with write_transaction():
            ledger.transfer(debit=issuance, credit=account, amount=30, code="award",
                            idempotency_key=retry_key, reason="doomed")
            assert balance_of(account.id) == h0 + 30
            raise Boom("something after the transfer failed")

    fresh()
    assert balance_of(account.id) == h0
    assert balance_of(issuance.id) == i0
    assert transfer_count() == count
    assert scores_of(household.id) == scores0
    # The key was not used up: retrying the request posts it for real, once.
    fresh()
    posted = award(db.session.get(Household, household.id), 30, idempotency_key=retry_key)
    assert not posted.replayed
    fresh()
    assert balance_of(account.id) == h0 + 30


# --- amounts ---------------------------------------------------------------------------------

def _raw_transfer_values(amount: int) -> dict:
    household = blm_households(1)[0]
    return {"village_id": household.village_id,
            "debit": ledger.village_account(household.village_id, "issuance").id,
            "credit": ledger.household_account(household.id).id,
            "amount": amount, "key": key("raw"), "at": utcnow().replace(tzinfo=None)}


RAW_INSERT = text("INSERT INTO transfers (village_id, debit_account_id, credit_account_id, amount, code,"
                  " idempotency_key, created_at) VALUES (:village_id, :debit, :credit, :amount, 'adjustment',"
                  " :key, :at)")


@pytest.mark.parametrize("amount", [0, -5])
def test_database_checks_amount_is_positive(ctx, amount):
    count = transfer_count()
    # The same statement with a positive amount is accepted (then rolled back) …
    with db.engine.connect() as conn:
        with conn.begin() as tx:
            conn.execute(RAW_INSERT, _raw_transfer_values(1))
            assert conn.execute(text("SELECT COUNT(*) FROM transfers")).scalar_one() == count + 1
            tx.rollback()
    # … so it is the amount, and only the amount, that the database refuses.
    with pytest.raises(exc.IntegrityError) as refused:
        with write_transaction():
            db.session.execute(RAW_INSERT, _raw_transfer_values(amount))
    assert "amount_positive" in str(refused.value)
    fresh()
    assert transfer_count() == count


@pytest.mark.parametrize("amount", [0, -1, -100, True, False, 1.5, 2.0, "10", None])
def test_service_refuses_amounts_that_are_not_positive_integers(ctx, amount):
    household = blm_households(1)[0]
    account_id = ledger.household_account(household.id).id
    h0, count = balance_of(account_id), transfer_count()
    fresh()
    with pytest.raises(Invalid) as refused:
        with write_transaction():
            ledger.transfer(debit=ledger.village_account(household.village_id, "issuance"),
                            credit=ledger.household_account(household.id), amount=amount, code="award",
                            idempotency_key=key())
    assert refused.value.status == 422 and "amount" in refused.value.fields
    fresh()
    assert balance_of(account_id) == h0 and transfer_count() == count


# --- spending: never below zero ----------------------------------------------------------------

def test_spending_beyond_the_balance_is_refused_and_changes_nothing(ctx):
    household = blm_households(1)[0]
    store = first_store()
    account = set_balance(household, 25)
    store_account_id = ledger.store_account(store.id).id
    s0, count = balance_of(store_account_id), transfer_count()
    redemptions = db.session.scalar(select(func.count()).select_from(Redemption))
    item = db.session.scalar(select(Item).where(Item.store_id == store.id, Item.points > 25, Item.stock > 0))
    assert item is not None, "the demo store should have an item dearer than 25 points"
    stock = item.stock
    item_id = item.id
    fresh()

    with pytest.raises(InsufficientPoints) as refused:
        spend(household, 26, store)
    assert refused.value.status == 422
    with pytest.raises(InsufficientPoints):
        with write_transaction():
            redeem(household, store, items=[(db.session.get(Item, item_id), 1)])

    fresh()
    assert balance_of(account.id) == 25
    assert balance_of(store_account_id) == s0
    assert transfer_count() == count
    assert db.session.scalar(select(func.count()).select_from(Redemption)) == redemptions
    assert db.session.get(Item, item_id).stock == stock, "a refused redemption must not take stock"

    # Spending exactly the balance is allowed and leaves zero; then even 1 point is refused.
    household = db.session.get(Household, household.id)
    spend(household, 25)
    fresh()
    assert balance_of(account.id) == 0
    assert balance_of(store_account_id) == s0 + 25
    with pytest.raises(InsufficientPoints):
        spend(household, 1)
    fresh()
    assert balance_of(account.id) == 0


def test_a_deduction_may_go_below_zero_and_then_spending_is_blocked_until_positive(ctx):
    household = blm_households(1)[0]
    account = set_balance(household, 5)

    deduct(household, 20)
    fresh()
    assert balance_of(account.id) == -15, "a deduction is never refused for want of points"

    with pytest.raises(InsufficientPoints):
        spend(household, 1)
    fresh()
    assert balance_of(account.id) == -15

    award(household, 15)
    fresh()
    assert balance_of(account.id) == 0
    with pytest.raises(InsufficientPoints):
        spend(household, 1)

    award(household, 3)
    spend(household, 3)
    fresh()
    assert balance_of(account.id) == 0


# --- idempotency -----------------------------------------------------------------------------

def test_same_key_same_transfer_replays_and_moves_points_once(ctx):
    household = blm_households(1)[0]
    account_id = ledger.household_account(household.id).id
    h0, count = balance_of(account_id), transfer_count()
    scores0 = scores_of(household.id)
    the_key = key("idem")
    fresh()

    first = award(household, 12, idempotency_key=the_key)
    second = award(household, 12, idempotency_key=the_key)
    third = award(household, 12, idempotency_key=the_key)

    assert not first.replayed
    assert second.replayed and third.replayed
    assert second.transfer.id == first.transfer.id == third.transfer.id
    fresh()
    assert transfer_count() == count + 1
    assert db.session.scalar(select(func.count()).select_from(Transfer)
                             .where(Transfer.idempotency_key == the_key)) == 1
    assert balance_of(account_id) == h0 + 12
    assert scores_of(household.id)["all"] == scores0.get("all", 0) + 12


def test_same_key_different_transfer_is_a_409_conflict(ctx):
    household, other = blm_households(2)
    account_id = ledger.household_account(household.id).id
    the_key = key("idem")
    award(household, 12, idempotency_key=the_key)
    fresh()
    h0, count = balance_of(account_id), transfer_count()

    with pytest.raises(IdempotencyConflict) as conflict:
        award(household, 13, idempotency_key=the_key)
    assert conflict.value.status == 409 and conflict.value.code == "idempotency_conflict"
    with pytest.raises(IdempotencyConflict):
        award(other, 12, idempotency_key=the_key)  # same amount, another household
    with pytest.raises(IdempotencyConflict):
        with write_transaction():  # same accounts and amount, another code
            ledger.transfer(debit=ledger.village_account(household.village_id, "issuance"),
                            credit=ledger.household_account(household.id), amount=12, code="adjustment",
                            idempotency_key=the_key)
    fresh()
    assert balance_of(account_id) == h0 and transfer_count() == count


# --- reversals -------------------------------------------------------------------------------

def test_reversing_an_award_restores_balances_and_every_period_score(ctx):
    household = blm_households(1)[0]
    account_id = ledger.household_account(household.id).id
    issuance_id = ledger.village_account(household.village_id, "issuance").id
    h0, i0, scores0 = balance_of(account_id), balance_of(issuance_id), scores_of(household.id)
    fresh()

    original = award(household, 40).transfer
    fresh()
    periods = periods_of(original.created_at)
    after_award = scores_of(household.id)
    for period in periods:
        assert after_award[period] == scores0.get(period, 0) + 40
    assert balance_of(account_id) == h0 + 40

    with write_transaction():
        posted = ledger.reverse(db.session.get(Transfer, original.id), reason="wrong household",
                                idempotency_key=key("rev"))
    assert not posted.replayed
    reversal = posted.transfer
    assert reversal.code == "reversal" and reversal.reverses_id == original.id and reversal.amount == 40
    assert (reversal.debit_account_id, reversal.credit_account_id) == (account_id, issuance_id)
    fresh()
    assert balance_of(account_id) == h0 and balance_of(issuance_id) == i0
    after_reversal = scores_of(household.id)
    assert {p: after_reversal.get(p, 0) for p in periods} == {p: scores0.get(p, 0) for p in periods}
    assert len(periods) == 4 and periods[-1] == "all"


def test_reversing_a_back_dated_award_restores_the_score_of_its_own_month(ctx):
    household = blm_households(1)[0]
    past = utcnow() - timedelta(days=70)
    past_periods, now_periods = periods_of(past), periods_of(utcnow())
    assert past_periods[0] != now_periods[0]
    scores0 = scores_of(household.id)
    fresh()

    original = award(household, 9, at=past).transfer
    fresh()
    assert scores_of(household.id)[past_periods[0]] == scores0.get(past_periods[0], 0) + 9
    with write_transaction():
        ledger.reverse(db.session.get(Transfer, original.id), reason="entered twice", idempotency_key=key())
    fresh()
    after = scores_of(household.id)
    # Every period goes back to what it was: the award's old month, and this month untouched.
    assert {p: after.get(p, 0) for p in set(past_periods) | set(now_periods)} == \
        {p: scores0.get(p, 0) for p in set(past_periods) | set(now_periods)}


def test_reversing_a_deduction_gives_the_points_and_the_score_back(ctx):
    household = blm_households(1)[0]
    account_id = ledger.household_account(household.id).id
    h0, scores0 = balance_of(account_id), scores_of(household.id)
    fresh()
    original = deduct(household, 30).transfer
    fresh()
    assert balance_of(account_id) == h0 - 30
    assert scores_of(household.id)["all"] == scores0.get("all", 0) - 30
    with write_transaction():
        ledger.reverse(db.session.get(Transfer, original.id), reason="objection upheld", idempotency_key=key())
    fresh()
    assert balance_of(account_id) == h0
    assert {p: scores_of(household.id).get(p, 0) for p in periods_of(original.created_at)} == \
        {p: scores0.get(p, 0) for p in periods_of(original.created_at)}


def test_a_transfer_is_reversed_only_once(ctx):
    household = blm_households(1)[0]
    account_id = ledger.household_account(household.id).id
    original_id = award(household, 11).transfer.id
    first_key = key("rev")
    with write_transaction():
        first = ledger.reverse(db.session.get(Transfer, original_id), reason="mistake", idempotency_key=first_key)
    fresh()
    h1, count = balance_of(account_id), transfer_count()
    scores1 = scores_of(household.id)
    fresh()

    # Another reversal, even under a new key, is refused with 409 …
    with pytest.raises(AlreadyReversed) as refused:
        with write_transaction():
            ledger.reverse(db.session.get(Transfer, original_id), reason="again", idempotency_key=key("rev2"))
    assert refused.value.status == 409 and refused.value.code == "already_reversed"
    # … the same request repeated (same key) is a replay of the first reversal …
    with write_transaction():
        again = ledger.reverse(db.session.get(Transfer, original_id), reason="mistake", idempotency_key=first_key)
    assert again.replayed and again.transfer.id == first.transfer.id
    # … and a reversal cannot itself be reversed.
    with pytest.raises(Invalid) as not_reversible:
        with write_transaction():
            ledger.reverse(db.session.get(Transfer, first.transfer.id), reason="undo the undo",
                           idempotency_key=key("rev3"))
    assert not_reversible.value.code == "not_reversible"

    fresh()
    assert balance_of(account_id) == h1
    assert transfer_count() == count
    assert scores_of(household.id) == scores1
    assert db.session.scalar(select(func.count()).select_from(Transfer)
                             .where(Transfer.reverses_id == original_id)) == 1


def test_a_reversal_needs_a_reason(ctx):
    household = blm_households(1)[0]
    original_id = award(household, 2).transfer.id
    count = transfer_count()
    fresh()
    for reason in ("", "   "):
        with pytest.raises(Invalid):
            with write_transaction():
                ledger.reverse(db.session.get(Transfer, original_id), reason=reason, idempotency_key=key())
    fresh()
    assert transfer_count() == count


def test_reversing_a_redemption_restores_the_balance_but_not_the_score(ctx):
    household = blm_households(1)[0]
    store = first_store()
    account = set_balance(household, 50)
    store_account_id = ledger.store_account(store.id).id
    s0, scores0 = balance_of(store_account_id), scores_of(household.id)
    fresh()

    redemption_id = spend(household, 35, store).id
    fresh()
    assert balance_of(account.id) == 15 and balance_of(store_account_id) == s0 + 35
    assert scores_of(household.id) == scores0, "spending never lowers a score"

    paid = db.session.scalar(select(Transfer).where(Transfer.redemption_id == redemption_id))
    assert paid.code == "redemption" and paid.amount == 35
    with write_transaction():
        reversal = ledger.reverse(db.session.get(Transfer, paid.id), reason="goods returned",
                                  idempotency_key=key()).transfer
    assert reversal.redemption_id == redemption_id
    fresh()
    assert balance_of(account.id) == 50 and balance_of(store_account_id) == s0
    assert scores_of(household.id) == scores0, "undoing a purchase must not raise the score either"


# --- verify ----------------------------------------------------------------------------------

def test_verify_is_clean_on_the_demo_data(ctx):
    report = verify()
    assert report.ok, report.discrepancies
    assert report.transfers == transfer_count() > 500
    assert report.accounts == db.session.scalar(select(func.count()).select_from(Account))
    assert report.villages == 2
    assert report.score_rows == db.session.scalar(select(func.count()).select_from(HouseholdScore)) > 0


def _corrupt(sql: str, **params) -> None:
    with write_transaction():
        db.session.execute(text(sql), params)
    fresh()


def test_verify_reports_a_corrupted_cached_balance_and_the_village_sum(ctx):
    household = blm_households(1)[0]
    account_id = ledger.household_account(household.id).id
    village_id = household.village_id
    _corrupt("UPDATE accounts SET balance = balance + 1 WHERE id = :id", id=account_id)
    try:
        report = verify()
        assert not report.ok
        assert any(line.startswith(f"account {account_id} (household)") for line in report.discrepancies), \
            report.discrepancies
        assert f"village {village_id}: balances sum to 1, not 0" in report.discrepancies
        assert len(report.discrepancies) == 2, report.discrepancies
    finally:
        _corrupt("UPDATE accounts SET balance = balance - 1 WHERE id = :id", id=account_id)
    assert verify().ok


def test_verify_reports_a_corrupted_score(ctx):
    household = blm_households(1)[0]
    period = db.session.scalar(select(HouseholdScore.period).where(HouseholdScore.household_id == household.id,
                                                                   HouseholdScore.period != "all"))
    _corrupt("UPDATE household_scores SET score = score + 3 WHERE household_id = :h AND period = :p",
             h=household.id, p=period)
    try:
        report = verify()
        assert len(report.discrepancies) == 1, report.discrepancies
        assert report.discrepancies[0].startswith(f"household {household.id} period {period}: score ")
    finally:
        _corrupt("UPDATE household_scores SET score = score - 3 WHERE household_id = :h AND period = :p",
                 h=household.id, p=period)
    assert verify().ok


def test_verify_reports_a_missing_score_row(ctx):
    household = blm_households(1)[0]
    row = db.session.execute(select(HouseholdScore.__table__).where(HouseholdScore.household_id == household.id,
                                                                    HouseholdScore.period == "all")).one()
    assert row.score != 0
    _corrupt("DELETE FROM household_scores WHERE household_id = :h AND period = 'all'", h=household.id)
    try:
        report = verify()
        assert report.discrepancies == [f"household {household.id} period all: no score row, expected {row.score}"]
    finally:
        with write_transaction():
            db.session.execute(HouseholdScore.__table__.insert().values(**row._asdict()))
        fresh()
    assert verify().ok


@pytest.fixture
def scratch_app(databases, tmp_path):
    """An app on its own copy of the demo database, for corruption that cannot be undone
    (transfers are append-only), dropped afterwards without the clean-ledger check."""
    from moralbank import create_app

    uri = databases.fresh(tmp_path, seed=True)
    application = create_app({"SQLALCHEMY_DATABASE_URI": uri, "TESTING": True,
                              "SECRET_KEY": "scratch-secret-key-that-is-long-enough-0123456789",
                              "RATELIMIT_STORAGE_URI": "memory://"})
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()
    databases.drop(uri)


def test_verify_reports_a_reversal_that_does_not_mirror_its_original_and_a_cross_village_transfer(scratch_app):
    household = blm_households(1)[0]
    xlc_household = db.session.scalar(select(Household).where(Household.village_id == village_by_code("XLC").id))
    original = db.session.scalar(select(Transfer).where(Transfer.code == "award",
                                                        Transfer.credit_account_id ==
                                                        ledger.household_account(household.id).id))
    xlc_account = ledger.household_account(xlc_household.id).id
    params = {"v": original.village_id, "d": original.credit_account_id, "c": original.debit_account_id,
              "a": original.amount + 1, "o": original.id, "at": utcnow().replace(tzinfo=None), "x": xlc_account}
    _corrupt("INSERT INTO transfers (village_id, debit_account_id, credit_account_id, amount, code,"
             " idempotency_key, reverses_id, created_at) VALUES (:v, :d, :c, :a, 'reversal', 'bad-rev', :o, :at)",
             **params)
    _corrupt("INSERT INTO transfers (village_id, debit_account_id, credit_account_id, amount, code,"
             " idempotency_key, created_at) VALUES (:v, :d, :x, 1, 'adjustment', 'cross', :at)", **params)
    bad_reversal = db.session.scalar(select(Transfer.id).where(Transfer.idempotency_key == "bad-rev"))
    cross = db.session.scalar(select(Transfer.id).where(Transfer.idempotency_key == "cross"))
    report = verify()
    assert f"transfer {bad_reversal}: does not mirror the transfer {original.id} it reverses" in report.discrepancies
    assert any(line.startswith(f"transfer {cross}: village {original.village_id} but accounts in villages")
               for line in report.discrepancies), report.discrepancies


# --- flask ledger verify ---------------------------------------------------------------------

def test_cli_ledger_verify_exits_0_with_counts_on_clean_data(app):
    with app.app_context():
        report = verify()
        db.session.remove()
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "DISCREPANCY" not in result.output
    assert f"{report.transfers} transfers, {report.accounts} accounts, {report.villages} villages, " \
           f"{report.score_rows} score rows: consistent" in result.output


def test_cli_ledger_verify_exits_1_and_lists_discrepancies(app):
    with app.app_context():
        household = blm_households(1)[0]
        account_id = ledger.household_account(household.id).id
        village_id = household.village_id
        db.session.remove()
        _corrupt("UPDATE accounts SET balance = balance + 1 WHERE id = :id", id=account_id)
    try:
        result = app.test_cli_runner().invoke(args=["ledger", "verify"])
        assert result.exit_code == 1, result.output
        lines = result.output.splitlines()
        assert any(line.startswith(f"DISCREPANCY account {account_id} (household)") for line in lines), lines
        assert f"DISCREPANCY village {village_id}: balances sum to 1, not 0" in lines
        assert lines[-1].endswith(": 2 discrepancies")
    finally:
        with app.app_context():
            _corrupt("UPDATE accounts SET balance = balance - 1 WHERE id = :id", id=account_id)
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
