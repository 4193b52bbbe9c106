"""Two-phase transfers (TigerBeetle's names): a **pending** transfer holds points, and the hold is
later **posted** (in full or for less: the rest returns) or **voided** (all of it returns).

* ``place``: one ``pending`` transfer household → the village's hold account (guarded: a hold
  never takes the household below zero). The household's balance is what it can spend, so it
  already excludes what is held; ``held`` says how much is.
* ``post``: the hold ends and pays ``amount`` ≤ what it held to ``credit`` (a store): one ``post``
  transfer hold → household of the whole hold, and in the same transaction the payment
  household → credit (code ``redemption``), not guarded since the points were held for it. So a
  redemption paid by a hold is an ordinary redemption (its statement, settlement and reversal are
  the store's as for any other), and what was not spent stays with the household.
* ``void``: one ``void`` transfer hold → household of the whole hold.

A hold is resolved exactly once: the conditional UPDATE of its ``status`` (only from
``pending``) lets one of any number of racing resolutions through, and the resolving transfer's
idempotency key ``hold:<id>:end`` is unique in the village, so the database itself refuses a
second ``post`` or ``void`` transfer. ``verify`` (registered below) checks that every village's
hold account holds exactly its pending holds and that every hold's transfers match its state.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Optional

from flask_babel import gettext as _
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, require_write_transaction, utcnow
from ..errors import Conflict, Invalid
from ..extensions import db
from . import hooks
from . import service as ledger
from .models import Account, BigId, Transfer

HOLD_STATES = ("pending", "posted", "voided")


class HoldResolved(Conflict):
    """The hold was already posted or voided."""

    code = "hold_resolved"


class Hold(db.Model):
    """Points of a household held by a pending transfer until posted or voided."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending','posted','voided')", name="status"),
        # Resolved once: a resolved hold has its time and its resolving transfer, a pending one neither.
        CheckConstraint("(status = 'pending') = (resolved_at IS NULL)", name="resolved_at"),
        CheckConstraint("(status = 'posted') = (posted_amount IS NOT NULL)", name="posted_amount"),
        CheckConstraint("posted_amount IS NULL OR (posted_amount > 0 AND posted_amount <= amount)",
                        name="posted_within"),
        Index("ix_holds_status_expires", "status", "expires_at"),
        Index("ix_holds_household_status", "household_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: the village (tenant)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    #: points held, > 0
    amount: Mapped[int] = mapped_column()
    #: pending, posted or voided
    status: Mapped[str] = mapped_column(String(8), default="pending")
    #: what the post paid (≤ amount; the rest returned); NULL unless posted
    posted_amount: Mapped[Optional[int]] = mapped_column()
    #: the ``pending`` transfer that placed the hold
    pending_transfer_id: Mapped[int] = mapped_column(BigId, ForeignKey("transfers.id"), unique=True)
    #: the ``post`` or ``void`` transfer that ended it (written just after the claim, in its transaction)
    end_transfer_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("transfers.id"), unique=True)
    #: the redemption a post paid for
    redemption_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("redemptions.id"))
    #: after this the hold may be voided by ``flask ledger expire-holds``
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


# --- the hold account ----------------------------------------------------------------------------

def hold_account(village_id: int) -> Account:
    """The village's hold account, opened on first need (a racing opener finds the other's row)."""
    found = db.session.scalar(select(Account).where(Account.village_id == village_id, Account.kind == "hold"))
    if found is not None:
        return found
    dialect = db.session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(Account.__table__).values(village_id=village_id, kind="hold", balance=0)
                       .on_conflict_do_nothing())
    return db.session.scalar(select(Account).where(Account.village_id == village_id, Account.kind == "hold"))


def held(household_id: int) -> int:
    """Points of the household held by pending transfers (not in its balance)."""
    return int(db.session.scalar(select(func.coalesce(func.sum(Hold.amount), 0)).where(
        Hold.household_id == household_id, Hold.status == "pending")) or 0)


def locked(hold_id: int) -> Hold | None:
    """The hold read afresh with its row locked until the transaction ends (PostgreSQL): a caller that
    checks it is pending before acting (a shop's sync) then acts on what it saw, while a racing
    ``void`` waits for it (or it waits for the void and sees it)."""
    return db.session.scalar(select(Hold).where(Hold.id == hold_id).with_for_update()
                             .execution_options(populate_existing=True))


