"""Audit log entries. Append-only: the database rejects UPDATE and DELETE (see migrations)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, utcnow
from ..extensions import db


class AuditEntry(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_village_time", "village_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    #: the village the action concerns (NULL for county-wide actions)
    village_id: Mapped[Optional[int]] = mapped_column(ForeignKey("areas.id"))
    #: who did it (NULL for the CLI or cron)
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), index=True)
    #: what was done, a dotted verb: award.approve, ledger.reversal, user.create, …
    action: Mapped[str] = mapped_column(String(48))
    #: what it was done to
    target_type: Mapped[Optional[str]] = mapped_column(String(32))
    target_id: Mapped[Optional[int]] = mapped_column()
    #: details (reason, amounts, changed settings)
    detail: Mapped[Optional[dict]] = mapped_column(JSON)
    #: the client address, or "cli"
    source: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
