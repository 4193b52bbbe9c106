"""Calendar periods, the one home of their arithmetic: month ``2026-11``, quarter ``2026-Q4``,
year ``2026`` and ``all`` (all time).

A period is named by its key, the text stored in ``household_scores.period`` and
``settlements.period``; so each period has exactly one spelling: ASCII digits, a year from 2000
to 2099, a two-digit month, nothing around it (no space, no trailing newline: ``2026-10\\n``
or ``２０２６-10`` must never name October a second time).

Periods are calendar periods in the deployment's time zone (``moralbank.database.local_zone()``,
Asia/Shanghai by default) while the database stores UTC: 2026-11-30 17:00 UTC is already
1 December in Shanghai, so a posting then counts in ``2026-12``, ``2026-Q4``, ``2026``.
"""
from __future__ import annotations

import re
from datetime import date, datetime, tzinfo

from flask_babel import gettext as _

from .database import local_zone, utcnow
from .errors import Invalid

ALL = "all"
#: the kinds of period, shortest first
KINDS = ("month", "quarter", "year", ALL)

#: the spellings as the OpenAPI document states them; always match them whole (``fullmatch``):
#: ``$`` alone also matches before a final newline
MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
PERIOD_PATTERN = r"^(all|20[0-9]{2}|20[0-9]{2}-Q[1-4]|20[0-9]{2}-(0[1-9]|1[0-2]))$"
_MONTH = re.compile(MONTH_PATTERN)
_PERIOD = re.compile(PERIOD_PATTERN)

#: the span ``all`` stands for when a query needs bounds (the keys name years 2000–2099 only)
_ALL_DAYS = (date(2000, 1, 1), date(2100, 1, 1))


# --- spelling --------------------------------------------------------------------------------

def check(period: str | None) -> str:
    """``period`` if it is exactly the key of a month, quarter, year or ``all``; else
    ``Invalid`` (422, ``bad_period``) with a message that shows the four spellings."""
    if not isinstance(period, str) or not _PERIOD.fullmatch(period):
        raise Invalid(_("期间应为 2026-11、2026-Q4、2026 或 all"), code="bad_period",
                      fields={"period": [_("格式不对")]})
    return period


def check_month(period: str | None, *, field: str = "period") -> str:
    """``period`` if it is exactly the key of a month (``2026-11``); else ``Invalid`` (422,
    ``bad_period``) naming ``field``. Statements and settlements are kept by month."""
    if not isinstance(period, str) or not _MONTH.fullmatch(period):
        raise Invalid(_("期间格式应为 2026-11"), code="bad_period", fields={field: [_("格式不对")]})
    return period


def kind(period: str) -> str:
    """``month``, ``quarter``, ``year`` or ``all``: the kind of a period key."""
    return _parts(period)[0]


def _parts(period: str) -> tuple[str, int, int]:
    """(kind, year, month or quarter number) of a key; a bad spelling is ``Invalid``."""
    check(period)
    if period == ALL:
        return ALL, 0, 0
    if "-Q" in period:
        return "quarter", int(period[:4]), int(period[6:])
    if "-" in period:
        return "month", int(period[:4]), int(period[5:])
    return "year", int(period), 0


def _key(kind_: str, year: int, number: int = 0) -> str:
    if kind_ == "month":
        return f"{year}-{number:02d}"
    if kind_ == "quarter":
        return f"{year}-Q{number}"
    if kind_ == "year":
        return f"{year}"
    return ALL


# --- which periods a moment falls in ---------------------------------------------------------

def periods_of(moment: datetime, zone: tzinfo | None = None) -> tuple[str, str, str, str]:
    """The month, quarter, year and ``all`` keys of a moment, by its date in the local zone.

    The ledger calls this for every posting (and ``verify`` for every transfer): keep it cheap.
    ``zone`` defaults to the deployment's; code outside an app (bench) passes its own.
    """
    local = moment.astimezone(zone or local_zone())
    year, month = local.year, local.month
    return f"{year}-{month:02d}", f"{year}-Q{(month - 1) // 3 + 1}", f"{year}", ALL


