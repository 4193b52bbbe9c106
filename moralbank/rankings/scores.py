"""Keeping household scores per period as the ledger posts awards, deductions and reversals.

A score is points earned minus points deducted in a period; spending never
lowers it. Each posting updates four rows (month, quarter, year, all) in the
same transaction, by an upsert so concurrent postings for one household add up.
A reversal takes its original's effect back in the original's periods.

The ledger does not know about scores: ``apply_transfer`` is its posting hook and
``verify_scores`` its verify check, registered with ``ledger.hooks`` by this
package's ``__init__`` (so whoever imports the rankings, as ``create_app`` does,
has both).
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from ..database import UTCDateTime
from ..extensions import db
from ..ledger.models import Transfer
from ..periods import periods_of
from . import versions
from .models import HouseholdScore


def score_effect(transfer, debit, credit) -> tuple[int, int] | None:
    """(household account id, signed score change) of a transfer, or None if it changes no score."""
    if transfer.code == "award" and credit.kind == "household":
        return credit.id, transfer.amount
    if transfer.code == "deduction" and debit.kind == "household":
        return debit.id, -transfer.amount
    return None


def apply_transfer(transfer, *, debit, credit) -> None:
    """Update the period scores for one just-written transfer (the ledger's posting hook, inside its
    transaction)."""
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
    versions.bump(transfer.village_id)


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


def verify_scores(report, account_kind: dict) -> None:
    """Every household's period scores equal what its award, deduction and reversal transfers add up
    to (a ``ledger.hooks`` verify check: ``account_kind`` maps each account id to ``(kind,
    household_id)``); each difference, and each missing row, goes to ``report.discrepancies``."""
    session = db.session
    expected: dict[tuple[int, str], int] = defaultdict(int)
    original = aliased(Transfer)
    rows = session.execute(
        select(Transfer.code, Transfer.amount, Transfer.debit_account_id, Transfer.credit_account_id,
               Transfer.created_at, original.code, original.created_at)
        .outerjoin(original, original.id == Transfer.reverses_id)
        .where(Transfer.code.in_(("award", "deduction", "reversal")))
        .execution_options(yield_per=5000))
    for code, amount, debit_id, credit_id, created_at, o_code, o_created_at in rows:
        if code == "reversal":
            if o_code == "award":
                household, delta, moment = account_kind[debit_id][1], -amount, o_created_at
            elif o_code == "deduction":
                household, delta, moment = account_kind[credit_id][1], amount, o_created_at
            else:
                continue
        elif code == "award":
            household, delta, moment = account_kind[credit_id][1], amount, created_at
        else:
            household, delta, moment = account_kind[debit_id][1], -amount, created_at
        if household is None:
            continue
        for period in periods_of(moment):
            expected[(household, period)] += delta

    seen = set()
    for household_id, period, score in session.execute(
            select(HouseholdScore.household_id, HouseholdScore.period, HouseholdScore.score)
            .execution_options(yield_per=5000)):
        report.counts["score_rows"] += 1
        seen.add((household_id, period))
        if expected.get((household_id, period), 0) != score:
            report.discrepancies.append(
                f"household {household_id} period {period}: score {score} != "
                f"{expected.get((household_id, period), 0)} from transfers")
    for key, value in expected.items():
        if key not in seen and value != 0:
            report.discrepancies.append(f"household {key[0]} period {key[1]}: no score row, expected {value}")
