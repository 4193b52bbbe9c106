"""Point expiry by village policy (积分清零): which points lapse when, and lapsing them.

The village's ``expiry`` setting (``people.villages``) says when a lot of points (``ledger.expiry``:
what one credit brought in, spent first-in first-out) lapses:

* ``{"mode": "none"}`` — never (the default);
* ``{"mode": "annual", "on": "12-31"}`` — at the end of that day each year: points earned up to
  and on 31 December lapse then (a lot dated after this year's day lapses next year's);
* ``{"mode": "months", "months": 24}`` — each lot at the end of the same day of the month that
  many months after it came in (31 August + 6 months: the end of 28 February).

``on`` is the last day the points can be spent, by the local calendar (``periods``); from the
local midnight after it they are due, and ``flask ledger expire`` (cron, nightly) moves them to
the village's sink with one ``expiry`` transfer per household and lot. A household below zero has
no open lot and loses nothing. Changing the setting applies to the points held then: switching to
``months`` lapses at the next run what is already older than that.

Expiry never lowers a score: the rankings' posting hook counts only awards, deductions and their
reversals (``rankings.scores.score_effect``), and a lapse is none of them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select

from .. import periods
from ..database import local_zone, utcnow, write_transaction
from ..extensions import db
from ..ledger import expiry as lots
from ..ledger.models import Account, Transfer
from ..people.models import Area, Household
from ..people.villages import expiry_policy

#: how far ahead the resident's home page warns of points about to lapse
WARN_DAYS = 30


def lapse_day(policy: dict, dated: datetime) -> date | None:
    """The last day a lot dated ``dated`` can be spent under ``policy`` (None: it never lapses)."""
    mode = policy.get("mode", "none")
    if mode == "none":
        return None
    earned = periods.today(dated)
    if mode == "months":
        return periods.add_months(earned, int(policy["months"]))
    month, day = int(policy["on"][:2]), int(policy["on"][3:])
    this_year = date(earned.year, month, day)
    return this_year if earned <= this_year else date(earned.year + 1, month, day)


def _lapse_reason(lot: lots.Lot) -> str:
    return _("积分到期清零（%(day)s 获得）", day=periods.today(lot.dated).isoformat())


def _by_day(policy: dict, book, today: date, within_days: int | None) -> list[dict]:
    by_day: dict[date, int] = defaultdict(int)
    for lot in book.open_lots():
        day = lapse_day(policy, lot.dated)
        if day is not None and (within_days is None or day <= today + timedelta(days=within_days)):
            by_day[day] += lot.left
    return [{"points": points, "on": day} for day, points in sorted(by_day.items())]


def expiring(household: Household, *, within_days: int | None = None, today: date | None = None) -> list[dict]:
    """``[{points, on}]``: the household's points that will lapse, by day, soonest first (only the next
    ``within_days`` days when given; a day already past means the next run lapses them). Empty when
    the village lets no points lapse."""
    return expiring_of(db.session.get(Area, household.village_id), [household.id],
                       within_days=within_days, today=today).get(household.id, [])


def expiring_of(village: Area, household_ids: list[int], *, within_days: int | None = None,
                today: date | None = None) -> dict[int, list[dict]]:
    """``expiring`` of several households of one village, their transfers read in one pass (a page of
    the household list); nothing is read when the village lets no points lapse."""
    policy = expiry_policy(village)
    if policy["mode"] == "none" or not household_ids:
        return {}
    accounts = dict(db.session.execute(select(Account.id, Account.household_id).where(
        Account.household_id.in_(household_ids))).all())
    today = today or periods.today()
    return {accounts[account_id]: _by_day(policy, book, today, within_days)
            for account_id, book in lots.books_of(set(accounts)).items()}


@dataclass
class Lapse:
    """One lapse the run posted (or found already posted)."""

    village: str
    household: str
    points: int
    earned_on: date
    on: date
    replayed: bool


def _households_with_old_points(village: Area, cutoff: datetime) -> list[tuple[int, int, str]]:
    """(account id, household id, number) of the village's households above zero that received
    points before ``cutoff``: only they can hold a lot that is due."""
    old_credit = select(Transfer.id).where(Transfer.credit_account_id == Account.id,
                                           Transfer.created_at < cutoff).exists()
    return db.session.execute(
        select(Account.id, Household.id, Household.number).join(Household, Household.id == Account.household_id)
        .where(Account.village_id == village.id, Account.kind == "household", Account.balance > 0, old_credit)
        .order_by(Household.id)).all()


def _cutoff(policy: dict, today: date) -> datetime:
    """A moment before which every due lot came in (generous: it only spares reading households
    that cannot have one)."""
    if policy["mode"] == "months":
        # add_months clamps to the month's end, so a lot up to a few days younger may be due
        day = periods.add_months(today, -int(policy["months"])) + timedelta(days=4)
    else:
        day = today
    return datetime(day.year, day.month, day.day, tzinfo=local_zone())


def expire_household(village: Area, policy: dict, account_id: int, household_id: int, number: str,
                     today: date, now: datetime) -> list[Lapse]:
    """Lapse what is due of one household, in the caller's write transaction: its account row is
    locked first, so no spending interleaves between reading the lots and lapsing them."""
    account = db.session.scalar(select(Account).where(Account.id == account_id).with_for_update()
                                .execution_options(populate_existing=True))
    sink = db.session.scalar(select(Account).where(Account.village_id == village.id, Account.kind == "sink"))
    done = []
    for lot in lots.book_of(account_id).open_lots():
        day = lapse_day(policy, lot.dated)
        if day is None or day >= today:
            break  # lots are oldest first, and so are their lapse days
        points = lot.left
        posted = lots.lapse(account=account, sink=sink, household_id=household_id, lot=lot,
                            reason=_lapse_reason(lot), at=now)
        done.append(Lapse(village.code, number, points, periods.today(lot.dated), day, posted.replayed))
    return done


def expire_due(now: datetime | None = None, *, village_code: str | None = None) -> list[Lapse]:
    """Lapse every due lot of every village that lets points lapse (``flask ledger expire``): one
    write transaction per household, so a long run holds no lock for long and a second run at the
    same time only replays. Returns what was lapsed."""
    now = now or utcnow()
    today = periods.today(now)
    query = select(Area).where(Area.level == "village").order_by(Area.code)
    if village_code:
        query = query.where(Area.code == village_code)
    done: list[Lapse] = []
    for village in db.session.scalars(query).all():
        policy = expiry_policy(village)
        if policy["mode"] == "none":
            continue
        for account_id, household_id, number in _households_with_old_points(village, _cutoff(policy, today)):
            with write_transaction():
                done.extend(expire_household(village, policy, account_id, household_id, number, today, now))
    return done


def verify_lots(report, account_kind: dict) -> None:
    """A ``ledger.hooks`` verify check: the lots of every household that may lapse points (its village
    has an expiry setting, or it has a lapse already) add up to its balance, none is below zero,
    and every lapse took points the household held in the lot its key names."""
    household_kind = {account_id for account_id, (kind, _h) in account_kind.items() if kind == "household"}
    villages = [village.id for village in db.session.scalars(select(Area).where(Area.level == "village"))
                if expiry_policy(village)["mode"] != "none"]
    accounts = set(db.session.scalars(select(Account.id).where(Account.kind == "household",
                                                                Account.village_id.in_(villages or [-1]))))
    accounts |= set(db.session.scalars(select(Transfer.debit_account_id).where(Transfer.code == "expiry")))
    accounts &= household_kind
    balances = dict(db.session.execute(select(Account.id, Account.balance).where(Account.id.in_(accounts or [-1]))
                                       ).all()) if accounts else {}
    books = lots.books_of(accounts)
    for account_id, book in books.items():
        report.counts["lot_accounts"] += 1
        report.counts["lots"] += len(book.lots)
        report.discrepancies.extend(lots.check_book(book, balances.get(account_id, 0)))
