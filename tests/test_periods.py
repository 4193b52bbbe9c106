"""Calendar periods (month 2026-11, quarter 2026-Q4, year 2026, all; calendar periods in
the deployment's zone while the database stores UTC): one spelling per period, bounds, neighbours,
labels, and what happens at the calendar's edges with the clock pinned there — the 1st at 00:05,
the last day at 23:59, 31 December → 1 January, 29 February, and a UTC date that is not yet the
local one. The edge tests post awards, redeem, rank, read statements and settle through the API
at the pinned moment, and check which period each lands in."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import time_machine
from flask_babel import force_locale

from support import DEMO_PASSWORD, csrf_from, local_moment, session_of
from moralbank import create_app, periods
from moralbank.errors import Invalid

UTC = timezone.utc


@pytest.fixture(scope="module")
def plain():
    """An app for its configuration only (the zone, the language); no database is touched."""
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "k" * 40, "TESTING": True})


# --- the module ------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["2026-11", "2026-01", "2026-12", "2026-Q1", "2026-Q4", "2026", "2000",
                                      "2099", "all"])
def test_each_period_has_one_spelling_and_it_is_accepted(plain, spelling):
    with plain.app_context():
        assert periods.check(spelling) == spelling
        if periods.kind(spelling) == "month":
            assert periods.check_month(spelling) == spelling
        else:  # statements and settlements are by month
            with pytest.raises(Invalid):
                periods.check_month(spelling)


@pytest.mark.parametrize("spelling", ["2026-10\n", "2026-10 ", " 2026-10", "20２６-10", "2026-1０", "２０２６",
                                      "2026-010", "2026-1", "2026-13", "2026-00", "2026-Q0", "2026-Q5", "2026-q4",
                                      "2026Q4", "1999", "2100", "ALL", "All", "", "26-11", "2026-11-01", None, 2026])
def test_any_other_spelling_is_refused_with_a_clear_error(plain, spelling):
    with plain.app_context():
        for check in (periods.check, periods.check_month):
            with pytest.raises(Invalid) as refused:
                check(spelling)
            assert refused.value.status == 422 and refused.value.code == "bad_period"
            assert "2026-11" in refused.value.message and refused.value.fields


def test_odd_spellings_are_refused_by_the_api_the_pages_and_the_statement(app, client, api):
    for spelling in ("2026-10\n", "20２６-10", " 2026-10"):
        assert client.get("/api/v1/rankings", query_string={"village": "BLM", "period": spelling}).status_code == 422
        assert api.get("/api/v1/stores/1/statement", "committee", query_string={"period": spelling}).status_code == 422
        response = client.get("/v/BLM", query_string={"period": spelling})  # the board: a message, not a 500
        assert response.status_code == 302 and response.headers["Location"].endswith("/v/BLM")


def local(text: str) -> datetime:
    return local_moment(text)


@pytest.mark.parametrize("period, start, end", [
    ("2026-11", "2026-11-01", "2026-12-01"),
    ("2026-12", "2026-12-01", "2027-01-01"),
    ("2028-02", "2028-02-01", "2028-03-01"),
    ("2026-Q1", "2026-01-01", "2026-04-01"),
    ("2026-Q4", "2026-10-01", "2027-01-01"),
    ("2026", "2026-01-01", "2027-01-01"),
])
def test_bounds_are_local_midnights(plain, period, start, end):
    with plain.app_context():
        assert periods.days(period) == (date.fromisoformat(start), date.fromisoformat(end))
        assert periods.bounds(period) == (local(start + " 00:00"), local(end + " 00:00"))
        # Shanghai is UTC+8: December starts at 16:00 UTC on 30 November
        assert periods.bounds("2026-12")[0] == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
        first, after = periods.bounds("all")
        assert first.year == 2000 and after.year == 2100


def test_february_of_a_leap_year_has_29_days(plain):
    with plain.app_context():
        first, after = periods.days("2028-02")
        assert (after - first).days == 29
        assert (periods.days("2027-02")[1] - periods.days("2027-02")[0]).days == 28
        assert periods.containing("month", date(2028, 2, 29)) == "2028-02"
        assert periods.containing("quarter", date(2028, 2, 29)) == "2028-Q1"


@pytest.mark.parametrize("period, before, after", [
    ("2026-11", "2026-10", "2026-12"),
    ("2026-12", "2026-11", "2027-01"),
    ("2026-01", "2025-12", "2026-02"),
    ("2026-Q1", "2025-Q4", "2026-Q2"),
    ("2026-Q4", "2026-Q3", "2027-Q1"),
    ("2026", "2025", "2027"),
])
def test_previous_and_next(plain, period, before, after):
    with plain.app_context():
        assert periods.previous(period) == before and periods.following(period) == after
        assert periods.following(periods.previous(period)) == period
        with pytest.raises(ValueError):
            periods.previous("all")


def test_labels_in_chinese_and_english(plain):
    with plain.app_context():
        assert [periods.label(p) for p in ("2026-11", "2026-Q4", "2026", "all")] == \
            ["2026年11月", "2026年第4季度", "2026年", "累计"]
        with force_locale("en"):
            assert [periods.label(p) for p in ("2026-11", "2026-Q4", "2026", "all")] == \
                ["11/2026", "2026 Q4", "2026", "All time"]


@pytest.mark.parametrize("moment, keys, day", [
    ("2026-11-30T15:59:59+00:00", ("2026-11", "2026-Q4", "2026", "all"), "2026-11-30"),
    ("2026-11-30T16:00:00+00:00", ("2026-12", "2026-Q4", "2026", "all"), "2026-12-01"),
    ("2026-11-30T17:00:00+00:00", ("2026-12", "2026-Q4", "2026", "all"), "2026-12-01"),
    ("2026-12-31T16:00:00+00:00", ("2027-01", "2027-Q1", "2027", "all"), "2027-01-01"),
    ("2028-02-28T16:30:00+00:00", ("2028-02", "2028-Q1", "2028", "all"), "2028-02-29"),
])
def test_the_periods_a_moment_falls_in_are_those_of_its_local_date(plain, moment, keys, day):
    when = datetime.fromisoformat(moment)
    with plain.app_context():
        assert periods.periods_of(when) == keys
        assert periods.today(when) == date.fromisoformat(day)
        assert [periods.containing(kind, when) for kind in periods.KINDS] == list(keys)
        with time_machine.travel(when, tick=False):
            assert periods.current() == dict(zip(periods.KINDS, keys))
            assert periods.current_month() == keys[0] and periods.today() == date.fromisoformat(day)


def test_the_zone_is_the_deployments():
    berlin = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "k" * 40, "TESTING": True,
                         "MORALBANK_TIMEZONE": "Europe/Berlin"})
    with berlin.app_context():
        assert periods.periods_of(datetime(2026, 11, 30, 17, 0, tzinfo=UTC))[0] == "2026-11"
        assert periods.bounds("2026-12")[0] == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def test_recent_periods_for_a_picker(plain):
    with plain.app_context():
        recent = periods.recent(local("2027-01-15 10:00"))
    assert recent[:12] == ["2027-01", "2026-12", "2026-11", "2026-10", "2026-09", "2026-08", "2026-07",
                           "2026-06", "2026-05", "2026-04", "2026-03", "2026-02"]
    assert recent[12:] == ["2027-Q1", "2026-Q4", "2026-Q3", "2026-Q2", "2027", "2026", "2025", "all"]
    with plain.app_context():
        assert periods.run_up_to("2026-02", 6) == ["2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02"]


# --- at the edges of the calendar, through the API ---------------------------------------------

PHONES = {"committee": "13900000001", "resident": "13900000002", "clerk": "13900000003"}


@pytest.fixture
def edge(empty_app):
    """A village of two households (the resident's and a neighbour's), a committee member, a shop
    and its clerk, made at the pinned moment; notice 0, so an approval posts at once."""
    from moralbank.awards.service import create_rule
    from moralbank.database import write_transaction
    from moralbank.people.service import create_area, create_household, create_user
    from moralbank.stores.service import add_item, create_store

    with session_of(empty_app):
        with write_transaction():
            county = create_area(level="county", code="EDC", name="边县")
            town = create_area(level="town", code="EDT", name="边镇", parent=county)
            village = create_area(level="village", code="EDGE", name="边村", parent=town, notice_days=0,
                                  approval_threshold=1000)
            hamlet = create_area(level="hamlet", code="EDGE-01", name="边屯", parent=village)
            own = create_household(village=village, hamlet=hamlet, number="EDGE-001", head_name="王建国")
            neighbour = create_household(village=village, hamlet=hamlet, number="EDGE-002", head_name="李秀兰")
            open_rule = create_rule(village, category="volunteer", title="参加志愿服务", points=10)
            capped = create_rule(village, category="hygiene", title="庭院整洁", points=5, cap_count=1,
                                 cap_period="month")
            store = create_store(village, name="边村积分超市")
            add_item(store, name="香皂", points=5, stock=50)
            create_user(phone=PHONES["committee"], name="赵主任", password=DEMO_PASSWORD, role="committee",
                        area=village)
            create_user(phone=PHONES["resident"], name="王建国", password=DEMO_PASSWORD, role="resident",
                        household=own)
            create_user(phone=PHONES["clerk"], name="孙店员", password=DEMO_PASSWORD, role="clerk", store=store)
            ids = {"own": own.id, "neighbour": neighbour.id, "rule": open_rule.id, "capped": capped.id,
                   "store": store.id}
    return Edge(empty_app, ids)


class Edge:
    """The edge village through the API, as its committee, resident and clerk use it."""

    def __init__(self, app, ids):
        self.app, self.client, self.ids, self.tokens = app, app.test_client(), ids, {}
        self.keys = 0

    def headers(self, who):
        if who not in self.tokens:
            response = self.client.post("/api/v1/auth/tokens", json={"phone": PHONES[who], "password": DEMO_PASSWORD})
            assert response.status_code == 201, response.get_json()
            self.tokens[who] = response.get_json()["token"]
        self.keys += 1
        return {"Authorization": f"Bearer {self.tokens[who]}", "Idempotency-Key": f"edge-{self.keys}"}

    def award(self, household="own", rule="rule", status=200):
        """Propose and approve (posted at once); returns the approved award, or the refusal."""
        body = {"household_id": self.ids[household], "rule_id": self.ids[rule]}
        response = self.client.post("/api/v1/awards", json=body, headers=self.headers("committee"))
        if response.status_code != 201:
            assert response.status_code == status, response.get_json()
            return response.get_json()["error"]
        award = response.get_json()
        response = self.client.post(f"/api/v1/awards/{award['id']}/approve", headers=self.headers("committee"))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == "posted"
        return response.get_json()

    def scores(self, period) -> dict[int, int]:
        """{household id: score} of the village's ranking for a period."""
        response = self.client.get("/api/v1/rankings", query_string={"village": "EDGE", "period": period})
        assert response.status_code == 200, response.get_json()
        return {item["household_id"]: item["score"] for item in response.get_json()["items"]}

    def redeem(self, points=5) -> dict:
        code = self.client.post("/api/v1/redemption-codes", headers=self.headers("resident")).get_json()["code"]
        response = self.client.post(f"/api/v1/stores/{self.ids['store']}/redemptions",
                                    json={"code": code, "points": points}, headers=self.headers("clerk"))
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def statement(self, period) -> dict:
        response = self.client.get(f"/api/v1/stores/{self.ids['store']}/statement", query_string={"period": period},
                                   headers=self.headers("committee"))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def settle(self, period):
        return self.client.post(f"/api/v1/stores/{self.ids['store']}/settlements", json={"period": period},
                                headers=self.headers("committee"))

    def login(self, who):
        """Log in through the web form."""
        page = self.client.get("/login").get_data(as_text=True)
        response = self.client.post("/login", data={"phone": PHONES[who], "password": DEMO_PASSWORD,
                                                     "csrf_token": csrf_from(page)})
        assert response.status_code == 302, response.get_data(as_text=True)[:300]

    def lands_in(self, household, *keys):
        """The household is ranked in exactly these of the month/quarter/year keys given."""
        own = self.ids[household]
        return {key for key in keys if own in self.scores(key)}


