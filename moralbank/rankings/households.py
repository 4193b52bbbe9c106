"""Read models of households: balance, score, stars and history, without N+1 queries."""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import and_, bindparam, func, select, union_all
from sqlalchemy.orm import aliased, joinedload

from ..awards import vetoes
from ..awards.expiry import expiring_of
from ..extensions import db
from ..ledger.holds import Hold
from ..ledger.models import Account, Transfer
from ..pagination import keyset_page, split_page
from ..people.models import Area, Household, Resident
from .models import HouseholdScore


@lru_cache(maxsize=1)
def _summary_query():
    """The household summary's select, built once: statements are immutable (``.where`` makes a new
    one), and a statement object kept alive keeps its compiled form in SQLAlchemy's cache too."""
    head = aliased(Resident)
    hamlet = aliased(Area)
    score = aliased(HouseholdScore)
    return (select(Household.id, Household.number, Household.hamlet_id, hamlet.name, head.name,
                   Account.balance, score.score)
            .join(hamlet, hamlet.id == Household.hamlet_id)
            .outerjoin(head, and_(head.household_id == Household.id, head.is_head.is_(True)))
            .join(Account, Account.household_id == Household.id)
            .outerjoin(score, and_(score.household_id == Household.id, score.period == "all")))


def _held_points():
    """Points of the household held by pending holds (offline vouchers), as a column."""
    return (select(func.coalesce(func.sum(Hold.amount), 0))
            .where(Hold.household_id == Household.id, Hold.status == "pending")
            .correlate(Household).scalar_subquery())


@lru_cache(maxsize=1)
def _summary_of_one():
    """One household's summary columns, its held points and its veto award (if any) in one select."""
    return (_summary_query().add_columns(_held_points(), vetoes.veto_award_column(Household))
            .where(Household.id == bindparam("household_id")))


def _row_to_summary(row, village: Area) -> dict:
    household_id, number, hamlet_id, hamlet_name, head_name, balance, score = row
    score = score or 0
    return {"id": household_id, "number": number, "hamlet_id": hamlet_id, "hamlet": hamlet_name,
            "head": head_name or "", "balance": balance, "score": score, "stars": village.stars_for(score)}


def household_summary(household: Household) -> dict:
    """{id, number, head, hamlet, balance, score, stars, veto, members, expiring, held} of one household
    (no stars while vetoed)."""
    row = db.session.execute(_summary_of_one(), {"household_id": household.id, **vetoes.window_params()}).one()
    village = db.session.get(Area, household.village_id)
    return _completed(household, _row_to_summary(row[:7], village), village, row[7], row[8])


def _completed(household: Household, summary: dict, village: Area, held_points, veto_award_id) -> dict:
    """A household's summary with what governance and offline vouchers add: its veto (read only when
    the summary's select found a veto award; no stars while vetoed), its members, the points that
    will lapse (no query where nothing lapses) and the points held."""
    summary["veto"] = vetoes.veto_of(household) if veto_award_id is not None else None
    if summary["veto"]:
        summary["stars"] = 0
    summary["members"] = [{"name": m.name, "relation": m.relation} for m in household.members]
    summary["expiring"] = expiring_of(village, [household.id]).get(household.id, [])
    summary["held"] = int(held_points or 0)
    return summary


@lru_cache(maxsize=1)
def _household_with_summary():
    """One household (with its village and members) and its summary's columns in one select."""
    head = aliased(Resident)
    hamlet = aliased(Area)
    score = aliased(HouseholdScore)
    return (select(Household, hamlet.name, head.name, Account.balance, score.score, _held_points(),
                   vetoes.veto_award_column(Household))
            .join(hamlet, hamlet.id == Household.hamlet_id)
            .outerjoin(head, and_(head.household_id == Household.id, head.is_head.is_(True)))
            .join(Account, Account.household_id == Household.id)
            .outerjoin(score, and_(score.household_id == Household.id, score.period == "all"))
            .options(joinedload(Household.village), joinedload(Household.members))
            .where(Household.id == bindparam("household_id")))


def household_and_summary(household_id: int) -> tuple[Household, dict] | tuple[None, None]:
    """The household and its summary (as ``household_summary`` gives it) in one query, for a
    caller that checks who may read it before answering; (None, None) if there is none."""
    row = db.session.execute(_household_with_summary(),
                             {"household_id": household_id, **vetoes.window_params()}).unique().first()
    if row is None:
        return None, None
    household, hamlet_name, head_name, balance, score, held_points, veto_award_id = row
    summary = _row_to_summary((household.id, household.number, household.hamlet_id, hamlet_name, head_name,
                               balance, score), household.village)
    return household, _completed(household, summary, household.village, held_points, veto_award_id)


def household_page(village: Area, *, hamlet_ids: set[int] | None = None, after: int | None = None,
                   limit: int = 50) -> tuple[list[dict], int | None]:
    """Households of a village by id, ``limit`` at a time after the cursor ``after``."""
    query = _summary_query().where(Household.village_id == village.id)
    if hamlet_ids is not None:
        query = query.where(Household.hamlet_id.in_(hamlet_ids or {-1}))
    page = keyset_page(query, Household.id, limit=limit, cursor=after, newest_first=False, rows=True,
                       key=lambda row: row[0])
    vetoed = vetoes.vetoed_in(village)
    summaries = [_row_to_summary(row, village) for row in page.items]
    expiring = expiring_of(village, [summary["id"] for summary in summaries])
    for summary in summaries:
        summary["veto"] = vetoed.get(summary["id"])
        if summary["veto"]:
            summary["stars"] = 0
        summary["expiring"] = expiring.get(summary["id"], [])
    return summaries, page.next


def transfer_history(household: Household, *, before: int | None = None, limit: int = 50):
    """Ledger lines of a household, newest first, with the amount signed from its side.

    Two index range scans (as debit, as credit) merged, so it stays fast on a
    household with years of history.
    """
    account = db.session.scalar(select(Account).where(Account.household_id == household.id))
    parts = []
    for column in (Transfer.debit_account_id, Transfer.credit_account_id):
        part = select(Transfer.id).where(column == account.id)
        if before:
            part = part.where(Transfer.id < before)
        parts.append(part.order_by(Transfer.id.desc()).limit(limit + 1).subquery().select())
    ids = sorted(set(db.session.scalars(union_all(*parts))), reverse=True)[:limit + 1]
    rows = db.session.scalars(select(Transfer).where(Transfer.id.in_(ids)).order_by(Transfer.id.desc())).all()
    reversed_ids = set(db.session.scalars(select(Transfer.reverses_id).where(Transfer.reverses_id.in_(ids))))
    page = split_page(rows, limit)
    lines = [{
        "id": row.id, "code": row.code,
        "amount": row.amount if row.credit_account_id == account.id else -row.amount,
        "created_at": row.created_at, "reason": row.reason, "award_id": row.award_id,
        "reverses_id": row.reverses_id, "reversed": row.id in reversed_ids,
    } for row in page.items]
    return lines, page.next
