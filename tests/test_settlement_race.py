"""Settlements against reversals and redemptions of their month, and the keys that name reversals
(issue 10; issue 13's stock).

* A settlement and a reversal of one of its month's redemptions, sent at the same moment, used to
  both answer 201 on PostgreSQL (the shop paid for points handed back): now exactly one order
  happens — the reversal first (the settlement leaves it out) or the settlement first (the
  reversal is refused with ``period_settled``). Same for a redemption dated in the month.
* ``ledger verify`` (and ``flask ledger verify``) reports a settlement that does not equal its
  month's net redemptions, so the nightly check sees any such drift.
* Idempotency keys are never cut: 128-character keys that differ only at the end name two
  reversals; a longer key is refused with 422 (API) or a message (form).
* A retry of a reversal after its month was settled replays it; a reversed redemption puts
  back the stock it took.

The races run with real concurrent connections (a thread each, released together by a barrier),
through the API for settlement against reversal; on SQLite write transactions are serial, on
PostgreSQL the store's account row, locked by all three, is what orders them.
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from support import DEMO_PASSWORD, PHONES, csrf_from
from moralbank.database import local_zone, utcnow, write_transaction
from moralbank.errors import DomainError
from moralbank.extensions import db
from moralbank.ledger import service as ledger
from moralbank.ledger.models import Account, Transfer
from moralbank.ledger.verify import verify
from moralbank.people.models import Household, User
from moralbank.people.service import village_by_code
from moralbank.stores import service as stores
from moralbank.stores.models import Item, Redemption, Settlement, Store
from test_shop_races import give_points, race

API = "/api/v1"
ROUNDS = 24
DEADLINE = 30


@pytest.fixture
def app_config(tmp_path):
    # The races send many committee writes in a row: this file is about ordering, not throttling.
    return {"UPLOAD_FOLDER": str(tmp_path / "uploads"), "RATELIMIT_ENABLED": False}


# --- arranging -------------------------------------------------------------------------------

def past_months(count: int, *, skip: int = 2) -> list[str]:
    """``count`` whole months that are over, the newest ``skip`` months before this one."""
    local = utcnow().astimezone(local_zone())
    year, month = local.year, local.month
    months = []
    for back in range(skip, skip + count):
        y, m = divmod((year * 12 + month - 1) - back, 12)
        months.append(f"{y}-{m + 1:02d}")
    return months


def mid_month(period: str, hour: int = 12) -> datetime:
    year, month = map(int, period.split("-"))
    return datetime(year, month, 15, hour, tzinfo=local_zone())


def committee() -> User:
    return db.session.scalar(select(User).where(User.phone == PHONES["committee"]))


def new_store(app, months: list[str], amounts: tuple[int, ...]) -> tuple[int, int, dict[str, list[int]]]:
    """A fresh store of BLM with redemptions of ``amounts`` by one household in each month:
    (store id, household id, {month: [redemption transfer ids in the order of amounts]})."""
    with app.test_request_context():
        with write_transaction():
            village = village_by_code("BLM")
            store = stores.create_store(village, name=f"结算竞态 {uuid.uuid4().hex[:6]}")
            household = db.session.scalar(select(Household).where(Household.village_id == village.id)
                                          .order_by(Household.id))
            ids = store.id, household.id
        db.session.remove()
    return ids[0], ids[1], {month: fill_month(app, ids[0], ids[1], month, amounts) for month in months}


def fill_month(app, store_id: int, household_id: int, month: str, amounts: tuple[int, ...]) -> list[int]:
    """Redemptions of ``amounts`` in the month (the household is given the points): their transfer ids."""
    with app.test_request_context():
        with write_transaction():
            household, store = db.session.get(Household, household_id), db.session.get(Store, store_id)
            give_points(household, sum(amounts))
            paid = []
            for number, amount in enumerate(amounts):
                redemption = stores.redeem(household, store, points=amount, at=mid_month(month, 9 + number))
                paid.append(db.session.scalar(select(Transfer.id).where(
                    Transfer.redemption_id == redemption.id, Transfer.code == "redemption")))
        db.session.remove()
    return paid


def net_of(app, store_id: int, month: str) -> int:
    """What the store's statement says it is owed for the month (redeemed less reversed)."""
    with app.test_request_context():
        owed = stores.statement(committee(), db.session.get(Store, store_id), month).points
        db.session.remove()
    return owed


