"""Offline vouchers: points a household holds (``ledger.holds``) for one store, signed by the
village's key so a shop without a network can check them; the village keys; and the conflicts a
second, different sale of one voucher leaves for the committee."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, utcnow
from ..extensions import db
from .models import BigId


class OfflineKey(db.Model):
    """A village's signing key for offline vouchers (ECDSA P-256), made on first need.

    The private key is stored only encrypted (PKCS#8, with a key derived from ``SECRET_KEY``);
    it never leaves the server. The public key is what every shop's page verifies with.
    """

    __tablename__ = "offline_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), unique=True)
    #: JOSE name of the algorithm: ES256 (ECDSA P-256 with SHA-256)
    alg: Mapped[str] = mapped_column(String(16), default="ES256")
    #: the public key as a JWK (JSON text: kty, crv, x, y)
    public_jwk: Mapped[str] = mapped_column(String(400))
    #: the private key, PKCS#8 PEM encrypted with a key derived from SECRET_KEY
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OfflineVoucher(db.Model):
    """Up to ``points`` of a household for one store, held until a sale posts it or it expires.

    A voucher is spent at most once: the first synced sale claims it by a conditional UPDATE of
    ``sale_digest``; the same sale again is a replay, a different one a conflict.
    """

    __tablename__ = "offline_vouchers"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("sold_points IS NULL OR (sold_points > 0 AND sold_points <= points)", name="sold_within"),
        CheckConstraint("(sale_digest IS NULL) = (synced_at IS NULL)", name="sale_pair"),
        UniqueConstraint("village_id", "code", name="uq_offline_vouchers_village_code"),
        Index("ix_offline_vouchers_store_open", "store_id", "sale_digest"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    #: the hold of the points (set in the transaction that makes the voucher)
    hold_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("holds.id"), unique=True)
    #: 8 digits a clerk can type (unique in the village)
    code: Mapped[str] = mapped_column(String(12))
    #: PBKDF2 of the code with ``code_salt``: what a shop's page checks a typed code against offline
    code_check: Mapped[str] = mapped_column(String(64))
    code_salt: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: a sale taken after this is refused; the hold itself lasts a grace period longer
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    #: SHA-256 of the first synced sale (points, items, taken_at); NULL while unused
    sale_digest: Mapped[Optional[str]] = mapped_column(String(64))
    sold_points: Mapped[Optional[int]] = mapped_column()
    #: when the shop took the voucher (its device's clock) and when the sale reached the server
    taken_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    synced_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    clerk_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    redemption_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("redemptions.id"))
    #: items sold beyond the stock the server knew (the goods were gone: flagged, not refused)
    stock_short: Mapped[int] = mapped_column(default=0)


class OfflineConflict(db.Model):
    """A second, different sale of a voucher already spent: refused, and listed for the committee."""

    __tablename__ = "offline_conflicts"
    __table_args__ = (UniqueConstraint("voucher_id", "sale_digest", name="uq_offline_conflicts_voucher_sale"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    voucher_id: Mapped[int] = mapped_column(BigId, ForeignKey("offline_vouchers.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    clerk_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    points: Mapped[int] = mapped_column()
    #: the refused sale's items as the shop sent them
    items: Mapped[Optional[list]] = mapped_column(JSON)
    taken_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    sale_digest: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