@pytest.mark.clock("2026-12-01 00:05")
def test_first_of_the_month_at_0005_counts_in_the_new_month(edge):
    award = edge.award()
    assert award["occurred_on"] == "2026-12-01"
    assert edge.scores("2026-12") == {edge.ids["own"]: 10}
    assert edge.scores("2026-11") == {}
    assert edge.lands_in("own", "2026-12", "2026-Q4", "2026", "all", "2026-11") == {"2026-12", "2026-Q4", "2026",
                                                                                    "all"}
    redemption = edge.redeem()
    assert [r["id"] for r in edge.statement("2026-12")["redemptions"]] == [redemption["id"]]
    assert edge.statement("2026-11")["redemptions"] == []
    # the board and the statement default to the new month
    board = edge.client.get("/v/EDGE").get_data(as_text=True)
    assert 'value="2026-12" selected' in board and "2026年12月" in board
    default = edge.client.get(f"/api/v1/stores/{edge.ids['store']}/statement", headers=edge.headers("committee"))
    assert default.get_json()["period"] == "2026-12"


@pytest.mark.clock("2026-11-30 23:59")
def test_last_day_at_2359_still_counts_in_the_month_which_can_be_settled_once_it_is_over(edge, clock):
    assert edge.award()["occurred_on"] == "2026-11-30"
    assert edge.lands_in("own", "2026-11", "2026-12", "2026-Q4") == {"2026-11", "2026-Q4"}
    redemption = edge.redeem(points=5)
    assert [r["id"] for r in edge.statement("2026-11")["redemptions"]] == [redemption["id"]]
    assert edge.statement("2026-12")["redemptions"] == []
    refused = edge.settle("2026-11")  # November is not over for another minute
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "period_open"

    clock.move_to(local_moment("2026-12-01 00:00:30"))
    settled = edge.settle("2026-11")
    assert settled.status_code == 201 and settled.get_json()["points"] == 5
    assert edge.statement("2026-11")["settlement"] is not None
    assert edge.settle("2026-12").get_json()["error"]["code"] == "period_open"