def settlement_points(app, store_id: int, month: str) -> int | None:
    with app.app_context():
        points = db.session.scalar(select(Settlement.points).where(Settlement.store_id == store_id,
                                                                   Settlement.period == month))
        db.session.remove()
    return points


def store_balance(app, store_id: int) -> int:
    with app.app_context():
        balance = db.session.scalar(select(Account.balance).where(Account.store_id == store_id))
        db.session.remove()
    return balance


def is_reversed(app, transfer_id: int) -> bool:
    with app.app_context():
        found = db.session.scalar(select(Transfer.id).where(Transfer.reverses_id == transfer_id))
        db.session.remove()
    return found is not None


def assert_verifies(app) -> None:
    with app.app_context():
        report = verify()
        db.session.remove()
    assert report.ok, report.discrepancies


def token(app) -> str:
    response = app.test_client().post(f"{API}/auth/tokens", json={"phone": PHONES["committee"],
                                                                  "password": DEMO_PASSWORD})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def together(app, requests: list[tuple[str, dict, str]]) -> list:
    """POST each (path, body, bearer token) from its own thread and client, released together."""
    barrier = threading.Barrier(len(requests))
    answers: list = [None] * len(requests)

    def send(index: int) -> None:
        path, body, bearer = requests[index]
        client = app.test_client()
        headers = {"Authorization": f"Bearer {bearer}", "Idempotency-Key": uuid.uuid4().hex}
        try:
            barrier.wait(timeout=DEADLINE)
            response = client.post(path, json=body, headers=headers)
            answers[index] = (response.status_code, response.get_json())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            answers[index] = error

    threads = [threading.Thread(target=send, args=(index,), daemon=True) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads), f"requests still running after {DEADLINE} s"
    return answers


# --- 1. settlement against reversal, and against redemption ----------------------------------

@pytest.mark.slow
def test_settlement_and_reversal_of_its_month_sent_together_never_both_pay(app):
    """Store 1, 2026-09 in the report: settled 92 against a net of 52. Each round here is a fresh
    month with redemptions of 40 and 52; the 40 is reversed as the month is settled."""
    months = past_months(ROUNDS)
    store_id, household_id, _none = new_store(app, [], ())
    bearer = token(app)
    outcomes = {"reversal first": 0, "settlement first": 0}
    for month in months:
        # The store holds just this month's 92 points: paying it twice over shows as a negative account.
        reversed_id = fill_month(app, store_id, household_id, month, (40, 52))[0]
        assert store_balance(app, store_id) == 92
        settled, reversal = together(app, [
            (f"{API}/stores/{store_id}/settlements", {"period": month}, bearer),
            (f"{API}/transfers/{reversed_id}/reversal", {"reason": "退货"}, bearer)])
        assert not isinstance(settled, BaseException) and not isinstance(reversal, BaseException), (settled, reversal)
        assert settled[0] == 201, (month, settled)
        if reversal[0] == 201:
            outcomes["reversal first"] += 1
            assert settled[1]["points"] == 52, (month, "settled the reversed points too", settled, reversal)
        else:
            assert reversal[0] == 409 and reversal[1]["error"]["code"] == "period_settled", (month, reversal)
            outcomes["settlement first"] += 1
            assert settled[1]["points"] == 92 and not is_reversed(app, reversed_id), (month, settled)
        assert settlement_points(app, store_id, month) == net_of(app, store_id, month), month
        assert store_balance(app, store_id) == 0, month
    assert sum(outcomes.values()) == ROUNDS
    assert_verifies(app)


