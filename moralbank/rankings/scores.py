"""Keeping household scores per period as the ledger posts awards, deductions and reversals.

A score is points earned minus points deducted in a period; spending never
lowers it. Each posting updates four rows (month, quarter, year, all) in the
same transaction, by an upsert so concurrent postings for one household add up.
A reversal takes its original's effect back in the original's periods.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from ..database import UTCDateTime
from ..extensions import db
from ..periods import periods_of
from .models import HouseholdScore


def score_effect(transfer, debit, credit) -> tuple[int, int] | None:
    """(household account id, signed score change) of a transfer, or None if it changes no score."""
    if transfer.code == "award" and credit.kind == "household":
        return credit.id, transfer.amount
    if transfer.code == "deduction" and debit.kind == "household":
        return debit.id, -transfer.amount
    return None


def apply_transfer(transfer, *, debit, credit) -> None:
    """Update the period scores for one just-written transfer (called by the ledger only)."""
    original = transfer.reverses if transfer.code == "reversal" else None
    if original is not None:
        if original.code not in ("award", "deduction"):
            return
        effect = score_effect(original, credit, debit)  # a reversal swaps the accounts back
        if effect is None:
            return
        account = credit if effect[0] == credit.id else debit
        delta = -effect[1]
        moment = original.created_at
    else:
        effect = score_effect(transfer, debit, credit)
        if effect is None:
            return
        account = debit if effect[0] == debit.id else credit
        delta = effect[1]
        moment = transfer.created_at
    _upsert(account.household_id, delta, periods_of(moment), transfer.created_at)


_UPSERTS: dict = {}


def _upsert_statement(dialect: str):
    """INSERT … ON CONFLICT DO UPDATE adding to the score, the household's village and hamlet read in
    the same statement; built once per dialect so it is compiled once."""
    if dialect not in _UPSERTS:
        from ..people.models import Household

        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = HouseholdScore.__table__
        of_household = Household.id == bindparam("household_id")
        stmt = insert(table).values(
            household_id=bindparam("household_id"), period=bindparam("period"),
            village_id=select(Household.village_id).where(of_household).scalar_subquery(),
            hamlet_id=select(Household.hamlet_id).where(of_household).scalar_subquery(),
            score=bindparam("delta"), reached_at=bindparam("reached_at", type_=UTCDateTime()))
        _UPSERTS[dialect] = stmt.on_conflict_do_update(
            index_elements=[table.c.household_id, table.c.period],
            set_={"score": table.c.score + stmt.excluded.score, "reached_at": stmt.excluded.reached_at},
        )
    return _UPSERTS[dialect]


def _upsert(household_id: int, delta: int, periods, reached_at: datetime) -> None:
    connection = db.session.connection()
    connection.execute(_upsert_statement(connection.dialect.name),
                       [{"household_id": household_id, "period": period, "delta": delta, "reached_at": reached_at}
                        for period in periods])
    # ORM copies of these rows (if any were loaded) are now stale.
    for period in periods:
        cached = db.session.identity_map.get(db.session.identity_key(HouseholdScore, (household_id, period)))
        if cached is not None:
            db.session.expire(cached)
