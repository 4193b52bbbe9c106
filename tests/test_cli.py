"""The Flask commands: seed-demo, create-user, awards post-due, ledger verify."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from support import DEMO_PASSWORD, PHONES, SECRET, session_of
from moralbank import create_app
from moralbank.extensions import db

NEW_PASSWORD = "a-new-password-2026"




def invoke(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def token_for(app, phone, password):
    response = app.test_client().post("/api/v1/auth/tokens", json={"phone": phone, "password": password})
    return response


def counts(app) -> dict:
    from moralbank.awards.models import Rule
    from moralbank.people.models import Area, Household, User
    from moralbank.stores.models import Store

    out = {}
    with session_of(app) as session:
        for code in ("BLM", "XLC"):
            village = session.scalar(select(Area).where(Area.code == code, Area.level == "village"))
            if village is None:
                continue
            out[code] = {
                "households": session.scalar(select(func.count()).select_from(Household)
                                             .where(Household.village_id == village.id)),
                "hamlets": len([a for a in village.children if a.level == "hamlet"]),
                "stores": session.scalar(select(func.count()).select_from(Store).where(Store.village_id == village.id)),
                "rules": session.scalar(select(func.count()).select_from(Rule).where(Rule.village_id == village.id)),
                "town": village.parent.code,
            }
        out["villages"] = session.scalar(select(func.count()).select_from(Area).where(Area.level == "village"))
        out["users"] = session.scalar(select(func.count()).select_from(User))
    return out


# --- seed-demo ------------------------------------------------------------------------------------------------------

def test_seed_demo_on_empty_database_then_again(empty_app):
    assert counts(empty_app) == {"villages": 0, "users": 0}
    result = invoke(empty_app, "seed-demo")
    assert result.exit_code == 0, result.output
    for phone in PHONES.values():
        assert phone in result.output, f"login {phone} not printed"
    assert DEMO_PASSWORD in result.output

    seeded = counts(empty_app)
    assert seeded["villages"] == 2
    assert seeded["BLM"]["households"] == 60 and seeded["XLC"]["households"] == 20
    assert seeded["BLM"]["hamlets"] == 4 and seeded["XLC"]["hamlets"] == 2
    assert seeded["BLM"]["stores"] == 2 and seeded["XLC"]["stores"] == 1
    assert seeded["BLM"]["rules"] >= 25
    assert seeded["BLM"]["town"] == seeded["XLC"]["town"]  # side by side in one town
    for who, phone in PHONES.items():
        response = token_for(empty_app, phone, DEMO_PASSWORD)
        assert response.status_code == 201, (who, response.get_json())

    # A second run changes nothing.
    again = invoke(empty_app, "seed-demo")
    assert again.exit_code == 0, again.output
    assert "13800000001" not in again.output
    assert again.output.strip()
    assert counts(empty_app) == seeded

    verify = invoke(empty_app, "ledger", "verify")
    assert verify.exit_code == 0, verify.output


def test_seed_demo_if_empty_on_a_database_with_villages_does_nothing(app):
    before = counts(app)
    result = invoke(app, "seed-demo", "--if-empty")
    assert result.exit_code == 0, result.output
    assert counts(app) == before


def test_seed_demo_if_empty_skips_a_database_holding_another_village(empty_app):
    from moralbank.database import write_transaction
    from moralbank.people.service import create_area

    with session_of(empty_app):
        with write_transaction():
            county = create_area(level="county", code="QTX", name="其他县")
            town = create_area(level="town", code="QTZ", name="其他镇", parent=county)
            create_area(level="village", code="QTC", name="其他村", parent=town)
    result = invoke(empty_app, "seed-demo", "--if-empty")
    assert result.exit_code == 0, result.output
    after = counts(empty_app)
    assert "BLM" not in after and after["villages"] == 1 and after["users"] == 0


@pytest.fixture
def production_app(databases, tmp_path, monkeypatch):
    """An app configured for production (not TESTING) on an empty migrated database."""
    monkeypatch.delenv("INSECURE_COOKIES", raising=False)
    uri = databases.fresh(tmp_path, seed=False)
    application = create_app({"MORALBANK_ENV": "production", "SECRET_KEY": "x" * 40, "TRUSTED_HOSTS": ["localhost"],
                              "SQLALCHEMY_DATABASE_URI": uri, "RATELIMIT_STORAGE_URI": "memory://"})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    databases.drop(uri)


def test_seed_demo_is_refused_in_production(production_app):
    assert production_app.config["MORALBANK_ENV"] == "production"
    for args in (["seed-demo"], ["seed-demo", "--if-empty"]):
        result = invoke(production_app, *args)
        assert result.exit_code != 0
        assert "production" in result.output
        assert "13800000001" not in result.output
    assert counts(production_app) == {"villages": 0, "users": 0}


# --- create-user ----------------------------------------------------------------------------------------------------

def _store_id(app, name="兴旺便民超市") -> int:
    from moralbank.stores.models import Store

    with session_of(app) as session:
        return session.scalar(select(Store.id).where(Store.name == name))


def _household(app, number):
    from moralbank.people.models import Household

    with session_of(app) as session:
        return session.scalar(select(Household.id).where(Household.number == number))


def _me(app, phone, password=NEW_PASSWORD) -> dict:
    response = token_for(app, phone, password)
    assert response.status_code == 201, response.get_json()
    token = response.get_json()["token"]
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    return me.get_json()


@pytest.mark.parametrize("role, scope", [
    ("committee", ["--village", "BLM"]),
    ("supervisor", ["--village", "KPJD"]),
    ("admin", ["--village", "BLM"]),
    ("grid", ["--village", "BLM", "--hamlet", "前进屯"]),
    ("grid", ["--village", "BLM", "--hamlet", "BLM-03", "--hamlet", "BLM-04"]),
    ("resident", ["--village", "BLM", "--household", "BLM-010"]),
    ("clerk", ["--store", "STORE"]),
])
def test_create_user_for_each_role_then_log_in(app, role, scope):
    scope = [str(_store_id(app)) if part == "STORE" else part for part in scope]
    # One login with the password as an option, one with it on standard input.
    for phone, password_from in (("13912345678", "option"), ("13912345679", "stdin")):
        args = ["create-user", "--phone", phone, "--name", "测试用户", "--role", role, *scope]
        if password_from == "option":
            result = invoke(app, *args, "--password", NEW_PASSWORD)
        else:
            result = invoke(app, *args, input=NEW_PASSWORD + "\n")
        assert result.exit_code == 0, (password_from, result.output)
        assert re.search(rf"created user \d+ {phone}", result.output), result.output
        assert NEW_PASSWORD not in result.output

        me = _me(app, phone)
        assert me["roles"] == [role]
        assert me["user"]["name"] == "测试用户"
        if role == "resident":
            assert me["household"]["id"] == _household(app, "BLM-010")
        elif role == "clerk":
            assert me["store"] == {"id": _store_id(app), "name": "兴旺便民超市"}
        elif role == "supervisor":
            assert sorted(me["villages"]) == ["BLM", "XLC"]
        else:
            assert me["village"] == "BLM"
        # The wrong password does not work.
        assert token_for(app, phone, DEMO_PASSWORD).status_code == 401


def test_created_grid_manager_sees_only_the_given_hamlet(app):
    result = invoke(app, "create-user", "--phone", "13912345679", "--name", "网格员二", "--role", "grid",
                    "--village", "BLM", "--hamlet", "前进屯", "--password", NEW_PASSWORD)
    assert result.exit_code == 0, result.output
    token = token_for(app, "13912345679", NEW_PASSWORD).get_json()["token"]
    listing = app.test_client().get("/api/v1/villages/BLM/households?limit=200",
                                    headers={"Authorization": f"Bearer {token}"}).get_json()
    assert len(listing["items"]) == 15 and {item["hamlet"] for item in listing["items"]} == {"前进屯"}


def test_create_user_resident_by_household_id(app):
    household_id = _household(app, "BLM-020")
    result = invoke(app, "create-user", "--phone", "13912345670", "--name", "某村民", "--role", "resident",
                    "--household", str(household_id), "--password", NEW_PASSWORD)
    assert result.exit_code == 0, result.output
    assert _me(app, "13912345670")["household"]["id"] == household_id


def _refused(result, *needles):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    for needle in needles:
        assert needle in result.output, result.output


REFUSALS = [
    # the phone of the demo committee member is taken
    (["--phone", PHONES["committee"], "--role", "committee", "--village", "BLM"], ["13800000001"]),
    (["--phone", "138 0000 0001", "--role", "committee", "--village", "BLM"], ["13800000001"]),
    (["--phone", "12345", "--role", "committee", "--village", "BLM"], []),
    (["--phone", "1391234567a", "--role", "committee", "--village", "BLM"], []),
    (["--phone", "13912345678", "--role", "committee", "--village", "NOPE"], ["NOPE"]),
    (["--phone", "13912345678", "--role", "grid", "--village", "BLM"], []),
    (["--phone", "13912345678", "--role", "grid", "--village", "BLM", "--hamlet", "新立屯"], ["新立屯"]),
    (["--phone", "13912345678", "--role", "resident", "--village", "BLM"], []),
    (["--phone", "13912345678", "--role", "resident", "--village", "BLM", "--household", "BLM-999"], ["BLM-999"]),
    (["--phone", "13912345678", "--role", "resident", "--village", "XLC", "--household", "BLM-001"], []),
    (["--phone", "13912345678", "--role", "clerk", "--village", "BLM"], []),
    (["--phone", "13912345678", "--role", "clerk", "--store", "99999"], ["99999"]),
    (["--phone", "13912345678", "--role", "mayor", "--village", "BLM"], ["mayor"]),
]


def test_create_user_refusals_change_nothing(app):
    before = counts(app)["users"]
    for args, needles in REFUSALS:
        result = invoke(app, "create-user", "--name", "某人", *args, "--password", NEW_PASSWORD)
        try:
            _refused(result, *needles)
        except AssertionError as error:
            raise AssertionError(f"create-user {' '.join(args)}: {error}") from None
        assert counts(app)["users"] == before, args
    assert token_for(app, "13912345678", NEW_PASSWORD).status_code == 401


def test_create_user_duplicate_phone_says_so(app):
    result = invoke(app, "create-user", "--phone", PHONES["resident"], "--name", "重复", "--role", "committee",
                    "--village", "BLM", "--password", NEW_PASSWORD)
    _refused(result, "13800000003")
    assert "已注册" in result.output or "taken" in result.output.lower()
    # The existing account keeps its password.
    assert token_for(app, PHONES["resident"], DEMO_PASSWORD).status_code == 201
    assert token_for(app, PHONES["resident"], NEW_PASSWORD).status_code == 401


def test_create_user_short_password_refused(app):
    result = invoke(app, "create-user", "--phone", "13912345678", "--name", "某人", "--role", "committee",
                    "--village", "BLM", input="short\n")
    _refused(result)
    assert token_for(app, "13912345678", "short").status_code == 401


# --- awards post-due ------------------------------------------------------------------------------------------------

def test_awards_post_due_posts_only_awards_whose_notice_ended(app):
    from moralbank.awards.models import Award, Rule
    from moralbank.database import travel, utcnow, write_transaction
    from moralbank.ledger.models import Account
    from moralbank.people.models import Household

    result = invoke(app, "awards", "post-due")
    assert result.exit_code == 0, result.output
    assert re.search(r"posted 0 awards", result.output), result.output

    with session_of(app) as session:
        household = session.scalar(select(Household).where(Household.number == "BLM-030"))
        rule = session.scalar(select(Rule).where(Rule.village_id == household.village_id, Rule.points == 5,
                                                 Rule.active.is_(True)).order_by(Rule.id))
        balance = session.scalar(select(Account.balance).where(Account.household_id == household.id))
        now = utcnow()
        with write_transaction():
            award = Award(village_id=household.village_id, household_id=household.id, rule_id=rule.id, quantity=1,
                          points=5, status="approved", occurred_on=now.date(), proposed_at=now,
                          decided_at=now, notice_ends_at=now + timedelta(days=3))
            session.add(award)
        award_id, household_id = award.id, household.id

    result = invoke(app, "awards", "post-due")
    assert result.exit_code == 0 and "posted 0 awards" in result.output, result.output

    travel(timedelta(days=3, minutes=1))
    result = invoke(app, "awards", "post-due")
    assert result.exit_code == 0 and "posted 1 awards" in result.output, result.output
    with session_of(app) as session:
        assert session.get(Award, award_id).status == "posted"
        assert session.scalar(select(Account.balance).where(Account.household_id == household_id)) == balance + 5

    result = invoke(app, "awards", "post-due")  # nothing left to post
    assert result.exit_code == 0 and "posted 0 awards" in result.output, result.output


# --- ledger verify --------------------------------------------------------------------------------------------------

def test_ledger_verify_prints_counts(app):
    from moralbank.ledger.models import Account, Transfer

    result = invoke(app, "ledger", "verify")
    assert result.exit_code == 0, result.output
    with session_of(app) as session:
        transfers = session.scalar(select(func.count()).select_from(Transfer))
        accounts = session.scalar(select(func.count()).select_from(Account))
    assert f"{transfers} transfers" in result.output
    assert f"{accounts} accounts" in result.output
    assert "2 villages" in result.output
    assert "DISCREPANCY" not in result.output


def test_ledger_verify_fails_on_a_tampered_balance(app):
    from moralbank.ledger.models import Account
    from moralbank.people.models import Household

    with session_of(app) as session:
        account_id = session.scalar(select(Account.id).join(Household, Household.id == Account.household_id)
                                    .where(Household.number == "BLM-005"))
        session.execute(update(Account).where(Account.id == account_id).values(balance=Account.balance + 7))
        session.commit()
    try:
        result = invoke(app, "ledger", "verify")
        assert result.exit_code == 1, result.output
        assert re.search(rf"DISCREPANCY account {account_id}\b", result.output), result.output
        assert "DISCREPANCY village" in result.output  # the village no longer sums to zero
    finally:
        with session_of(app) as session:
            session.execute(update(Account).where(Account.id == account_id).values(balance=Account.balance - 7))
            session.commit()
    assert invoke(app, "ledger", "verify").exit_code == 0


def test_ledger_verify_on_an_empty_database(empty_app):
    result = invoke(empty_app, "ledger", "verify")
    assert result.exit_code == 0, result.output
    assert "0 transfers" in result.output
