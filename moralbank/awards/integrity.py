"""Favouritism checks (人情分): patterns in who proposed and approved which awards, for the committee
and the supervisor to ask about. A flag is a question, not a verdict: each says what was seen, the
figure, and what the village's other staff did (the peers' median), in words a supervisor reads.

The kinds (``KINDS``):

* ``concentrated`` — a proposer's points went to a few households: the share of their points that
  their top 3 households received, against the other proposers' median share;
* ``outlier_proposer`` — a proposer's points per household proposed (the points of an average
  proposal for a household) far above the other proposers';
* ``rubber_stamp`` — an approver decided many awards seconds apart (the longest run of approvals
  each within ``STAMP_SECONDS`` of the one before);
* ``relative`` — awards a staff member proposed or approved for a household they declared as kin
  only afterwards (they went through before the declaration);
* ``self_hamlet`` — a staff member's proposals favour the hamlet their own household lives in: its
  share of their points against its share of the village's households.

Awards count when proposed in the period and not rejected; a deduction counts by its size for
approvals and not at all for favour (no one is favoured by a deduction).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from .. import periods
from ..database import local_zone, utcnow
from ..extensions import db
from ..people import access
from ..people.kinships import Kinship
from ..people.models import Area, Household, User
from .models import Award, AwardStatus

#: a proposer needs this many awards in the period to be compared with others
MIN_AWARDS = 6
#: ``concentrated``: top-3 share at least this (percent) and this many times the peers' median
CONCENTRATED_SHARE, CONCENTRATED_RATIO = 50, 1.5
#: ``outlier_proposer``: points per household at least this many times the peers' median
OUTLIER_RATIO = 2.0
#: ``rubber_stamp``: approvals each within this many seconds of the last, at least this many in a row
STAMP_SECONDS, STAMP_RUN = 10, 15
#: ``self_hamlet``: own hamlet's share of the points at least this many times its share of households,
#: and at least this many percentage points above it
SELF_HAMLET_RATIO, SELF_HAMLET_MARGIN = 1.5, 20

KINDS = ("concentrated", "outlier_proposer", "rubber_stamp", "relative", "self_hamlet")

#: what each kind means, for the page (a question to ask, not a finding)
EXPLANATIONS = {
    "concentrated": _l("这位工作人员提交的加分大多给了少数几户。可能这几户确实表现突出，也可能是人情分：请看这几户的记录和照片，问问提交人。"),
    "outlier_proposer": _l("这位工作人员每次给一户提交的加分，平均远高于本村其他工作人员。可能他负责的户表现更好，也可能标准偏松：请对照积分清单核一核。"),
    "rubber_stamp": _l("这位审核人在很短时间内连续通过了很多条记录，每条只隔几秒。批量审核本身没有错，但要问一问：这些记录的照片和说明都看过了吗？"),
    "relative": _l("这些积分是工作人员给自己登记的亲属户提交或审核的，当时还没有登记亲属关系（登记之后系统就会拦住）。请核对这些记录是否合理。"),
    "self_hamlet": _l("这位工作人员提交的加分明显偏向他自己家所在的屯。可能那个屯的工作多，也可能有偏向：请和其他屯比一比。"),
}
TITLES = {"concentrated": _l("加分集中在少数几户"), "outlier_proposer": _l("户均加分远高于他人"),
          "rubber_stamp": _l("几秒一条的连续审核"), "relative": _l("登记亲属之前经手的积分"),
          "self_hamlet": _l("偏向自家所在的屯")}


@dataclass
class Flag:
    """One question for the committee: {kind, user_id, household_id, detail, value, peer_median}."""

    kind: str
    user_id: int
    household_id: int | None
    detail: str
    value: float
    peer_median: float | None
    user_name: str = ""
    household_number: str | None = None


def window(period: str | None, now: datetime | None = None) -> tuple[datetime, datetime, str]:
    """Start, end and label of what is examined: a period key, or by default the last 12 months."""
    if period:
        start, end = periods.bounds(periods.check(period))
        return start, end, periods.label(period)
    now = now or utcnow()
    today = periods.today(now)
    first = periods.add_months(today, -12)
    start = datetime(first.year, first.month, first.day, tzinfo=local_zone())
    return start, now, _("最近 12 个月")


def _awards(village: Area, start: datetime, end: datetime) -> list:
    return db.session.execute(
        select(Award.id, Award.household_id, Household.hamlet_id, Award.points, Award.proposed_by_id,
               Award.proposed_at, Award.decided_by_id, Award.decided_at, Award.status)
        .join(Household, Household.id == Award.household_id)
        .where(Award.village_id == village.id, Award.proposed_at >= start, Award.proposed_at < end,
               Award.status != AwardStatus.REJECTED)).all()


def _round(value: float) -> float:
    return round(value, 1)


def _peer_median(values: dict[int, float], user_id: int) -> float | None:
    peers = [value for other, value in values.items() if other != user_id]
    return _round(median(peers)) if peers else None


def _proposer_flags(rows) -> list[Flag]:
    """``concentrated`` and ``outlier_proposer``."""
    points: dict[int, Counter] = defaultdict(Counter)
    counts: Counter = Counter()
    for row in rows:
        if row.proposed_by_id is not None and row.points > 0:
            points[row.proposed_by_id][row.household_id] += row.points
            counts[row.proposed_by_id] += 1
    proposers = {user_id: given for user_id, given in points.items() if counts[user_id] >= MIN_AWARDS}
    share = {user_id: 100 * sum(p for _h, p in given.most_common(3)) / sum(given.values())
             for user_id, given in proposers.items()}
    # points per household proposed: what one proposal for a household brings it, on average (the
    # total per household would grow with the years and the size of the proposer's hamlets)
    per_household = {user_id: sum(given.values()) / counts[user_id] for user_id, given in proposers.items()}
    flags = []
    for user_id, given in proposers.items():
        peer = _peer_median(share, user_id)
        if peer is not None and share[user_id] >= CONCENTRATED_SHARE and share[user_id] >= CONCENTRATED_RATIO * peer:
            top = given.most_common(1)[0][0]
            flags.append(Flag("concentrated", user_id, top, _(
                "提交的 %(total)s 分加分中，%(share)s%% 给了前 3 户（其他工作人员的中位数是 %(peer)s%%）",
                total=sum(given.values()), share=round(share[user_id]), peer=round(peer)),
                _round(share[user_id]), peer))
        peer = _peer_median(per_household, user_id)
        if peer is not None and per_household[user_id] >= OUTLIER_RATIO * peer:
            flags.append(Flag("outlier_proposer", user_id, None, _(
                "提交了 %(count)s 条加分，共 %(total)s 分，平均每户每次 %(value)s 分（其他工作人员的中位数是 %(peer)s 分）",
                count=counts[user_id], total=sum(given.values()), value=round(per_household[user_id]),
                peer=round(peer)),
                _round(per_household[user_id]), peer))
    return flags


def _longest_run(moments: list[datetime]) -> int:
    best = run = 1 if moments else 0
    for earlier, later in zip(moments, moments[1:]):
        run = run + 1 if (later - earlier).total_seconds() <= STAMP_SECONDS else 1
        best = max(best, run)
    return best


def _rubber_stamp_flags(rows) -> list[Flag]:
    decided: dict[int, list[datetime]] = defaultdict(list)
    for row in rows:
        if row.decided_by_id is not None and row.decided_at is not None:
            decided[row.decided_by_id].append(row.decided_at)
    runs = {user_id: _longest_run(sorted(moments)) for user_id, moments in decided.items()}
    flags = []
    for user_id, run in runs.items():
        if run >= STAMP_RUN:
            peer = _peer_median(runs, user_id)
            detail = _("连续通过了 %(n)s 条记录，每条与上一条相隔不到 %(s)s 秒", n=run, s=STAMP_SECONDS)
            if peer is not None:
                detail += _("（其他审核人的中位数是 %(peer)s 条）", peer=round(peer))
            flags.append(Flag("rubber_stamp", user_id, None, detail, run, peer))
    return flags


def _relative_flags(village: Area, rows) -> list[Flag]:
    declared = {(k.user_id, k.household_id): k.created_at for k in
                db.session.scalars(select(Kinship).where(Kinship.village_id == village.id))}
    touched: dict[tuple[int, int], list] = defaultdict(list)
    for row in rows:
        for user_id, moment in ((row.proposed_by_id, row.proposed_at), (row.decided_by_id, row.decided_at)):
            since = declared.get((user_id, row.household_id))
            if since is not None and moment is not None and moment < since:
                touched[(user_id, row.household_id)].append(row)
    flags = []
    for (user_id, household_id), awards in touched.items():
        unique = {row.id: row for row in awards}.values()
        total = sum(row.points for row in unique)
        flags.append(Flag("relative", user_id, household_id, _(
            "登记亲属之前经手了这户 %(n)s 条记录，共 %(total)s 分",
            n=len(unique), total=total), total, None))
    return flags


def _self_hamlet_flags(village: Area, rows) -> list[Flag]:
    households = dict(db.session.execute(select(Household.hamlet_id, func.count()).where(
        Household.village_id == village.id).group_by(Household.hamlet_id)).all())
    total_households = sum(households.values()) or 1
    given: dict[int, Counter] = defaultdict(Counter)
    counts: Counter = Counter()
    for row in rows:
        if row.proposed_by_id is not None and row.points > 0:
            given[row.proposed_by_id][row.hamlet_id] += row.points
            counts[row.proposed_by_id] += 1
    flags = []
    for user_id, by_hamlet in given.items():
        if counts[user_id] < MIN_AWARDS:
            continue
        user = db.session.get(User, user_id)
        own = {household.hamlet_id for household_id in access.linked_household_ids(user)
               if (household := db.session.get(Household, household_id)) and household.village_id == village.id}
        scope = access.hamlet_scope(user, village)
        for hamlet_id in own:
            if scope is not None and len(scope) <= 1:
                continue  # a grid manager of one hamlet proposes nowhere else: no favour to see
            share = 100 * by_hamlet[hamlet_id] / sum(by_hamlet.values())
            reach = total_households if scope is None else (sum(households.get(h, 0) for h in scope) or 1)
            expected = 100 * households.get(hamlet_id, 0) / reach
            if share >= SELF_HAMLET_RATIO * expected and share >= expected + SELF_HAMLET_MARGIN:
                hamlet = db.session.get(Area, hamlet_id)
                flags.append(Flag("self_hamlet", user_id, None, _(
                    "提交的加分有 %(share)s%% 给了自家所在的%(hamlet)s，而该屯只占其负责户数的 %(expected)s%%",
                    share=round(share), hamlet=hamlet.name, expected=round(expected)),
                    _round(share), _round(expected)))
    return flags


def flags_of(village: Area, period: str | None = None, *, now: datetime | None = None) -> list[Flag]:
    """Every flag of the village in the period (default: the last 12 months), by kind then user."""
    start, end, _label = window(period, now)
    rows = _awards(village, start, end)
    flags = (_proposer_flags(rows) + _rubber_stamp_flags(rows) + _relative_flags(village, rows)
             + _self_hamlet_flags(village, rows))
    names = dict(db.session.execute(select(User.id, User.name).where(
        User.id.in_({flag.user_id for flag in flags} or {-1}))).all())
    numbers = dict(db.session.execute(select(Household.id, Household.number).where(
        Household.id.in_({flag.household_id for flag in flags if flag.household_id} or {-1}))).all())
    for flag in flags:
        flag.user_name = names.get(flag.user_id, "")
        flag.household_number = numbers.get(flag.household_id)
    return sorted(flags, key=lambda flag: (KINDS.index(flag.kind), flag.user_id, flag.household_id or 0))


def can_read(user: User | None, village: Area) -> bool:
    """The integrity page is for the village's committee and the supervisors above it."""
    return access.is_committee(user, village) or access.is_supervisor(user, village)