# --- the verbs -----------------------------------------------------------------------------------

def place(household_id: int, amount: int, *, expires_at: datetime, idempotency_key: str, actor=None,
          reason: str | None = None) -> Hold:
    """Hold ``amount`` points of a household (a ``pending`` transfer); 422 ``insufficient_points``."""
    require_write_transaction()
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise Invalid(_("积分数必须是正整数"), fields={"points": [_("必须是正整数")]})
    household = ledger.household_account(household_id)
    hold_acct = hold_account(household.village_id)
    posted = ledger.transfer(debit=household, credit=hold_acct, amount=amount, code="pending",
                             idempotency_key=idempotency_key, actor=actor, reason=reason)
    if posted.replayed:
        existing = db.session.scalar(select(Hold).where(Hold.pending_transfer_id == posted.transfer.id))
        if existing is not None:
            return existing
    hold = Hold(village_id=household.village_id, household_id=household_id, amount=amount, status="pending",
                pending_transfer_id=posted.transfer.id, expires_at=expires_at, created_at=posted.transfer.created_at)
    db.session.add(hold)
    db.session.flush()
    return hold


def _resolve(hold: Hold, status: str, posted_amount: int | None, now: datetime) -> None:
    """Claim the hold's resolution: only one caller ever moves it out of ``pending``."""
    table = Hold.__table__
    claimed = db.session.execute(update(table).where(table.c.id == hold.id, table.c.status == "pending")
                                 .values(status=status, posted_amount=posted_amount, resolved_at=now)
                                 .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise HoldResolved(_("这笔冻结的积分已经结清或退回"))


def _finish(hold: Hold, end: Transfer, **values) -> None:
    table = Hold.__table__
    db.session.execute(update(table).where(table.c.id == hold.id).values(end_transfer_id=end.id, **values)
                       .execution_options(synchronize_session=False))
    db.session.expire(hold)


def post(hold: Hold, amount: int, *, credit: Account, actor=None, reason: str | None = None,
         redemption_id: int | None = None, at: datetime | None = None) -> Transfer:
    """End the hold paying ``amount`` (1 … the hold) to ``credit``; the rest returns to the household.

    Returns the payment transfer (household → credit, code ``redemption``).
    """
    require_write_transaction()
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= hold.amount:
        raise Invalid(_("最多 %(n)s 分", n=hold.amount), code="over_limit", fields={"points": [str(hold.amount)]})
    now = at or utcnow()
    _resolve(hold, "posted", amount, now)
    household = ledger.household_account(hold.household_id)
    hold_acct = hold_account(hold.village_id)
    end = ledger.transfer(debit=hold_acct, credit=household, amount=hold.amount, code="post",
                          idempotency_key=f"hold:{hold.id}:end", actor=actor, reason=reason, at=now,
                          redemption_id=redemption_id)
    if end.replayed:
        raise HoldResolved(_("这笔冻结的积分已经结清或退回"))
    paid = ledger.transfer(debit=household, credit=credit, amount=amount, code="redemption",
                           idempotency_key=f"redemption:{redemption_id}" if redemption_id else f"hold:{hold.id}:paid",
                           actor=actor, reason=reason, redemption_id=redemption_id, at=now, unguarded=True)
    _finish(hold, end.transfer, redemption_id=redemption_id)
    return paid.transfer


def void(hold: Hold, *, actor=None, reason: str | None = None, at: datetime | None = None) -> Transfer:
    """End the hold returning all of it to the household (a ``void`` transfer)."""
    require_write_transaction()
    now = at or utcnow()
    _resolve(hold, "voided", None, now)
    end = ledger.transfer(debit=hold_account(hold.village_id), credit=ledger.household_account(hold.household_id),
                          amount=hold.amount, code="void", idempotency_key=f"hold:{hold.id}:end", actor=actor,
                          reason=reason, at=now)
    if end.replayed:
        raise HoldResolved(_("这笔冻结的积分已经结清或退回"))
    _finish(hold, end.transfer)
    return end.transfer


def expired_pending(now: datetime, *, limit: int = 1000) -> list[Hold]:
    """Pending holds whose ``expires_at`` has passed, oldest first (``expire-holds`` voids them)."""
    return list(db.session.scalars(select(Hold).where(Hold.status == "pending", Hold.expires_at <= now)
                                   .order_by(Hold.expires_at, Hold.id).limit(limit)))


# --- verify --------------------------------------------------------------------------------------

def _chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start:start + size]


