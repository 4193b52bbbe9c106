"""Household scores per period, kept by the ledger in the same transaction as each posting.

Rankings and stars read these rows through an index; they never sum the ledger.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime
from ..extensions import db


class BoardVersion(db.Model):
    """A village's board version: bumped in the transaction of every posting that changes a score
    (and of every published ranking), so the public board and ranking answer a conditional GET
    with the version as their ETag and read nothing else when it has not changed."""

    __tablename__ = "board_versions"
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


class HouseholdScore(db.Model):
    """Score of one household in one period: ``2026-11``, ``2026-Q4``, ``2026`` or ``all``."""

    __tablename__ = "household_scores"
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    hamlet_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    #: points earned minus points deducted in the period (spending never lowers it)
    score: Mapped[int] = mapped_column(default=0)
    #: when the score reached its current value (ties rank the earlier first)
    reached_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Rankings read (village or hamlet, period) in score order, best first, earliest first.
Index("ix_household_scores_rank", HouseholdScore.village_id, HouseholdScore.period,
      HouseholdScore.score.desc(), HouseholdScore.reached_at, HouseholdScore.household_id)
Index("ix_household_scores_hamlet_rank", HouseholdScore.hamlet_id, HouseholdScore.period,
      HouseholdScore.score.desc(), HouseholdScore.reached_at, HouseholdScore.household_id)


class RankingSnapshot(db.Model):
    """A published ranking: frozen at publication, shown on the notice board; never changed."""

    __tablename__ = "ranking_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    #: a hamlet's own ranking, or NULL for the whole village
    hamlet_id: Mapped[Optional[int]] = mapped_column(ForeignKey("areas.id"))
    period: Mapped[str] = mapped_column(String(8))
    #: a heading for the notice board, e.g. 2026年11月 红榜
    title: Mapped[str] = mapped_column(String(64))
    published_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RankingSnapshotEntry(db.Model):
    """One line of a published ranking, with the masked label as it was published."""

    __tablename__ = "ranking_snapshot_entries"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("ranking_snapshots.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(primary_key=True)
    #: the snapshot's village (every table that grows carries it: docs/scale.md)
    village_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    #: masked head name (张*华), as published
    label: Mapped[str] = mapped_column(String(32))
    hamlet: Mapped[str] = mapped_column(String(64))
    score: Mapped[int] = mapped_column()
    stars: Mapped[int] = mapped_column()
