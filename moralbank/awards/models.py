"""Rules (versioned catalogue items) and awards (proposals to credit or debit a household)."""
from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db
from ..i18n import N_

CATEGORIES = {
    "hygiene": N_("美丽庭院"),
    "custom": N_("移风易俗"),
    "volunteer": N_("志愿服务"),
    "elders": N_("敬老爱幼"),
    "law": N_("律己守法"),
    "enterprise": N_("创业致富"),
    "deduction": N_("扣分"),
}


class AwardStatus(StrEnum):
    """Where an award stands: ``proposed`` → ``approved`` (public notice) → ``posted``, or
    ``rejected``; an objection during notice makes it ``disputed`` until decided again.
    A ``str``, so JSON and templates show the same words; the table's CHECK is built from it."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    DISPUTED = "disputed"
    POSTED = "posted"
    REJECTED = "rejected"


CAP_PERIODS = ("month", "quarter", "year")


class Rule(db.Model):
    """One version of a catalogue item. Editing a rule adds a version; awards keep theirs."""

    __tablename__ = "rules"
    __table_args__ = (
        CheckConstraint("points <> 0", name="points_nonzero"),
        CheckConstraint("cap_count IS NULL OR cap_count > 0", name="cap_count"),
        CheckConstraint("(cap_count IS NULL) = (cap_period IS NULL)", name="cap_pair"),
        Index("ix_rules_village_active", "village_id", "active"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    #: the id of the rule's first version; all versions share it
    family_id: Mapped[Optional[int]] = mapped_column(index=True)
    version: Mapped[int] = mapped_column(default=1)
    #: only the newest version is active; retired rules have no active version
    active: Mapped[bool] = mapped_column(default=True)
    #: a key of CATEGORIES
    category: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(64))
    #: points per unit: positive for conduct rewarded, negative for a deduction
    points: Mapped[int] = mapped_column()
    #: at most this many awards per household per cap_period (NULL = no cap)
    cap_count: Mapped[Optional[int]] = mapped_column()
    cap_period: Mapped[Optional[str]] = mapped_column(String(8))
    #: an award under this rule needs a photo
    photo_required: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def category_label(self) -> str:
        return CATEGORIES.get(self.category, self.category)


class Award(db.Model):
    """A proposal to credit (or debit) a household under one rule version."""

    __tablename__ = "awards"
    __table_args__ = (
        # The same text as migration 0001's: built from the enum, so a new status needs a migration.
        CheckConstraint(f"status IN ({','.join(repr(status.value) for status in AwardStatus)})", name="status"),
        CheckConstraint("quantity > 0", name="quantity"),
        Index("ix_awards_village_status", "village_id", "status"),
        Index("ix_awards_household_rule", "household_id", "rule_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"))
    quantity: Mapped[int] = mapped_column(default=1)
    #: rule points × quantity at proposal time (signed); what posting moves
    points: Mapped[int] = mapped_column()
    #: an AwardStatus value
    status: Mapped[str] = mapped_column(String(10), default=AwardStatus.PROPOSED)
    note: Mapped[Optional[str]] = mapped_column(Text)
    #: the day the conduct happened (local date)
    occurred_on: Mapped[date] = mapped_column()
    proposed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    #: end of public notice; posting happens at or after it
    notice_ends_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    posted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    #: why it was rejected
    decision_reason: Mapped[Optional[str]] = mapped_column(String(255))
    #: stored evidence photo (relative path under the upload folder)
    photo_path: Mapped[Optional[str]] = mapped_column(String(255))

    rule: Mapped[Rule] = relationship()
    household = relationship("Household")


class Objection(db.Model):
    """异议: a resident of the village objects to an award during its public notice."""

    __tablename__ = "objections"
    __table_args__ = (UniqueConstraint("award_id", "user_id", name="uq_objections_award_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    award_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), ForeignKey("awards.id"),
                                          index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvidencePhoto(db.Model):
    """A photo kept the moment a grid manager took it on the inspection sheet, before the sheet is
    filed: the form carries its id, so a sheet sent back for one wrong row loses no photo. Filing
    the sheet copies its path onto the awards of that household's row."""

    __tablename__ = "evidence_photos"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: who took it; only they may attach it to a sheet or see it before it is filed
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: stored photo (relative path under the upload folder), as ``Award.photo_path``
    path: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
