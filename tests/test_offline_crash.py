"""Crash: a gunicorn server is killed with SIGKILL while a shop syncs its offline sales, and
restarted; the shop sends each batch again (same Idempotency-Key) when an answer was lost, and at
the end sends everything once more under new keys, as a device that lost its notes would. Every
voucher is posted exactly once: one redemption, one hold posted, the household debited once, and
``flask ledger verify`` clean (SQLite and PostgreSQL, as MORALBANK_TEST_DB says)."""
from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, func, select

from server_support import GunicornServer, Http, NotSent, server_env
from support import DEMO_PASSWORD, PHONES

pytestmark = pytest.mark.slow

VOUCHERS = 30
PER_BATCH = 2
KILLS = 5
SEED = 20261201


@pytest.fixture
def server(app, tmp_path):
    env = server_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance",
                     LOGIN_LIMIT_PER_ACCOUNT="1000 per minute", LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS="1000 per minute",
                     OFFLINE_VOUCHER_LIMIT="1000", CODE_LOOKUP_LIMIT="100000 per minute")
    gunicorn = GunicornServer(env, workers=2, log=tmp_path / "gunicorn.log")
    try:
        gunicorn.start()
        yield gunicorn
    finally:
        gunicorn.kill()


def test_sigkill_during_sync_posts_each_voucher_once(server, app):
    from moralbank.ledger.holds import Hold
    from moralbank.ledger.models import Account, Transfer
    from moralbank.stores.offline_models import OfflineVoucher

    http = Http(server.url, timeout=60)
    tokens = {}
    for who in ("resident", "clerk"):
        answer = http.post("/api/v1/auth/tokens", json={"phone": PHONES[who], "password": DEMO_PASSWORD})
        assert answer.status == 201, answer
        tokens[who] = {"Authorization": f"Bearer {answer.json()['token']}"}
    store_id = http.get("/api/v1/me", headers=tokens["clerk"]).json()["store"]["id"]
    household_id = http.get("/api/v1/me", headers=tokens["resident"]).json()["household"]["id"]
    vouchers = []
    for _ in range(VOUCHERS):
        answer = http.post(f"/api/v1/stores/{store_id}/offline-vouchers", json={"points": 2},
                           headers={**tokens["resident"], "Idempotency-Key": uuid.uuid4().hex})
        assert answer.status == 201, answer
        vouchers.append(answer.json())
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as connection:
        before = connection.scalar(select(Account.balance).where(Account.household_id == household_id))

    taken = datetime.now(timezone.utc).isoformat()
    batches = [[{"token": v["token"], "points": 1, "items": [], "taken_at": taken}
                for v in vouchers[start:start + PER_BATCH]] for start in range(0, VOUCHERS, PER_BATCH)]
    up, done = threading.Event(), threading.Event()
    up.set()
    lost = 0
    answers: list[list[dict]] = []

    def kill_now_and_then():
        rng = random.Random(SEED)
        for _ in range(KILLS):
            if done.wait(rng.uniform(0.05, 0.4)):
                return
            up.clear()
            server.kill()
            server.start()
            up.set()

    killer = threading.Thread(target=kill_now_and_then)
    killer.start()
    try:
        for batch in batches:
            key = uuid.uuid4().hex
            while True:
                up.wait(60)
                try:
                    answer = http.post(f"/api/v1/stores/{store_id}/offline-sales", json={"sales": batch},
                                       headers={**tokens["clerk"], "Idempotency-Key": key})
                except NotSent:
                    time.sleep(0.05)
                    continue
                except OSError:
                    lost += 1  # the answer died with the server: send the same batch again
                    time.sleep(0.05)
                    continue
                assert answer.status == 200, answer
                answers.append(answer.json()["results"])
                break
    finally:
        done.set()
        killer.join(120)
    up.wait(60)
    print(f"{lost} answers lost in {KILLS} kills, {server.starts} starts")
    assert server.starts >= 2, "the server was never killed"

    statuses = [result["status"] for results in answers for result in results]
    assert set(statuses) <= {"posted", "replay"}, statuses
    # The device lost its notes: everything again under new keys is a replay of what was posted.
    for batch in batches:
        again = http.post(f"/api/v1/stores/{store_id}/offline-sales", json={"sales": batch},
                          headers={**tokens["clerk"], "Idempotency-Key": uuid.uuid4().hex})
        assert [r["status"] for r in again.json()["results"]] == ["replay"] * len(batch), again.json()
    server.kill()

    ids = [v["id"] for v in vouchers]
    with engine.connect() as connection:
        redemptions = dict(connection.execute(select(OfflineVoucher.id, OfflineVoucher.redemption_id)
                                              .where(OfflineVoucher.id.in_(ids))).all())
        assert all(redemptions.values()) and len(set(redemptions.values())) == VOUCHERS
        paid = dict(connection.execute(select(Transfer.redemption_id, func.count()).where(
            Transfer.redemption_id.in_(list(redemptions.values())), Transfer.code == "redemption")
            .group_by(Transfer.redemption_id)).all())
        assert set(paid.values()) == {1} and len(paid) == VOUCHERS
        states = connection.execute(select(Hold.status, func.count()).join(
            OfflineVoucher, OfflineVoucher.hold_id == Hold.id).where(OfflineVoucher.id.in_(ids))
            .group_by(Hold.status)).all()
        assert dict(states) == {"posted": VOUCHERS}
        after = connection.scalar(select(Account.balance).where(Account.household_id == household_id))
    engine.dispose()
    assert after == before + VOUCHERS * 2 - VOUCHERS * 1
