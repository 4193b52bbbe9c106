"""Rankings, stars, published snapshots and the dashboards' figures.

Rankings read ``household_scores`` through its (village|hamlet, period, score
desc, reached_at, household_id) index: the order is score, then who reached it
first, then household id, and no query sums the ledger.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select

from ..audit.service import record as audit
from .. import periods
from ..awards import vetoes
from ..database import require_write_transaction, utcnow
from ..errors import Invalid, NotFound
from ..extensions import db
from ..people import access
from ..people.models import Area, Household, Resident, User
from ..people.service import mask_name
from . import versions
from .models import HouseholdScore, RankingSnapshot, RankingSnapshotEntry

MAX_LIMIT = 500


@dataclass
class RankLine:
    rank: int
    household_id: int
    label: str
    hamlet: str
    score: int
    stars: int
    reached_at: datetime | None = None


def _scope(village: Area, hamlet_id: int | None) -> Area | None:
    if hamlet_id is None:
        return None
    hamlet = db.session.get(Area, hamlet_id)
    if hamlet is None or hamlet.parent_id != village.id:
        raise NotFound(_("本村没有这个屯/组"), code="unknown_hamlet", fields={"hamlet": [_("不存在")]})
    return hamlet


def ranking(village: Area, period: str = "all", *, hamlet_id: int | None = None, limit: int = 100,
            offset: int = 0, honours: bool = False) -> list[RankLine]:
    """The live ranking: names masked, ties by who reached the score first, then household id.
    ``honours``: the ranking for the red list (红榜), which leaves out households vetoed in the period."""
    period = periods.check(period or periods.ALL)
    hamlet = _scope(village, hamlet_id)
    # a page and one more, so a caller can peek whether another page follows (the API's ``next``)
    limit = max(1, min(int(limit), MAX_LIMIT + 1))
    score = HouseholdScore
    query = (select(score.household_id, score.score, score.reached_at, Resident.name, Area.name)
             .join(Resident, and_(Resident.household_id == score.household_id, Resident.is_head.is_(True)))
             .join(Area, Area.id == score.hamlet_id)
             .where(score.period == period)
             .order_by(score.score.desc(), score.reached_at, score.household_id)
             .limit(limit).offset(offset))
    query = query.where(score.hamlet_id == hamlet.id) if hamlet else query.where(score.village_id == village.id)
    # 一票否决: a vetoed household has no stars; left out altogether where the village hides it
    vetoed = vetoes.vetoed_in(village, period)
    if vetoed and (village.veto_hides_ranking or honours):
        query = query.where(score.household_id.not_in(list(vetoed)))
    return [RankLine(offset + index + 1, household_id, mask_name(head), hamlet_name, value,
                     0 if household_id in vetoed else village.stars_for(value), reached)
            for index, (household_id, value, reached, head, hamlet_name) in enumerate(db.session.execute(query))]


def full_ranking(village: Area, period: str, *, hamlet_id: int | None = None, honours: bool = False):
    """Every ranked household of the period, a page at a time (a village may have thousands)."""
    offset = 0
    while True:
        lines = ranking(village, period, hamlet_id=hamlet_id, limit=MAX_LIMIT, offset=offset, honours=honours)
        yield from lines
        if len(lines) < MAX_LIMIT:
            return
        offset += len(lines)


def rank_of(household: Household, period: str, *, in_hamlet: bool = False) -> tuple[int | None, int, int]:
    """(rank, score, ranked households) of one household in its village (or hamlet) for a period."""
    row = db.session.get(HouseholdScore, (household.id, period))
    scope_column = HouseholdScore.hamlet_id if in_hamlet else HouseholdScore.village_id
    scope_value = household.hamlet_id if in_hamlet else household.village_id
    total = db.session.scalar(select(func.count()).select_from(HouseholdScore).where(
        scope_column == scope_value, HouseholdScore.period == period)) or 0
    if row is None:
        return None, 0, total
    ahead = db.session.scalar(select(func.count()).select_from(HouseholdScore).where(
        scope_column == scope_value, HouseholdScore.period == period,
        or_(HouseholdScore.score > row.score,
            and_(HouseholdScore.score == row.score, HouseholdScore.reached_at < row.reached_at),
            and_(HouseholdScore.score == row.score, HouseholdScore.reached_at == row.reached_at,
                 HouseholdScore.household_id < row.household_id)))) or 0
    return ahead + 1, row.score, total


def monthly_scores(household: Household, months: int = 12) -> list[tuple[str, int]]:
    """The household's score in each of the last ``months`` months, oldest first (0 where none)."""
    keys = periods.run_up_to(periods.current_month(), months)
    found = dict(db.session.execute(select(HouseholdScore.period, HouseholdScore.score).where(
        HouseholdScore.household_id == household.id, HouseholdScore.period.in_(keys))).all())
    return [(key, found.get(key, 0)) for key in keys]


