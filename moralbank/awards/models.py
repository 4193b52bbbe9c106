"""Rules (versioned catalogue items) and awards (proposals to credit or debit a household)."""
from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Optional

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db
from ..i18n import N_
from ..labels import CATEGORIES  # noqa: F401  (re-exported: the words live in labels)


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


class RuleStatus(StrEnum):
    """Where a catalogue item stands: a ``draft`` waits for a villagers' meeting (when the village
    says rule changes need one), ``in_force`` may be awarded, ``retired`` no longer (retired by the
    committee or a meeting, or replaced by a newer version)."""

    DRAFT = "draft"
    IN_FORCE = "in_force"
    RETIRED = "retired"


class MeetingKind(StrEnum):
    """村民会议 (every household) or 村民代表会议 (the representatives)."""

    ASSEMBLY = "assembly"
    REPRESENTATIVES = "representatives"


MEETING_KINDS = {MeetingKind.ASSEMBLY: N_("村民会议"), MeetingKind.REPRESENTATIVES: N_("村民代表会议")}


class Rule(db.Model):
    """One version of a catalogue item. Editing a rule adds a version; awards keep theirs."""

    __tablename__ = "rules"
    __table_args__ = (
        CheckConstraint("points <> 0", name="points_nonzero"),
        CheckConstraint("cap_count IS NULL OR cap_count > 0", name="cap_count"),
        CheckConstraint("(cap_count IS NULL) = (cap_period IS NULL)", name="cap_pair"),
        Index("ix_rules_village_active", "village_id", "active"),
        CheckConstraint(f"status IN ({','.join(repr(status.value) for status in RuleStatus)})", name="status"),
        # only an item in force is active (may be awarded)
        CheckConstraint("(status = 'in_force' AND active) OR (status <> 'in_force' AND NOT active)",
                        name="active_in_force"),
        # 一票否决 items are deductions
        CheckConstraint("NOT veto OR points < 0", name="veto_deduction"),
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
    #: a RuleStatus value; ``active`` is true exactly when it is ``in_force``
    status: Mapped[str] = mapped_column(String(10), default=RuleStatus.IN_FORCE, server_default="in_force")
    #: the villagers' meeting that adopted this version (NULL: made without one)
    adopted_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("meetings.id"), index=True)
    #: 一票否决: a posted award under it vetoes the household's honours for the village's veto period
    veto: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: this version proposes retiring the item (a draft until a meeting adopts it)
    retires: Mapped[bool] = mapped_column(default=False, server_default=false())

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


class Meeting(db.Model):
    """A villagers' meeting (村民会议) or representatives' meeting (村民代表会议) that voted on the
    catalogue's drafts. Append-only: a meeting held is never edited; the drafts it adopted point
    to it (``Rule.adopted_by_id``)."""

    __tablename__ = "meetings"
    __table_args__ = (
        CheckConstraint(f"kind IN ({','.join(repr(kind.value) for kind in MeetingKind)})", name="kind"),
        CheckConstraint("entitled > 0 AND present >= 0 AND present <= entitled", name="attendance"),
        CheckConstraint("votes_for >= 0 AND votes_against >= 0 AND votes_abstain >= 0 "
                        "AND votes_for + votes_against + votes_abstain <= present", name="votes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: the local date it was held
    held_on: Mapped[date] = mapped_column()
    #: a MeetingKind value
    kind: Mapped[str] = mapped_column(String(16))
    #: households (assembly) or representatives entitled to attend, and those present
    entitled: Mapped[int] = mapped_column()
    present: Mapped[int] = mapped_column()
    votes_for: Mapped[int] = mapped_column()
    votes_against: Mapped[int] = mapped_column()
    votes_abstain: Mapped[int] = mapped_column()
    #: the minutes (会议记录): a re-encoded photo or a PDF, relative to the upload folder
    minutes_path: Mapped[Optional[str]] = mapped_column(String(255))
    recorded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def kind_label(self) -> str:
        return MEETING_KINDS.get(self.kind, self.kind)


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