@pytest.mark.slow
def test_redemption_racing_the_settlement_of_its_month_is_neither_missed_nor_lands_in_it(app):
    """A redemption dated in the month (the till at 23:59:59 on the last day, committing just after the
    settlement read the month) is either in the settlement or refused with ``period_settled``."""
    months = past_months(ROUNDS)
    store_id, household_id, _paid = new_store(app, months, (52,))
    with app.test_request_context():
        committee_id = committee().id
        with write_transaction():
            give_points(db.session.get(Household, household_id), 40 * ROUNDS + 1)
        db.session.remove()

    for month in months:
        def body(number: int):
            store = db.session.get(Store, store_id)
            with write_transaction():
                if number == 0:
                    return "settled", stores.settle(db.session.get(User, committee_id), store, month).points
                try:
                    stores.redeem(db.session.get(Household, household_id), store, points=40,
                                  at=mid_month(month, 23))
                except DomainError as refused:
                    return "refused", refused.code
                return "redeemed", 40

        results, errors, _seconds = race(app, 2, body)
        assert not errors, errors
        outcome = dict(results)
        if "redeemed" in outcome:
            assert outcome["settled"] == 92, (month, "the settlement missed a redemption of its month", outcome)
        else:
            assert outcome == {"settled": 52, "refused": "period_settled"}, (month, outcome)
        assert settlement_points(app, store_id, month) == net_of(app, store_id, month), month
    assert_verifies(app)


def test_a_redemption_dated_in_a_settled_month_is_refused(app):
    month = past_months(1)[0]
    store_id, household_id, _paid = new_store(app, [month], (52,))
    with app.test_request_context():
        with write_transaction():
            stores.settle(committee(), db.session.get(Store, store_id), month)
        with pytest.raises(DomainError) as refused:
            with write_transaction():
                stores.redeem(db.session.get(Household, household_id), db.session.get(Store, store_id), points=5,
                              at=mid_month(month, 20))
        assert (refused.value.code, refused.value.status) == ("period_settled", 409)
        db.session.remove()
    assert settlement_points(app, store_id, month) == net_of(app, store_id, month) == 52


# --- 2. verify sees a settlement that does not equal its month ------------------------------

def test_verify_reports_a_settlement_that_does_not_equal_its_months_net(app, api):
    """The state the race left behind (settled 92, then 40 of it reversed) fails ``flask ledger verify``."""
    month = past_months(1)[0]
    store_id, household_id, paid = new_store(app, [month], (40, 52))
    settled = api.post(f"{API}/stores/{store_id}/settlements", "committee", json={"period": month})
    assert settled.status_code == 201 and settled.get_json()["points"] == 92
    assert_verifies(app)

    # The reversal the race let through: straight to the ledger, past the store's check.
    with app.test_request_context():
        with write_transaction():
            ledger.reverse(db.session.get(Transfer, paid[month][0]), reason="退货", idempotency_key="drift")
        db.session.remove()
    with app.app_context():
        report = verify()
        db.session.remove()
    drift = [line for line in report.discrepancies if line.startswith("settlement")]
    assert len(drift) == 1 and "settled 92 != 52" in drift[0], report.discrepancies
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 1, result.output
    assert "DISCREPANCY settlement" in result.output and "settled 92 != 52" in result.output

    # A settlement row that disagrees with its own transfer is reported too.
    with app.app_context():
        with write_transaction():
            db.session.execute(Settlement.__table__.update().where(Settlement.store_id == store_id)
                               .values(points=93))
        report = verify()
        with write_transaction():
            db.session.execute(Settlement.__table__.update().where(Settlement.store_id == store_id)
                               .values(points=92))
        db.session.remove()
    assert any("93 points but its transfer moved 92" in line for line in report.discrepancies), report.discrepancies

    # Put the month back to 92 (a redemption of 40 in it) so the ledger verifies clean again.
    with app.test_request_context():
        with write_transaction():
            store = db.session.get(Store, store_id)
            redemption = Redemption(village_id=store.village_id, store_id=store_id, household_id=household_id,
                                    points=40, created_at=mid_month(month, 15))
            db.session.add(redemption)
            db.session.flush()
            ledger.transfer(debit=ledger.household_account(household_id), credit=ledger.store_account(store_id),
                            amount=40, code="redemption", idempotency_key=f"redemption:{redemption.id}",
                            redemption_id=redemption.id, at=mid_month(month, 15))
        db.session.remove()
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0