def ranked_count(village: Area, period: str, *, hamlet_id: int | None = None) -> int:
    """How many households the ranking of a period has (what publishing it would freeze)."""
    period = periods.check(period or periods.ALL)
    hamlet = _scope(village, hamlet_id)
    query = select(func.count()).select_from(HouseholdScore).where(HouseholdScore.period == period)
    query = (query.where(HouseholdScore.hamlet_id == hamlet.id) if hamlet
             else query.where(HouseholdScore.village_id == village.id))
    return db.session.scalar(query) or 0


def published(village: Area, period: str, *, hamlet_id: int | None = None) -> RankingSnapshot | None:
    """The latest snapshot published for this period and scope (the whole village by default)."""
    hamlet_column = (RankingSnapshot.hamlet_id == hamlet_id) if hamlet_id else RankingSnapshot.hamlet_id.is_(None)
    return db.session.scalar(select(RankingSnapshot).where(
        RankingSnapshot.village_id == village.id, RankingSnapshot.period == period, hamlet_column)
        .order_by(RankingSnapshot.id.desc()).limit(1))


# --- published snapshots ---------------------------------------------------------------------

def publish(actor: User, village: Area, period: str, *, hamlet_id: int | None = None,
            title: str | None = None) -> RankingSnapshot:
    """Freeze the ranking of a period for the notice board (committee). Later awards do not change it."""
    require_write_transaction()
    access.require(access.is_committee(actor, village), _("只有村委会可以发布排行榜"))
    period = periods.check(period or periods.ALL)
    hamlet = _scope(village, hamlet_id)
    lines = list(full_ranking(village, period, hamlet_id=hamlet_id, honours=True))
    if not lines:
        raise Invalid(_("这个期间还没有任何积分，不能发布"), code="empty_ranking")
    heading = (title or "").strip()[:64] or _("%(period)s 积分榜", period=periods.label(period))
    snapshot = RankingSnapshot(village_id=village.id, hamlet_id=hamlet.id if hamlet else None, period=period,
                               title=heading, published_by_id=actor.id, published_at=utcnow())
    db.session.add(snapshot)
    db.session.flush()
    versions.bump(village.id)  # the board shows the newest published ranking
    db.session.add_all([RankingSnapshotEntry(snapshot_id=snapshot.id, rank=line.rank, village_id=village.id,
                                             household_id=line.household_id,
                                             label=line.label, hamlet=line.hamlet, score=line.score,
                                             stars=line.stars) for line in lines])
    audit("ranking.publish", actor=actor, village_id=village.id, target=snapshot,
          detail={"period": period, "hamlet_id": hamlet_id, "lines": len(lines)})
    return snapshot


def snapshots(village: Area, limit: int = 20) -> list[RankingSnapshot]:
    return db.session.scalars(select(RankingSnapshot).where(RankingSnapshot.village_id == village.id)
                              .order_by(RankingSnapshot.id.desc()).limit(limit)).all()


def snapshot_entries(snapshot: RankingSnapshot) -> list[RankingSnapshotEntry]:
    return db.session.scalars(select(RankingSnapshotEntry).where(RankingSnapshotEntry.snapshot_id == snapshot.id)
                              .order_by(RankingSnapshotEntry.rank)).all()


# --- dashboards ------------------------------------------------------------------------------