@pytest.mark.clock("2026-12-31 23:59:30")
def test_new_years_eve_to_new_years_day(edge, clock):
    edge.award("own")
    clock.move_to(local_moment("2027-01-01 00:00:30"))
    assert edge.award("neighbour")["occurred_on"] == "2027-01-01"
    own, neighbour = edge.ids["own"], edge.ids["neighbour"]
    assert edge.scores("2026-12") == {own: 10} and edge.scores("2026-Q4") == {own: 10}
    assert edge.scores("2026") == {own: 10}
    assert edge.scores("2027-01") == {neighbour: 10} and edge.scores("2027-Q1") == {neighbour: 10}
    assert edge.scores("2027") == {neighbour: 10}
    assert edge.scores("all") == {own: 10, neighbour: 10}
    # the dashboard's six months run across the new year, the last one the new month
    response = edge.client.get("/api/v1/villages/EDGE/dashboard", headers=edge.headers("committee"))
    months = response.get_json()["months"]
    assert months == ["2026-08", "2026-09", "2026-10", "2026-11", "2026-12", "2027-01"]
    assert response.get_json()["active"] == 1  # this month: the neighbour only


@pytest.mark.clock("2028-02-29 12:00")
def test_leap_day_counts_in_february_and_a_monthly_cap_opens_again_on_1_march(edge, clock):
    assert edge.award(rule="capped")["occurred_on"] == "2028-02-29"
    assert edge.lands_in("own", "2028-02", "2028-03", "2028-Q1") == {"2028-02", "2028-Q1"}
    refused = edge.award(rule="capped", status=422)
    assert refused["code"] == "cap_exceeded" and "2028-03-01" in refused["message"]

    clock.move_to(local_moment("2028-03-01 00:05"))
    assert edge.award(rule="capped")["occurred_on"] == "2028-03-01"
    assert edge.scores("2028-02") == {edge.ids["own"]: 5} and edge.scores("2028-03") == {edge.ids["own"]: 5}
    assert edge.scores("2028-Q1") == {edge.ids["own"]: 10}