# --- 3. long keys ----------------------------------------------------------------------------

def long_key(last: str) -> str:
    """128 characters (the most the API takes) that differ from another such key only in the last."""
    return "k" * 127 + last


def test_long_api_keys_are_never_cut(app, api):
    """Two 128-character keys that differ only at the end are two reversals; 129 characters are refused."""
    store_id, _household, paid = new_store(app, [past_months(1)[0]], (40, 52, 7))
    first, second, third = next(iter(paid.values()))
    key_a, key_b = long_key("a"), long_key("b")
    assert key_a[:127] == key_b[:127] and len(key_a) == len(key_b) == 128

    one = api.post(f"{API}/transfers/{first}/reversal", "committee", json={"reason": "退货"}, key=key_a)
    assert one.status_code == 201, one.get_json()
    two = api.post(f"{API}/transfers/{second}/reversal", "committee", json={"reason": "退货"}, key=key_b)
    assert two.status_code == 201, two.get_json()
    assert two.get_json()["reverses_id"] == second and two.get_json()["id"] != one.get_json()["id"]
    again = api.post(f"{API}/transfers/{first}/reversal", "committee", json={"reason": "退货"}, key=key_a)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == one.get_json()["id"]

    balance = store_balance(app, store_id)
    too_long = api.post(f"{API}/transfers/{third}/reversal", "committee", json={"reason": "退货"},
                        key=long_key("c") + "c")
    assert too_long.status_code == 422
    error = too_long.get_json()["error"]
    assert error["code"] and error["message"] and "Idempotency-Key" in error["fields"]
    assert not is_reversed(app, third) and store_balance(app, store_id) == balance


def test_long_form_keys_are_never_cut(app, auth, client):
    store_id, _household, paid = new_store(app, [past_months(1)[0]], (40, 52, 7))
    first, second, third = next(iter(paid.values()))
    auth.login("committee")
    csrf = csrf_from(client.get("/home").get_data(as_text=True))

    def reverse(transfer_id: int, key: str):
        return client.post(f"/transfers/{transfer_id}/reverse", data={
            "csrf_token": csrf, "idempotency_key": key, "reason": "退货", "back": "/home", "confirm": "1"})

    assert reverse(first, long_key("a")).status_code == 302
    assert reverse(second, long_key("b")).status_code == 302
    assert is_reversed(app, first) and is_reversed(app, second)

    balance = store_balance(app, store_id)
    refused = reverse(third, long_key("c") + "c")
    assert refused.status_code in (302, 422)
    if refused.status_code == 302:
        html = client.get(refused.headers["Location"]).get_data(as_text=True)
    else:
        html = refused.get_data(as_text=True)
    assert "Idempotency-Key 太长" in html
    assert not is_reversed(app, third) and store_balance(app, store_id) == balance


# --- 4. a retry after the month was settled; stock comes back ---------------------------------

