"""Stores that accept points, their items, redemptions and settlements."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db

BigId = BigInteger().with_variant(Integer, "sqlite")


class Store(db.Model):
    """积分超市 or a partner shop of a village."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[Optional[str]] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(default=True)

    items: Mapped[list["Item"]] = relationship(back_populates="store", order_by="Item.id")


class Item(db.Model):
    """Goods with a points price and a stock count."""

    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("stock >= 0", name="stock_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: unit, e.g. 袋, 瓶, 桶
    unit: Mapped[str] = mapped_column(String(8), default="件")
    points: Mapped[int] = mapped_column()
    stock: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)

    store: Mapped[Store] = relationship(back_populates="items")


class Redemption(db.Model):
    """A household spending points at a store (one transfer household → store)."""

    __tablename__ = "redemptions"
    __table_args__ = (CheckConstraint("points > 0", name="points_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    points: Mapped[int] = mapped_column()
    clerk_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    #: the payment code (or card unlock code) that authorised it
    code_id: Mapped[Optional[int]] = mapped_column(ForeignKey("redemption_codes.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    #: the household's balance just after it, from the ledger's guarded debit (NULL on rows made before 0005)
    balance_after: Mapped[Optional[int]] = mapped_column()

    lines: Mapped[list["RedemptionLine"]] = relationship(order_by="RedemptionLine.id")


class RedemptionLine(db.Model):
    """One item line of a redemption (none when the clerk entered points only)."""

    __tablename__ = "redemption_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    redemption_id: Mapped[int] = mapped_column(BigId, ForeignKey("redemptions.id"), index=True)
    #: the redemption's village (every table that grows carries it: docs/scale.md)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    #: item name and unit price at the time, for receipts
    name: Mapped[str] = mapped_column(String(64))
    unit_points: Mapped[int] = mapped_column()
    quantity: Mapped[int] = mapped_column()


class Settlement(db.Model):
    """The committee reimbursing a store for the points redeemed there in a period."""

    __tablename__ = "settlements"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        # A store is settled once per period.
        UniqueConstraint("store_id", "period", name="uq_settlements_store_period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    #: the period settled, e.g. 2026-11
    period: Mapped[str] = mapped_column(String(8))
    points: Mapped[int] = mapped_column()
    #: money paid, in fen (分), as agreed by the village
    amount_fen: Mapped[Optional[int]] = mapped_column()
    settled_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CodeState(StrEnum):
    """Where a payment code stands. No column holds it: it follows from ``consumed_at`` and
    ``expires_at`` (``stores.codes.code_state``)."""

    OPEN = "open"
    USED = "used"
    EXPIRED = "expired"
    #: ended by a newer code of its household (the mark: it expires before it was made)
    REPLACED = "replaced"


class RedemptionCode(db.Model):
    """A one-time payment code of a household: a QR (URL with the token) and a short number.

    It carries no balance; the token (≥ 128 random bits) is stored only as its
    SHA-256. It is consumed by the conditional UPDATE that also names the
    redemption, in the redemption's own transaction.
    """

    __tablename__ = "redemption_codes"
    __table_args__ = (
        UniqueConstraint("village_id", "code", name="uq_redemption_codes_village_code"),
        Index("ix_redemption_codes_household", "household_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    #: the short number a clerk can type (8 digits, unique in the village)
    code: Mapped[str] = mapped_column(String(12))
    #: hex SHA-256 of the token the QR carries
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: 128 random bits; the token is HMAC(SECRET_KEY, salt), so the server can redraw the QR
    #: from the short number while the database alone reveals no token
    salt: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: who asked for it (the resident, or the clerk who unlocked a paper card with its PIN)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    #: a code made from a paper card at a shop, for that store only
    card_id: Mapped[Optional[int]] = mapped_column(ForeignKey("household_cards.id"))
    store_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stores.id"))
    consumed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class HouseholdCard(db.Model):
    """A paper passbook card for a household without a phone: a long-lived QR plus a PIN.

    Revocable and re-issuable; the PIN is hashed (argon2id) and attempts are throttled.
    """

    __tablename__ = "household_cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    pin_hash: Mapped[str] = mapped_column(String(255))
    issued_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    #: failed PIN attempts in a row; the card locks at the limit until the committee re-issues it
    failed_pins: Mapped[int] = mapped_column(default=0)