@pytest.mark.clock("2026-11-30T17:00:00+00:00")
def test_a_utc_date_that_is_not_yet_the_local_one(edge):
    """17:00 UTC on 30 November is 01:00 on 1 December in Shanghai: December, everywhere."""
    award = edge.award()
    assert award["occurred_on"] == "2026-12-01"
    assert edge.scores("2026-12") == {edge.ids["own"]: 10} and edge.scores("2026-11") == {}
    redemption = edge.redeem()
    assert [r["id"] for r in edge.statement("2026-12")["redemptions"]] == [redemption["id"]]
    assert edge.statement("2026-11")["redemptions"] == []
    # the resident's home: December's score and rank
    edge.login("resident")
    home = edge.client.get("/home").get_data(as_text=True)
    assert "2026年12月" in home and 'data-testid="month-score">10<' in home
    assert 'data-testid="rank">第 1 名 / 1 户<' in home
    # the cap period is December's too: the capped rule can still be earned in December only once
    edge.award(rule="capped")
    assert edge.award(rule="capped", status=422)["code"] == "cap_exceeded"
    # a paper record entered now (an import, the demo's history) is dated by the local day as well
    from moralbank.awards.models import Rule
    from moralbank.awards.service import record_award
    from moralbank.database import write_transaction
    from moralbank.people.models import Household

    with session_of(edge.app) as session:
        with write_transaction():
            household = session.get(Household, edge.ids["neighbour"])
            assert record_award(household, session.get(Rule, edge.ids["rule"])).occurred_on == date(2026, 12, 1)
    assert edge.scores("2026-12")[edge.ids["neighbour"]] == 10