def test_a_reversal_retried_after_its_month_was_settled_is_a_replay(app, api):
    month = past_months(1)[0]
    store_id, _household, paid = new_store(app, [month], (40, 7, 52, 11))
    by_api, by_service, _kept, late = paid[month]
    key = uuid.uuid4().hex
    reversed_ = api.post(f"{API}/transfers/{by_api}/reversal", "committee", json={"reason": "退货"}, key=key)
    assert reversed_.status_code == 201
    ledger_key = f"reversal:test:{uuid.uuid4().hex}"
    first = reverse_by_service(app, by_service, ledger_key)
    assert api.post(f"{API}/stores/{store_id}/settlements", "committee",
                    json={"period": month}).get_json()["points"] == 52 + 11
    balance = store_balance(app, store_id)

    # Through the API, the request's own record answers ...
    retry = api.post(f"{API}/transfers/{by_api}/reversal", "committee", json={"reason": "退货"}, key=key)
    assert retry.status_code == 201 and retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.get_json() == reversed_.get_json()
    # ... and the service the API calls replays under the ledger's key, before it checks the month (a
    # request whose own record is not there, or a retry arriving by the form, is not period_settled).
    assert reverse_by_service(app, by_service, ledger_key) == first
    # A new reversal in the settled month is refused, and nothing moved.
    refused = api.post(f"{API}/transfers/{late}/reversal", "committee", json={"reason": "退货"})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "period_settled"
    assert store_balance(app, store_id) == balance
    assert settlement_points(app, store_id, month) == net_of(app, store_id, month) == 63


def reverse_by_service(app, transfer_id: int, ledger_key: str) -> int:
    """The committee's reversal by ``reverse_transfer`` (what the API and the form call) under a ledger key."""
    from moralbank.awards.service import reverse_transfer

    with app.test_request_context():
        with write_transaction():
            reversal_id = reverse_transfer(committee(), transfer_id, "退货", idempotency_key=ledger_key).id
        db.session.remove()
    return reversal_id


def test_a_reversed_redemption_puts_its_goods_back_on_the_shelf(app, api):
    clerk = api.get(f"{API}/me", "clerk").get_json()
    store_id = clerk["store"]["id"]
    items = {item["id"]: item for item in api.get(f"{API}/stores/{store_id}/items", "clerk").get_json()["items"]}
    stocked = sorted((item for item in items.values() if item["stock"] >= 3), key=lambda item: item["id"])[:2]
    assert len(stocked) == 2
    before = {item["id"]: item["stock"] for item in stocked}
    household = api.get(f"{API}/me", "resident").get_json()["household"]["id"]
    with app.test_request_context():
        with write_transaction():
            give_points(db.session.get(Household, household), 500)
        db.session.remove()
    code = api.post(f"{API}/redemption-codes", "resident").get_json()["code"]
    cart = [{"item_id": stocked[0]["id"], "quantity": 2}, {"item_id": stocked[1]["id"], "quantity": 1},
            {"item_id": stocked[0]["id"], "quantity": 1}]
    sold = api.post(f"{API}/stores/{store_id}/redemptions", "clerk", json={"code": code, "items": cart})
    assert sold.status_code == 201, sold.get_json()

    def stock() -> dict[int, int]:
        with app.app_context():
            found = dict(db.session.execute(select(Item.id, Item.stock).where(Item.id.in_(before))).all())
            db.session.remove()
        return found

    assert stock() == {stocked[0]["id"]: before[stocked[0]["id"]] - 3, stocked[1]["id"]: before[stocked[1]["id"]] - 1}
    with app.app_context():
        paid = db.session.scalar(select(Transfer.id).where(Transfer.redemption_id == sold.get_json()["id"],
                                                           Transfer.code == "redemption"))
        db.session.remove()
    key = uuid.uuid4().hex
    reversal = api.post(f"{API}/transfers/{paid}/reversal", "committee", json={"reason": "退货"}, key=key)
    assert reversal.status_code == 201, reversal.get_json()
    assert stock() == before
    # A replay, or a second reversal refused, gives nothing back twice.
    assert api.post(f"{API}/transfers/{paid}/reversal", "committee", json={"reason": "退货"}, key=key).status_code == 201
    again = api.post(f"{API}/transfers/{paid}/reversal", "committee", json={"reason": "退货"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_reversed"
    assert stock() == before