def containing(kind_: str, when: datetime | date) -> str:
    """The key of the period of kind ``kind_`` that ``when`` falls in: a moment by its local
    date, a date (an award's ``occurred_on``) as it is."""
    day = when.astimezone(local_zone()).date() if isinstance(when, datetime) else when
    if kind_ == "month":
        return _key("month", day.year, day.month)
    if kind_ == "quarter":
        return _key("quarter", day.year, (day.month - 1) // 3 + 1)
    if kind_ == "year":
        return _key("year", day.year)
    if kind_ == ALL:
        return ALL
    raise ValueError(f"not a kind of period: {kind_!r}")


def current(moment: datetime | None = None) -> dict[str, str]:
    """This month's, quarter's and year's keys (and ``all``), by the app's clock unless given."""
    month, quarter, year, everything = periods_of(moment or utcnow())
    return {"month": month, "quarter": quarter, "year": year, ALL: everything}


def current_month(moment: datetime | None = None) -> str:
    """This month's key in the local zone (``2026-12`` from 2026-11-30 16:00 UTC on, in Shanghai)."""
    return periods_of(moment or utcnow())[0]


def today(moment: datetime | None = None) -> date:
    """The local calendar date of a moment (now by default): the day an award occurred on."""
    return (moment or utcnow()).astimezone(local_zone()).date()


def day_start(day: date) -> datetime:
    """Local midnight at the start of ``day``, timezone-aware (compares with UTC timestamps)."""
    return datetime(day.year, day.month, day.day, tzinfo=local_zone())


def add_months(day: date, months: int) -> date:
    """The same day ``months`` calendar months later (earlier when negative), kept within the month:
    31 August + 6 months is 28 (or 29) February. Point expiry (``months`` mode) counts this way."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    following_first = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, min(day.day, (following_first - date(year, month, 1)).days))


# --- bounds ----------------------------------------------------------------------------------

def days(period: str) -> tuple[date, date]:
    """First day of the period and first day after it (local calendar dates)."""
    kind_, year, number = _parts(period)
    if kind_ == ALL:
        return _ALL_DAYS
    if kind_ == "year":
        return date(year, 1, 1), date(year + 1, 1, 1)
    first = number if kind_ == "month" else 3 * number - 2
    after = first + (1 if kind_ == "month" else 3)  # month number after the period, may be 13
    return date(year, first, 1), date(year + (after > 12), (after - 1) % 12 + 1, 1)


def bounds(period: str) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the period: local midnights, timezone-aware, so
    they compare with the UTC timestamps in the database."""
    zone = local_zone()
    first, after = days(period)
    return (datetime(first.year, first.month, first.day, tzinfo=zone),
            datetime(after.year, after.month, after.day, tzinfo=zone))


# --- neighbours and lists --------------------------------------------------------------------

def shift(period: str, steps: int) -> str:
    """The period ``steps`` periods of the same kind later (earlier when negative)."""
    kind_, year, number = _parts(period)
    if kind_ == ALL:
        raise ValueError("'all' has no neighbours")
    if kind_ == "year":
        return _key("year", year + steps)
    size = 12 if kind_ == "month" else 4
    index = year * size + number - 1 + steps
    return _key(kind_, index // size, index % size + 1)


def previous(period: str) -> str:
    """The period of the same kind just before (``2026-01`` → ``2025-12``, ``2026-Q1`` → ``2025-Q4``)."""
    return shift(period, -1)


def following(period: str) -> str:
    """The period of the same kind just after (``2026-12`` → ``2027-01``)."""
    return shift(period, 1)


def run_up_to(period: str, count: int) -> list[str]:
    """``count`` periods of the same kind ending with ``period``, oldest first (a chart's bars)."""
    return [shift(period, step) for step in range(1 - count, 1)]


def recent(moment: datetime | None = None, *, months: int = 12, quarters: int = 4,
           years: int = 3) -> list[str]:
    """Periods for a picker, newest first within each kind: this month and the ones before it
    (``months`` in all), this quarter and those before, this year and those before, then ``all``."""
    now = current(moment)
    keys: list[str] = []
    for kind_, count in (("month", months), ("quarter", quarters), ("year", years)):
        keys.extend(reversed(run_up_to(now[kind_], count)) if count > 0 else [])
    return [key for key in keys if _PERIOD.fullmatch(key)] + [ALL]


def label(period: str) -> str:
    """How a period reads on a page: 2026年11月, 2026年第4季度, 2026年, 累计 (translated)."""
    kind_, year, number = _parts(period)
    if kind_ == ALL:
        return _("累计")
    if kind_ == "quarter":
        return _("%(year)s年第%(q)s季度", year=str(year), q=str(number))
    if kind_ == "month":
        return _("%(year)s年%(month)s月", year=str(year), month=number)
    return _("%(year)s年", year=str(year))


def is_over(period: str, moment: datetime | None = None) -> bool:
    """Whether the period has ended (its last local day is past) at ``moment`` (now by default):
    a month can be settled, and a ranking published as final, only once it is over."""
    return bounds(period)[1] <= (moment or utcnow())


def last_month(moment: datetime | None = None) -> str:
    """The month that ended most recently (``2026-11`` all through December): the 红榜 a
    committee publishes and the month it settles with its stores."""
    return previous(current_month(moment))


def group_label(kind_: str) -> str:
    """The heading of a picker's group of periods of one kind (``open``: not over yet)."""
    return {"month": _("月份"), "quarter": _("季度"), "year": _("年度"), ALL: _("累计"),
            "open": _("未结束")}.get(kind_, kind_)


def picker(kinds: tuple[str, ...] = KINDS, moment: datetime | None = None, *,
           finished_first: bool = False, keep: str | None = None) -> list[dict]:
    """The choices of a period picker, grouped by kind:
    ``[{"kind": "month", "label": "月份", "options": [(key, label), …]}, …]``.

    The past 12 months, 4 quarters and 3 years (``recent``), newest first, limited to ``kinds``
    (a monthly statement offers months only). With ``finished_first`` (publishing a ranking),
    the periods already over come first, the month just ended at the very top, and the
    unfinished current month, quarter and year follow in a last group of their own (kind
    ``open``), so a form's first option is never an unfinished period. ``keep``, a period the
    page shows that the list lacks (an older month typed into the URL), is offered first.
    """
    extra = 1 if finished_first else 0  # as many finished periods as a plain picker's
    keys = [key for key in recent(moment, months=12 + extra, quarters=4 + extra, years=3 + extra)
            if kind(key) in kinds]
    if keep and keep not in keys and _PERIOD.fullmatch(keep) and kind(keep) in kinds:
        keys.insert(0, keep)
    if finished_first:
        ended = [key for key in keys if key == ALL or is_over(key, moment)]
        ongoing = [key for key in keys if key not in ended]
        groups = _grouped(ended)
        if ongoing:
            groups.append({"kind": "open", "label": group_label("open"),
                           "options": [(key, label(key)) for key in ongoing]})
        return groups
    return _grouped(keys)


def _grouped(keys: list[str]) -> list[dict]:
    groups: list[dict] = []
    for key in keys:
        kind_ = kind(key)
        if not groups or groups[-1]["kind"] != kind_:
            groups.append({"kind": kind_, "label": group_label(kind_), "options": []})
        groups[-1]["options"].append((key, label(key)))
    return groups
