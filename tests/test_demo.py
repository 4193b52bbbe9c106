"""The demo village looks alive on any day: ``flask seed-demo`` spreads half a year of
history up to the moment it runs, the current month always has scored households (someone who runs
``make run`` on the 1st sees a living board), and the history keeps within the catalogue's caps,
so the next award the committee makes is judged by the same rules as the ones before it."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime

import pytest
from sqlalchemy import select, text

from support import local_moment, session_of
from test_rankings import SHANGHAI, expected_order, household_id, ranking

FIRST_AT_0005 = "2026-12-01 00:05"


def month_of(moment: datetime) -> str:
    local = moment.astimezone(SHANGHAI)
    return f"{local.year}-{local.month:02d}"


@pytest.mark.clock(FIRST_AT_0005)
def test_the_demo_seeded_on_the_1st_at_0005_has_a_living_month(app, client):
    from moralbank.ledger.models import Transfer

    for village, households in (("BLM", 60), ("XLC", 20)):
        month = ranking(client, village=village, period="2026-12")["items"]
        assert len(month) > households // 2, (village, len(month))
        assert [(i["household_id"], i["score"]) for i in month] == expected_order(app, village, "2026-12")
        assert len(ranking(client, village=village, period="2026-Q4")["items"]) >= len(month)
    board = client.get("/v/BLM").get_data(as_text=True)  # the public board opens on this month
    assert 'value="2026-12" selected' in board
    assert all(line["label"] in board for line in ranking(client, village="BLM", period="2026-12")["items"][:10])

    # the resident's household has points to spend and a place (not the first) in this month's ranking
    own = household_id(app, "BLM-001")
    assert own in [hid for hid, _score in expected_order(app, "BLM", "2026-12")][1:]
    with session_of(app) as session:
        assert session.scalar(text("SELECT balance FROM accounts WHERE household_id = :h"), {"h": own}) > 0
        stamps = list(session.scalars(select(Transfer.created_at)))
    # half a year up to this moment: each of the six months before this one, and nothing after now
    assert max(stamps) <= local_moment(FIRST_AT_0005)
    months = Counter(month_of(stamp) for stamp in stamps)
    assert set(months) == {"2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11", "2026-12"}
    assert months["2026-12"] > 100  # a whole month's activity in the five minutes gone by


def cap_key(kind: str, day: date) -> str:
    """The cap period of a day, computed here from the calendar (not by the app's periods module)."""
    if kind == "month":
        return f"{day.year}-{day.month:02d}"
    if kind == "quarter":
        return f"{day.year}-Q{(day.month + 2) // 3}"
    return str(day.year)


@pytest.mark.parametrize("seeded", ["now", pytest.param("on the 1st", marks=pytest.mark.clock(FIRST_AT_0005))])
def test_no_household_in_the_demo_history_exceeds_a_cap(app, seeded):
    with session_of(app) as session:
        rows = session.execute(text(
            "SELECT a.household_id, r.family_id, r.title, r.cap_count, r.cap_period, a.occurred_on, a.quantity "
            "FROM awards a JOIN rules r ON r.id = a.rule_id "
            "WHERE r.cap_count IS NOT NULL AND a.status <> 'rejected'")).all()
    assert len(rows) > 500
    used: Counter = Counter()
    caps = {}
    for household, family, title, cap, kind, occurred_on, quantity in rows:
        day = occurred_on if isinstance(occurred_on, date) else date.fromisoformat(str(occurred_on))
        key = (household, family, title, cap_key(kind, day))
        used[key] += quantity
        caps[key] = cap
    over = {key: count for key, count in used.items() if count > caps[key]}
    assert not over, sorted(over.items())[:5]
