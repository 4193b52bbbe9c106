"""Accounts and transfers (TigerBeetle's vocabulary).

Every change of points is one Transfer from a debit account to a credit account.
Transfers are append-only: the ORM refuses to change or delete one, and the
database refuses too (triggers, see the migrations). A mistake is corrected by a
reversal transfer that names the original in ``reverses_id``, which is unique,
so a transfer is reversed at most once.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db

ACCOUNT_KINDS = ("household", "issuance", "sink", "store", "hold")
#: ``pending``, ``post`` and ``void`` are the two-phase transfers of ``ledger.holds`` (TigerBeetle's names)
TRANSFER_CODES = ("award", "deduction", "redemption", "reversal", "expiry", "settlement", "adjustment",
                  "pending", "post", "void")

BigId = BigInteger().with_variant(Integer, "sqlite")


class Account(db.Model):
    """A holder of points: a household, a store, or a village's issuance account or deduction sink.

    ``balance`` is a cache of the transfers; it changes only in the same
    transaction as a transfer (``ledger.service``), and ``verify`` checks it.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('household','issuance','sink','store','hold')", name="kind"),
        CheckConstraint(
            "(kind = 'household') = (household_id IS NOT NULL)"
            " AND (kind = 'store') = (store_id IS NOT NULL)",
            name="owner",
        ),
        # One issuance account and one sink per village.
        Index("uq_accounts_village_system", "village_id", "kind", unique=True,
              sqlite_where=db.text("kind IN ('issuance','sink')"),
              postgresql_where=db.text("kind IN ('issuance','sink')")),
        # One hold account per village (``ledger.holds``).
        Index("uq_accounts_village_hold", "village_id", unique=True,
              sqlite_where=db.text("kind = 'hold'"), postgresql_where=db.text("kind = 'hold'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the village (tenant)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: household, issuance (source of awarded points, goes negative), sink (deductions), store,
    #: hold (points held by pending transfers, ``ledger.holds``)
    kind: Mapped[str] = mapped_column(String(10))
    household_id: Mapped[Optional[int]] = mapped_column(ForeignKey("households.id"), unique=True)
    store_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stores.id"), unique=True)
    #: cached balance = credits − debits; see ``verify``
    balance: Mapped[int] = mapped_column(BigInteger, default=0)

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.kind} {self.balance}>"


class Transfer(db.Model):
    """One movement of points. Never updated, never deleted."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(
            "code IN ('award','deduction','redemption','reversal','expiry','settlement','adjustment',"
            "'pending','post','void')",
            name="code",
        ),
        CheckConstraint("(code = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_link"),
        UniqueConstraint("village_id", "idempotency_key", name="uq_transfers_village_key"),
        Index("ix_transfers_debit", "debit_account_id", "id"),
        Index("ix_transfers_credit", "credit_account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: the village (tenant) of both accounts
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    #: points moved, always > 0
    amount: Mapped[int] = mapped_column(BigInteger)
    #: why: award, deduction, redemption, reversal, expiry, settlement, adjustment; pending, post, void
    code: Mapped[str] = mapped_column(String(12))
    #: the client's key; the same key in a village names the same transfer
    idempotency_key: Mapped[str] = mapped_column(String(128))
    #: the award this transfer posts (award, deduction)
    award_id: Mapped[Optional[int]] = mapped_column(ForeignKey("awards.id"), index=True)
    #: the redemption this transfer pays
    redemption_id: Mapped[Optional[int]] = mapped_column(ForeignKey("redemptions.id"), index=True)
    #: the settlement this transfer belongs to
    settlement_id: Mapped[Optional[int]] = mapped_column(ForeignKey("settlements.id"), index=True)
    #: the transfer this one reverses; unique, so a transfer is reversed at most once
    reverses_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("transfers.id"), unique=True)
    #: who caused it (NULL for the CLI and cron)
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    #: free text shown in the household's history (reversal reason, rule title)
    reason: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    debit_account: Mapped[Account] = relationship(foreign_keys=[debit_account_id])
    credit_account: Mapped[Account] = relationship(foreign_keys=[credit_account_id])
    reverses: Mapped[Optional["Transfer"]] = relationship(remote_side=[id], foreign_keys=[reverses_id])

    def __repr__(self) -> str:
        return f"<Transfer {self.id} {self.code} {self.amount} {self.debit_account_id}->{self.credit_account_id}>"


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or delete a transfer."""


@event.listens_for(Transfer, "before_update")
def _refuse_update(mapper, connection, target):
    raise AppendOnlyError("transfers are append-only; correct a mistake with a reversal")


@event.listens_for(Transfer, "before_delete")
def _refuse_delete(mapper, connection, target):
    raise AppendOnlyError("transfers are append-only; correct a mistake with a reversal")
