"""一票否决: a posted award under a veto item bars the household from stars and honours until the
end of the village's veto period (``veto_period``: month, quarter or year, by ``periods``).

A veto is not a flag anybody sets: it is read from the posted, unreversed awards under veto
items, so reversing the award lifts it and nothing can drift out of step with the ledger. The
rankings ask here who is vetoed in a period; the stores ask before a household spends
(``veto_blocks_redemption``).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import bindparam, case, select
from sqlalchemy.orm import aliased

from .. import periods
from ..database import utcnow
from ..errors import Invalid
from ..extensions import db
from ..ledger.models import Transfer
from ..people.models import Area, Household
from .models import Award, AwardStatus, Rule

VETO_PERIODS = ("month", "quarter", "year")


def _veto_awards(village_id: int, start: datetime, end: datetime, household_id: int | None = None):
    """(household id, award id, rule id, rule title, posted at) of the posted, unreversed veto awards
    of a village posted in [start, end), oldest first."""
    reversed_awards = select(Transfer.award_id).where(Transfer.code == "reversal", Transfer.award_id.is_not(None),
                                                      Transfer.village_id == village_id)
    query = (select(Award.household_id, Award.id, Award.rule_id, Rule.title, Award.posted_at)
             .join(Rule, Rule.id == Award.rule_id)
             .where(Award.village_id == village_id, Rule.veto.is_(True), Award.status == AwardStatus.POSTED,
                    Award.posted_at >= start, Award.posted_at < end, Award.id.not_in(reversed_awards))
             .order_by(Award.posted_at, Award.id))
    if household_id is not None:
        query = query.where(Award.household_id == household_id)
    return db.session.execute(query).all()


def window_params(at: datetime | None = None) -> dict:
    """The bind parameters of ``veto_award_column``: the start of the month, quarter and year now."""
    now = at or utcnow()
    return {f"veto_{kind}": periods.bounds(periods.containing(kind, now))[0] for kind in VETO_PERIODS}


def veto_award_column(household_entity):
    """A column: the id of a posted, unreversed veto award of the household posted in its village's
    current veto period (the start of the month, quarter or year by ``veto_period``, from
    ``window_params``), or NULL. A summary's select reads it, so an unvetoed household costs no
    query of its own; ``veto_of`` then reads the details of a vetoed one."""
    village = aliased(Area)
    start = case((village.veto_period == "month", bindparam("veto_month")),
                 (village.veto_period == "quarter", bindparam("veto_quarter")),
                 else_=bindparam("veto_year"))
    reversed_ = select(Transfer.id).where(Transfer.award_id == Award.id, Transfer.code == "reversal").exists()
    return (select(Award.id).join(Rule, Rule.id == Award.rule_id).join(village, village.id == Award.village_id)
            .where(Award.household_id == household_entity.id, Rule.veto.is_(True),
                   Award.status == AwardStatus.POSTED, Award.posted_at >= start, ~reversed_)
            .limit(1).correlate(household_entity).scalar_subquery())


def _period_of(village: Area, moment: datetime | date) -> str:
    return periods.containing(village.veto_period or "year", moment)


def _last_day(period: str) -> date:
    return periods.days(period)[1] - timedelta(days=1)


def _veto(village: Area, row) -> dict:
    household_id, award_id, rule_id, title, posted_at = row
    return {"until": _last_day(_period_of(village, posted_at)), "rule_id": rule_id, "award_id": award_id,
            "title": title, "since": posted_at}


def veto_of(household: Household, at: datetime | None = None) -> dict | None:
    """The veto on a household now: ``{until, rule_id, award_id, title, since}`` (``until`` the last
    day of the veto period, inclusive), or None."""
    village = db.session.get(Area, household.village_id)
    now = at or utcnow()
    rows = _veto_awards(village.id, *periods.bounds(_period_of(village, now)), household.id)
    return _veto(village, rows[0]) if rows else None


def vetoed_in(village: Area, period: str | None = None) -> dict[int, dict]:
    """Households of a village vetoed at some time in a ranking period (``all``, or None: now), by
    household id. A veto runs from its posting to the end of its veto period, so it touches a
    period that ends after the posting and begins before the veto period ends."""
    now = utcnow()
    if period in (None, periods.ALL):
        start, end = periods.bounds(_period_of(village, now))
    else:
        first, end = periods.bounds(period)
        start = periods.bounds(_period_of(village, first))[0]
    found: dict[int, dict] = {}
    for row in _veto_awards(village.id, start, end):
        found.setdefault(row[0], _veto(village, row))
    return found


def check_spending(household: Household) -> None:
    """Refuse to let a vetoed household spend when its village says so (422 ``household_vetoed``)."""
    village = db.session.get(Area, household.village_id)
    if not village.veto_blocks_redemption:
        return
    veto = veto_of(household)
    if veto is not None:
        raise Invalid(_("这户因「%(title)s」被一票否决，%(until)s 前不能使用积分",
                        title=veto["title"], until=veto["until"].isoformat()), code="household_vetoed")
