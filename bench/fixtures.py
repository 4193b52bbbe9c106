"""The data the HTTP load needs, made by the app's own services before the clock starts: a
throwaway copy of the data set, bench users with their role grants and bearer tokens, an item on
each store's shelf, points for the residents' households, payment codes issued by the residents,
and the requests built from them."""
from __future__ import annotations

import random
import shutil
import sqlite3
import uuid
from contextlib import contextmanager
from pathlib import Path

from bench.load import Req, get, post_json
from bench.server import BENCH_SECRET


@contextmanager
def cheap_password_hashes():
    """Bench users never log in with a password (their tokens are issued directly), so their
    hashes are made with minimal argon2 parameters: the production ones cost ~0.5 s each here."""
    from argon2 import PasswordHasher

    from moralbank.people import auth

    saved = auth._hasher
    auth._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    try:
        yield
    finally:
        auth._hasher = saved


def bench_app(uri: str):
    from moralbank import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": BENCH_SECRET, "MORALBANK_ENV": "production",
                       "TRUSTED_HOSTS": ["127.0.0.1", "localhost"]})


def close_app(app) -> None:
    from moralbank.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def make_fixture(uri: str, *, villages: int = 16, residents: int = 8, readable: int = 64, seed: int = 11) -> dict:
    """Users (a committee member, a clerk, residents) in the first ``villages`` villages, their tokens,
    an item on each store's shelf and points for the residents' households — all through the
    services. Returns plain data for building requests."""
    from flask import current_app
    from sqlalchemy import select

    from moralbank.awards.service import create_rule, record_award
    from moralbank.database import write_transaction
    from moralbank.extensions import db
    from moralbank.ledger import service as ledger
    from moralbank.people.auth import issue_token
    from moralbank.people.models import Area, Household
    from moralbank.people.service import create_user
    from moralbank.stores.models import Store
    from moralbank.stores.service import add_item

    rng = random.Random(seed)
    app = bench_app(uri)
    password = uuid.uuid4().hex + "Aa1!"
    out = []
    with app.test_request_context(), cheap_password_hashes():
        assert current_app.config["SECRET_KEY"] == BENCH_SECRET
        chosen = db.session.scalars(select(Area).where(Area.level == "village").order_by(Area.id)
                                    .limit(villages)).all()
        for index, village in enumerate(chosen):
            with write_transaction():
                # A village setting: codes outlive the run (300 s by default).
                village.code_ttl_seconds = 3600
                store = db.session.scalar(select(Store).where(Store.village_id == village.id).order_by(Store.id))
                item = add_item(store, name="基准商品", points=1, stock=1_000_000)
                committee = create_user(phone=f"199{index:04d}0000", name="基准村委", password=password,
                                        role="committee", area=village)
                clerk = create_user(phone=f"199{index:04d}0001", name="基准店员", password=password,
                                    role="clerk", store=store)
                households = db.session.scalars(select(Household).where(Household.village_id == village.id)
                                                .order_by(Household.id)).all()
                rule = create_rule(village, category="volunteer", title="基准积分", points=1000)
                resident_ids, household_accounts = [], []
                for number, household in enumerate(households[:residents]):
                    resident = create_user(phone=f"199{index:04d}{number + 2:04d}", name="基准村民",
                                           password=password, role="resident", household=household)
                    record_award(household, rule, quantity=20, approver=committee)  # 20,000 points
                    resident_ids.append(resident.id)
                    household_accounts.append(ledger.household_account(household.id).id)
                readable_ids = rng.sample([h.id for h in households], min(readable, len(households)))
                out.append({"village_id": village.id, "village_code": village.code, "store_id": store.id,
                            "item_id": item.id,
                            "clerk_id": clerk.id, "resident_ids": resident_ids,
                            "store_account_id": ledger.store_account(store.id).id,
                            "household_accounts": household_accounts, "readable": readable_ids,
                            "committee": committee, "clerk": clerk})
        for entry in out:
            entry["committee_token"], _ = issue_token(entry.pop("committee"))
            entry["clerk_token"], _ = issue_token(entry.pop("clerk"))
    close_app(app)
    return {"villages": out}


def issue_codes(uri: str, fixture: dict, count: int) -> list[dict]:
    """``count`` payment codes of the residents' households, round-robin over villages and households
    so the load spreads over the stores. Made by the code service's own ``_new_code`` (an hour's
    lifetime), not ``issue_code``: a resident's new code ends the household's earlier open one (one
    open code per household), and the load needs thousands open at once for 128 households."""
    from datetime import timedelta

    from moralbank.database import write_transaction
    from moralbank.extensions import db
    from moralbank.people import access
    from moralbank.people.models import User
    from moralbank.stores.codes import _new_code

    def issue_code(user):
        return _new_code(access.own_household(user), timedelta(hours=1), creator=user)

    app = bench_app(uri)
    villages = fixture["villages"]
    codes = []
    with app.test_request_context():
        users = {uid: db.session.get(User, uid) for v in villages for uid in v["resident_ids"]}
        for start in range(0, count, 500):
            with write_transaction():
                for index in range(start, min(count, start + 500)):
                    village = villages[index % len(villages)]
                    slot = (index // len(villages)) % len(village["resident_ids"])
                    issued = issue_code(users[village["resident_ids"][slot]])
                    codes.append({"village": index % len(villages), "code": issued.record.code,
                                  "household_account": village["household_accounts"][slot]})
    close_app(app)
    return codes


def household_requests(fixture: dict) -> list[Req]:
    requests = [get(f"/api/v1/households/{household_id}", village["committee_token"])
                for village in fixture["villages"] for household_id in village["readable"]]
    random.Random(5).shuffle(requests)
    return requests


def public_paths(fixture: dict) -> dict[str, list[str]]:
    """The public ranking (API) and the public board page of every bench village."""
    codes = [village["village_code"] for village in fixture["villages"]]
    return {"ranking": [f"/api/v1/rankings?village={code}" for code in codes],
            "board": [f"/v/{code}" for code in codes]}


def conditional_requests(base: str, paths: list[str]) -> list[Req]:
    """GETs of ``paths`` that send back the ETag the server gave each (a phone reloading the page)."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(base)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    requests = []
    for path in paths:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        etag = response.headers.get("ETag")
        requests.append(Req("GET", path, (("If-None-Match", etag),) if etag else ()))
    connection.close()
    return requests


def redemption_requests(fixture: dict, codes: list[dict]) -> list[Req]:
    villages = fixture["villages"]
    return [post_json(f"/api/v1/stores/{villages[c['village']]['store_id']}/redemptions",
                       villages[c["village"]]["clerk_token"],
                       {"code": c["code"], "items": [{"item_id": villages[c["village"]]["item_id"], "quantity": 1}]},
                      f"bench-{uuid.uuid4().hex}") for c in codes]


def verify_ledger(uri: str) -> dict:
    from moralbank.ledger.verify import verify

    app = bench_app(uri)
    with app.app_context():
        report = verify()
    close_app(app)
    return {"ok": report.ok, "transfers": report.transfers, "discrepancies": report.discrepancies[:5]}


def work_copy(source: Path, target: Path) -> Path:
    """A throwaway copy of the data set (the load writes to it)."""
    connection = sqlite3.connect(source)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target