def village_dashboard(village: Area, period: str | None = None) -> dict:
    """Points by category per month, participation, and top and bottom movers of a month.

    A quarter or a year works the same way (the chart then has 6 quarters or years, the movers
    compare with the quarter or year before); ``all`` has no period before it and is refused.
    The key ``month`` holds the period (the API asks for months only)."""
    from ..awards.models import CATEGORIES, Award, Rule
    from ..ledger.models import Transfer

    month = periods.check(period or periods.current_month())
    if month == periods.ALL:
        raise Invalid(_("期间应为 2026-11、2026-Q4 或 2026"), code="bad_period", fields={"month": [_("格式不对")]})
    kind = periods.kind(month)
    months = periods.run_up_to(month, 6)
    start = periods.bounds(months[0])[0]
    reversed_ids = select(Transfer.reverses_id).where(Transfer.reverses_id.is_not(None),
                                                      Transfer.village_id == village.id)
    rows = db.session.execute(
        select(Rule.category, Transfer.created_at, Transfer.code, Transfer.amount)
        .join(Award, Award.id == Transfer.award_id).join(Rule, Rule.id == Award.rule_id)
        .where(Transfer.village_id == village.id, Transfer.code.in_(("award", "deduction")),
               Transfer.created_at >= start, Transfer.id.not_in(reversed_ids))).all()
    by_category: dict[str, dict[str, int]] = {key: {m: 0 for m in months} for key in CATEGORIES}
    for category, created_at, code, amount in rows:
        key = periods.containing(kind, created_at)
        if key in months:
            by_category.setdefault(category, {m: 0 for m in months})[key] += amount if code == "award" else -amount
    households = db.session.scalar(select(func.count()).select_from(Household)
                                   .where(Household.village_id == village.id)) or 0
    active = db.session.scalar(select(func.count()).select_from(HouseholdScore).where(
        HouseholdScore.village_id == village.id, HouseholdScore.period == month)) or 0
    this = dict(db.session.execute(select(HouseholdScore.household_id, HouseholdScore.score).where(
        HouseholdScore.village_id == village.id, HouseholdScore.period == month)).all())
    last = dict(db.session.execute(select(HouseholdScore.household_id, HouseholdScore.score).where(
        HouseholdScore.village_id == village.id, HouseholdScore.period == periods.previous(month))).all())
    change = {hid: this.get(hid, 0) - last.get(hid, 0) for hid in set(this) | set(last)}
    heads = dict(db.session.execute(select(Resident.household_id, Resident.name).where(
        Resident.household_id.in_(list(change) or [-1]), Resident.is_head.is_(True))).all())
    numbers = dict(db.session.execute(select(Household.id, Household.number).where(
        Household.id.in_(list(change) or [-1]))).all())
    ordered = sorted(change.items(), key=lambda pair: (-pair[1], pair[0]))

    def mover(pair):
        hid, delta = pair
        return {"household_id": hid, "number": numbers.get(hid, ""), "head": heads.get(hid, ""),
                "score": this.get(hid, 0), "previous": last.get(hid, 0), "change": delta}
    return {
        "village": village.code, "month": month, "period": month, "months": months,
        "by_category": {key: [values[m] for m in months] for key, values in by_category.items()},
        "households": households, "active": active,
        "participation": round(active / households, 4) if households else 0.0,
        "top_movers": [mover(p) for p in ordered[:5] if p[1] > 0],
        "bottom_movers": [mover(p) for p in reversed(ordered[-5:]) if p[1] < 0],
    }


def town_overview(user: User, period: str | None = None) -> list[dict]:
    """The villages a supervisor (or committee) may see, side by side for a period (a month by
    default; the API asks for months only)."""
    from ..stores.models import Redemption

    month = periods.check(period or periods.current_month())
    start, end = periods.bounds(month)
    rows = []
    for village in access.villages_visible(user):
        households = db.session.scalar(select(func.count()).select_from(Household)
                                       .where(Household.village_id == village.id)) or 0
        active, points = db.session.execute(select(func.count(), func.coalesce(func.sum(HouseholdScore.score), 0))
                                            .where(HouseholdScore.village_id == village.id,
                                                   HouseholdScore.period == month)).one()
        spent = db.session.scalar(select(func.coalesce(func.sum(Redemption.points), 0)).where(
            Redemption.village_id == village.id, Redemption.created_at >= start, Redemption.created_at < end)) or 0
        rows.append({"village": village, "households": households, "active": active,
                     "participation": round(active / households, 4) if households else 0.0,
                     "points": int(points), "average": round(points / households, 1) if households else 0.0,
                     "redeemed": int(spent)})
    return rows
