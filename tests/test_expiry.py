"""Point expiry by village policy: the lot rule, the ``expiry`` setting, ``flask ledger expire`` and
what the resident sees (the demo's XLC lets points lapse 6 months after posting)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from support import csrf_from, local_moment, session_of

MOMENT = "2026-12-01 09:30"
H, ISSUANCE, SINK, STORE = 1, 2, 3, 4
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _row(tid, day, code, amount, debit, credit, reverses=None, key=None):
    return (tid, T0 + timedelta(days=day), code, amount, debit, credit, reverses, key or f"k{tid}")


def test_the_lot_rule_step_by_step():
    """Credits open lots, debits spend the oldest first, reversals put points back where they were."""
    from moralbank.ledger.expiry import LotBook, check_book

    book = LotBook(H)
    steps = [
        (_row(1, 0, "award", 10, ISSUANCE, H), {1: 10}, 0),
        (_row(2, 5, "award", 5, ISSUANCE, H), {1: 10, 2: 5}, 0),
        (_row(3, 6, "redemption", 12, H, STORE), {1: 0, 2: 3}, 0),           # oldest first
        (_row(4, 7, "reversal", 12, STORE, H, reverses=3), {1: 10, 2: 5}, 0),  # refunded into its own lots
        (_row(5, 8, "reversal", 10, H, ISSUANCE, reverses=1), {1: 0, 2: 5}, 0),  # an award's reversal: its own lot
        (_row(6, 9, "deduction", 8, H, SINK), {1: 0, 2: 0}, 3),               # below zero: a deficit
        (_row(7, 10, "award", 4, ISSUANCE, H), {1: 0, 2: 0, 7: 1}, 0),        # the next credit pays it first
        (_row(8, 11, "award", 6, ISSUANCE, H), {7: 1, 8: 6}, 0),
        (_row(9, 12, "expiry", 1, H, SINK, key="expiry:9:7"), {7: 0, 8: 6}, 0),  # the lapse takes its own lot
        (_row(10, 13, "reversal", 1, SINK, H, reverses=9), {7: 0, 8: 6, 10: 1}, 0),  # a lapse undone: new points
        (_row(11, 14, "reversal", 8, SINK, H, reverses=6), {2: 5, 8: 6, 10: 1}, 0),  # deduction withdrawn
    ]
    for row, lefts, deficit in steps:
        book.apply(row)
        assert {lot_id: book.lots[lot_id].left for lot_id in lefts} == lefts, row
        assert book.deficit == deficit, row
        assert book.held - book.deficit == book.balance, row
        assert check_book(book, book.balance) == [], row
    # the withdrawn deduction gave back lot 2's five points with lot 2's own date, and the three that lot 7
    # had paid towards the deficit as a new lot
    assert book.lots[2].dated == T0 + timedelta(days=5) and book.lots[11].left == 3
    assert [lot.id for lot in book.open_lots()] == [2, 8, 10, 11]
    assert check_book(book, book.balance + 1)  # a wrong balance is reported


def _household(app, number):
    from moralbank.ledger.models import Account
    from moralbank.people.models import Household
    from moralbank.rankings.models import HouseholdScore

    with session_of(app) as s:
        household_id = s.scalar(select(Household.id).where(Household.number == number))
        balance = s.scalar(select(Account.balance).where(Account.household_id == household_id))
        scores = dict(s.execute(select(HouseholdScore.period, HouseholdScore.score)
                                .where(HouseholdScore.household_id == household_id)).all())
    return household_id, balance, scores


def _all_scores(app):
    from moralbank.rankings.models import HouseholdScore

    with session_of(app) as s:
        return s.execute(select(HouseholdScore.household_id, HouseholdScore.period, HouseholdScore.score)
                         .order_by(HouseholdScore.household_id, HouseholdScore.period)).all()


@pytest.mark.clock(MOMENT)
def test_the_committee_sets_expiry_and_bad_settings_change_nothing(app, api, client, auth):
    assert api.get("/api/v1/villages/BLM", "committee").get_json()["expiry"] == {"mode": "none"}
    assert api.get("/api/v1/villages/XLC", "committee_xlc").get_json()["expiry"] == {"mode": "months", "months": 6}
    for bad in ({"mode": "weekly"}, {"mode": "months", "months": 0}, {"mode": "months", "months": "6"},
                {"mode": "annual", "on": "02-30"}, {"mode": "annual", "on": "02-29"}, {"mode": "annual"},
                {"mode": "none", "months": 3}, "none"):
        answer = client.patch("/api/v1/villages/BLM", json={"expiry": bad, "notice_days": 5},
                              headers=api.headers("committee"))
        assert answer.status_code == 422, bad
        assert "expiry" in answer.get_json()["error"]["fields"], bad
    assert api.get("/api/v1/villages/BLM", "committee").get_json()["notice_days"] == 3  # nothing changed
    ok = client.patch("/api/v1/villages/BLM", json={"expiry": {"mode": "months", "months": 24}},
                      headers=api.headers("committee"))
    assert ok.status_code == 200 and ok.get_json()["expiry"] == {"mode": "months", "months": 24}

    auth.login("committee")
    html = client.get("/committee/settings").get_data(as_text=True)
    assert 'value="24"' in html and "积分清零" in html
    form = {"csrf_token": csrf_from(html), "notice_days": "3", "code_ttl_seconds": "300", "approval_threshold": "20",
            "star_thresholds": "20 50 100 160 240", "expiry_mode": "months", "expiry_months": "两年"}
    refused = client.post("/committee/settings", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "积分清零：月数应为 1 到 120 的整数" in text and 'value="两年"' in text
    saved = client.post("/committee/settings", data=dict(form, expiry_mode="annual", expiry_on="12-31"),
                        follow_redirects=True)
    assert "设置已保存" in saved.get_data(as_text=True)
    assert api.get("/api/v1/villages/BLM", "committee").get_json()["expiry"] == {"mode": "annual", "on": "12-31"}


@pytest.mark.clock(MOMENT)
def test_the_resident_sees_what_lapses_and_cron_lapses_it_once(app, api, client, auth, runner, clock):
    me = api.get("/api/v1/me", "13800000146").get_json()["household"]
    soon = [entry for entry in me["expiring"] if date.fromisoformat(entry["on"]) <= date(2026, 12, 31)]
    assert soon and all(entry["points"] > 0 for entry in soon)
    assert sum(entry["points"] for entry in me["expiring"]) <= me["balance"]
    auth.login("13800000146")
    home = client.get("/home").get_data(as_text=True)
    assert "积分即将到期清零" in home and f"{soon[0]['points']} 分将于 {soon[0]['on']} 到期清零" in home
    auth.logout()
    auth.login("resident")  # BLM lets no points lapse: no warning
    assert "积分即将到期清零" not in client.get("/home").get_data(as_text=True)

    household_id, balance, scores = _household(app, "XLC-001")
    listed = api.get("/api/v1/villages/XLC/households", "committee_xlc").get_json()["items"]
    assert next(item for item in listed if item["id"] == household_id)["expiring"] == me["expiring"]
    assert all(item["expiring"] == [] for item in
               api.get("/api/v1/villages/BLM/households", "committee").get_json()["items"])
    every_score = _all_scores(app)
    clock.move_to(local_moment("2026-12-20 02:00"))  # (API tokens live 30 days)
    due = sum(entry["points"] for entry in me["expiring"] if date.fromisoformat(entry["on"]) < date(2026, 12, 20))
    assert due > 0
    result = runner.invoke(args=["ledger", "expire"])
    assert result.exit_code == 0, result.output
    assert "XLC XLC-001:" in result.output and "lapsed" in result.output
    _h, after, scores_after = _household(app, "XLC-001")
    assert after == balance - due
    assert scores_after == scores and _all_scores(app) == every_score  # expiry never lowers a score
    again = runner.invoke(args=["ledger", "expire"])
    assert again.exit_code == 0 and "lapsed 0 points in 0 lots" in again.output
    assert _household(app, "XLC-001")[1] == after

    lines = api.get(f"/api/v1/households/{household_id}/transfers", "committee_xlc").get_json()["items"]
    lapses = [line for line in lines if line["code"] == "expiry"]
    assert lapses and sum(-line["amount"] for line in lapses) == due
    left = api.get(f"/api/v1/households/{household_id}", "committee_xlc").get_json()["expiring"]
    assert left and all(date.fromisoformat(entry["on"]) >= date(2026, 12, 20) for entry in left)
    verify = runner.invoke(args=["ledger", "verify"])
    assert verify.exit_code == 0, verify.output

    # the committee reverses a lapse: the points are back, as new points that live another 6 months
    reversed_ = api.post(f"/api/v1/transfers/{lapses[0]['id']}/reversal", "committee_xlc", json={"reason": "误清零"})
    assert reversed_.status_code == 201, reversed_.get_json()
    assert _household(app, "XLC-001")[1] == after - lapses[0]["amount"]
    left = api.get(f"/api/v1/households/{household_id}", "committee_xlc").get_json()["expiring"]
    assert {"points": -lapses[0]["amount"], "on": "2027-06-20"} in left
    assert "lapsed 0 points" in runner.invoke(args=["ledger", "expire"]).output
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


@pytest.mark.clock("2026-12-31 20:00")
def test_annual_expiry_lapses_the_year_at_its_end(app, api, client, runner, clock):
    from moralbank.ledger.models import Account
    from moralbank.people.models import Area

    answer = client.patch("/api/v1/villages/BLM", json={"expiry": {"mode": "annual", "on": "12-31"}},
                          headers=api.headers("committee"))
    assert answer.status_code == 200
    with session_of(app) as s:
        positive = s.execute(select(Account.household_id, Account.balance).join(Area, Area.id == Account.village_id)
                             .where(Area.code == "BLM", Account.kind == "household", Account.balance > 0)).all()
    assert positive
    household_id = positive[0][0]
    expiring = api.get(f"/api/v1/households/{household_id}", "committee").get_json()["expiring"]
    assert expiring == [{"points": positive[0][1], "on": "2026-12-31"}]
    assert "lapsed 0 points" in runner.invoke(args=["ledger", "expire", "--village", "BLM"]).output  # not yet
    every_score = _all_scores(app)
    clock.move_to(local_moment("2027-01-01 00:30"))
    result = runner.invoke(args=["ledger", "expire", "--village", "BLM"])
    assert f"lapsed {sum(b for _h, b in positive)} points" in result.output, result.output
    with session_of(app) as s:
        assert s.scalar(select(Account.balance).where(Account.household_id == household_id)) == 0
    assert _all_scores(app) == every_score
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


@pytest.mark.slow
@pytest.mark.clock(MOMENT)
def test_racing_expire_runs_and_spending_lapse_each_lot_once(app):
    """Four cron runs at once and four tills spending from the same households: each lot lapses once,
    no household is overdrawn, and the lots still add up (verify)."""
    from test_ledger_races import assert_verifies, race

    from moralbank.awards.expiry import expire_due
    from moralbank.database import write_transaction
    from moralbank.extensions import db
    from moralbank.ledger import service as ledger
    from moralbank.ledger.models import Account, Transfer
    from moralbank.ledger.service import InsufficientPoints
    from moralbank.people.models import Area, Household
    from moralbank.stores.models import Store

    with app.app_context():
        with write_transaction():
            db.session.scalar(select(Area).where(Area.code == "XLC")).expiry = {"mode": "months", "months": 2}
        households = db.session.scalars(select(Household.id).join(Area, Area.id == Household.village_id)
                                        .where(Area.code == "XLC").order_by(Household.id).limit(4)).all()
        store_id = db.session.scalar(select(Store.id).join(Area, Area.id == Store.village_id)
                                     .where(Area.code == "XLC"))
        lapses_before = db.session.scalar(select(func.count()).select_from(Transfer).where(Transfer.code == "expiry"))
        before = dict(db.session.execute(select(Account.household_id, Account.balance)
                                         .where(Account.household_id.in_(households))).all())
        db.session.remove()

    def worker(number: int):
        if number < 4:
            return [lapse for lapse in expire_due(village_code="XLC") if not lapse.replayed]
        spent = 0
        for attempt in range(5):
            try:
                with write_transaction():
                    ledger.transfer(debit=ledger.household_account(households[number - 4]),
                                    credit=ledger.store_account(store_id), amount=7, code="redemption",
                                    idempotency_key=f"expiry-race-{number}-{attempt}", reason="race")
                spent += 1
            except InsufficientPoints:
                pass
        return spent

    results, errors, _seconds = race(app, 8, worker)
    assert not errors, errors
    lapsed = [lapse for result in results if isinstance(result, list) for lapse in result]
    with app.app_context():
        keys = db.session.scalars(select(Transfer.idempotency_key).where(Transfer.code == "expiry")).all()
        assert len(keys) == lapses_before + len(lapsed) and len(set(keys)) == len(keys)
        assert lapsed, "months = 2 leaves four months of the demo's history due"
        after = dict(db.session.execute(select(Account.household_id, Account.balance)
                                        .where(Account.household_id.in_(households))).all())
        assert all(after[h] >= 0 for h in households if before[h] >= 0), (before, after)
        db.session.remove()
    assert_verifies(app)


def test_points_back_from_a_hold_keep_their_age():
    """A hold's return (``void``, or the ``post`` that returns the whole hold before the shop is
    paid) goes back into the lots the ``pending`` debit took: holding old points for an offline
    voucher and letting it lapse does not make them new (they still lapse when they would have)."""
    from moralbank.ledger.expiry import LotBook

    HOLD = 5
    book = LotBook(H)
    book.apply(_row(1, 0, "award", 10, ISSUANCE, H))
    book.apply(_row(2, 100, "award", 5, ISSUANCE, H))
    book.apply(_row(3, 101, "pending", 12, H, HOLD) + (None,))
    assert {1: 0, 2: 3} == {i: book.lots[i].left for i in (1, 2)}
    book.apply(_row(4, 140, "void", 12, HOLD, H) + (3,))    # the hold's row names pending transfer 3
    assert {1: 10, 2: 5} == {i: book.lots[i].left for i in (1, 2)} and 4 not in book.lots
    assert book.lots[1].dated == T0 and book.balance == 15
    book.apply(_row(5, 150, "pending", 4, H, HOLD) + (None,))
    book.apply(_row(6, 151, "post", 4, HOLD, H) + (5,))     # post returns the hold, then the shop is paid
    book.apply(_row(7, 151, "redemption", 3, H, STORE) + (None,))
    assert {1: 7, 2: 5} == {i: book.lots[i].left for i in (1, 2)} and book.balance == 12
    # without the hold's link (an older reader) the return would have opened a new lot dated day 140
    fresh = LotBook(H)
    for row in (_row(1, 0, "award", 10, ISSUANCE, H), _row(3, 101, "pending", 10, H, HOLD),
                _row(4, 140, "void", 10, HOLD, H)):
        fresh.apply(row)
    assert 4 in fresh.lots


@pytest.mark.clock("2026-12-01 09:30")
def test_a_voided_hold_leaves_the_lapse_dates_as_they_were(app):
    """Through the database: what will lapse, and when, is the same after a hold placed on the
    household's oldest points is voided (``flask ledger expire-holds``' way of giving them back)."""
    from moralbank.awards.expiry import expiring
    from moralbank.database import write_transaction
    from moralbank.extensions import db
    from moralbank.ledger import holds
    from moralbank.ledger.models import Account
    from moralbank.people.models import Household

    with app.app_context():
        household = db.session.scalar(select(Household).where(Household.number == "XLC-001"))
        before = expiring(household)
        assert before, "the demo's XLC-001 has points lapsing soon"
        balance = db.session.scalar(select(Account.balance).where(Account.household_id == household.id))
        db.session.rollback()
        with write_transaction():
            hold = holds.place(household.id, balance, expires_at=local_moment("2026-12-02 09:30"),
                               idempotency_key="test:hold-age")
        with write_transaction():
            holds.void(db.session.get(holds.Hold, hold.id), reason="test")
        db.session.expire_all()
        assert expiring(db.session.get(Household, household.id)) == before
        db.session.rollback()