@hooks.verify_check
def check_holds(report, accounts) -> None:
    """Every village's hold account holds exactly its pending holds; every hold's transfers match it."""
    rows = db.session.execute(select(Hold.id, Hold.village_id, Hold.household_id, Hold.amount, Hold.status,
                                     Hold.posted_amount, Hold.pending_transfer_id, Hold.end_transfer_id,
                                     Hold.redemption_id)).all()
    ids = sorted({i for row in rows for i in (row.pending_transfer_id, row.end_transfer_id) if i})
    transfers = {}
    for chunk in _chunks(ids):
        for t in db.session.execute(select(Transfer.id, Transfer.code, Transfer.amount, Transfer.debit_account_id,
                                           Transfer.credit_account_id).where(Transfer.id.in_(chunk))):
            transfers[t.id] = t
    # What each posted hold paid: its redemption's transfer, or (a post paying no redemption) the
    # transfer under the hold's own key ``hold:<id>:paid``.
    posted = [row for row in rows if row.status == "posted"]
    by_redemption: dict[int, int] = defaultdict(int)
    for chunk in _chunks(sorted({row.redemption_id for row in posted if row.redemption_id})):
        for redemption_id, amount in db.session.execute(
                select(Transfer.redemption_id, func.sum(Transfer.amount)).where(
                    Transfer.redemption_id.in_(chunk), Transfer.code == "redemption")
                .group_by(Transfer.redemption_id)):
            by_redemption[redemption_id] = int(amount)
    by_key: dict[tuple[int, str], int] = {}
    for chunk in _chunks([(row.village_id, f"hold:{row.id}:paid") for row in posted if not row.redemption_id]):
        for village_id, key, amount in db.session.execute(
                select(Transfer.village_id, Transfer.idempotency_key, Transfer.amount).where(
                    Transfer.idempotency_key.in_([key for _v, key in chunk]), Transfer.code == "redemption")):
            by_key[village_id, key] = amount
    pending_sum: dict[int, int] = defaultdict(int)
    for row in rows:
        report.counts["holds"] += 1
        if row.status == "pending":
            pending_sum[row.village_id] += row.amount
        placed = transfers.get(row.pending_transfer_id)
        if placed is None or placed.code != "pending" or placed.amount != row.amount \
                or accounts.get(placed.debit_account_id) != ("household", row.household_id):
            report.discrepancies.append(f"hold {row.id}: its pending transfer does not hold {row.amount} "
                                        f"of household {row.household_id}")
        end = transfers.get(row.end_transfer_id) if row.end_transfer_id else None
        expected = {"pending": None, "posted": "post", "voided": "void"}.get(row.status)
        if (end.code if end else None) != expected or (end is not None and end.amount != row.amount):
            report.discrepancies.append(f"hold {row.id} ({row.status}): ended by "
                                        f"{end.code if end else 'nothing'}, expected {expected or 'nothing'}")
        if row.status == "posted":
            paid = by_redemption.get(row.redemption_id, 0) if row.redemption_id else \
                by_key.get((row.village_id, f"hold:{row.id}:paid"), 0)
            if paid != row.posted_amount:
                report.discrepancies.append(f"hold {row.id}: posted {row.posted_amount} but paid {paid}")
    # Every hold account's balance is its village's pending holds; pending or void transfers
    # outside a hold are caught here too (they move a hold account's balance).
    for account_id, village_id, balance in db.session.execute(
            select(Account.id, Account.village_id, Account.balance).where(Account.kind == "hold")):
        if balance != pending_sum.get(village_id, 0):
            report.discrepancies.append(f"account {account_id} (hold): holds {balance} but the village's "
                                        f"pending holds are {pending_sum.get(village_id, 0)}")
