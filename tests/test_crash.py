"""Crash: a gunicorn server under a write load is killed with SIGKILL 20 times at random moments
and restarted; afterwards every write that got a 2xx is present, none is doubled, and
``flask ledger verify`` is clean (SQLite and PostgreSQL, as MORALBANK_TEST_DB says).

Three client threads move points through the JSON API while the main thread kills the master
and its workers (the whole process group) at random moments: two committee threads propose and
approve 2-point awards (0-day notice, so approval posts at once), the third makes the resident's
payment codes and has the clerk redeem each for 1 point. Every write carries a fresh Idempotency-Key, and every
award's note names its key, so the database itself says whether a key took effect and how often.
A request whose answer is lost in a kill is sent again with the same key once the server is
back, as a real client would: the answer must be the original one (replayed) when the first
attempt had committed, a first execution when it had not, and never a second effect.
"""
from __future__ import annotations

import random
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, func, select

from support import DEMO_PASSWORD, PHONES
from server_support import GunicornServer, Http, NotSent, run_cli, server_env

pytestmark = pytest.mark.slow

KILLS = 20
SEED = 20261128
AWARD_POINTS = 2
#: awards go to these households of BLM (BLM-001 is the resident's, who also spends)
HOUSEHOLDS = ("BLM-001", "BLM-002", "BLM-003", "BLM-004", "BLM-006")


@dataclass
class Write:
    """One idempotent write as the client saw it."""

    kind: str  # propose | approve | redeem
    who: str
    key: str
    path: str
    body: dict | None
    status: int | None = None  # the final answer's status (None: never answered)
    answer: dict | None = None
    lost: int = 0  # answers lost in a kill before the final one
    committed_before_retry: bool | None = None  # for lost answers: was it in the database already?
    replayed: bool = False


@dataclass
class Load:
    """What the client threads did, shared under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    writes: list[Write] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    throttled: int = 0

    def add(self, write: Write) -> None:
        with self.lock:
            self.writes.append(write)

    def odd(self, text: str) -> None:
        with self.lock:
            self.unexpected.append(text)

    def thread(self, target, *args, name: str) -> threading.Thread:
        """A client thread whose crash is reported as unexpected, not lost in a warning."""
        def run():
            try:
                target(*args)
            except Exception:  # noqa: BLE001 - any client failure fails the test
                self.odd(f"client {name} crashed:\n{traceback.format_exc()}")
        return threading.Thread(target=run, name=name)


class Cluster:
    """The server under test and the state the clients need to follow it through restarts."""

    def __init__(self, server: GunicornServer, engine):
        self.server = server
        self.engine = engine
        self.up = threading.Event()
        self.stop = threading.Event()
        self.dead = False  # the run failed: clients give up instead of waiting for the server
        self.tokens: dict[str, str] = {}
        self.user_ids: dict[str, int] = {}

    def wait_up(self) -> bool:
        """Wait for the server to be (back) up; False when the run failed."""
        while not self.up.wait(0.2):
            if self.dead:
                return False
        return not self.dead

    def http(self) -> Http:
        return Http(self.server.url, timeout=60)

    def headers(self, who: str, key: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if key:
            headers["Idempotency-Key"] = key
        return headers

    def committed(self, who: str, key: str) -> bool:
        from moralbank.idempotency import IdempotencyRecord

        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(IdempotencyRecord).where(
                IdempotencyRecord.user_id == self.user_ids[who], IdempotencyRecord.key == key)) == 1


def send(cluster: Cluster, load: Load, write: Write) -> Write:
    """Send ``write`` until it is answered; after a lost answer wait for the restart, note whether
    the attempt had committed, and send it again with the same key (as a real client would)."""
    while True:
        try:
            answer = cluster.http().post(write.path, json=write.body, headers=cluster.headers(write.who, write.key))
        except NotSent:
            if not cluster.wait_up():
                return write
            time.sleep(0.02)
            continue
        except OSError:
            write.lost += 1
            # The kill that cut this answer is under way (the main thread cleared `up` first): once
            # the server is back, the dead worker's transaction has committed or vanished for good.
            if not cluster.wait_up():
                return write
            write.committed_before_retry = cluster.committed(write.who, write.key)
            continue
        if answer.status == 429:  # the clerk's code-lookup limit (60 a minute per process): wait
            with load.lock:
                load.throttled += 1
            time.sleep(1)
            continue
        write.status = answer.status
        write.replayed = answer.headers.get("Idempotent-Replayed") == "true"
        try:
            write.answer = answer.json()
        except ValueError:
            write.answer = {"text": answer.text[:300]}
        return write


def award_client(cluster: Cluster, load: Load, households: list[int], rule_id: int, seed: int) -> None:
    rng = random.Random(seed)
    while not cluster.stop.is_set():
        key = f"p-{uuid.uuid4().hex}"
        body = {"household_id": rng.choice(households), "rule_id": rule_id, "note": f"crash {key}"}
        proposal = send(cluster, load, Write("propose", "committee", key, "/api/v1/awards", body))
        if proposal.status is None:
            return  # stopped before it was sent
        load.add(proposal)
        if proposal.status != 201:
            load.odd(f"propose {key}: {proposal.status} {proposal.answer}")
            continue
        award_id = proposal.answer["id"]
        approval = send(cluster, load, Write("approve", "committee", f"a-{uuid.uuid4().hex}",
                                             f"/api/v1/awards/{award_id}/approve", None))
        if approval.status is None:
            return
        load.add(approval)
        if approval.status != 200 or approval.answer.get("status") != "posted":
            load.odd(f"approve {award_id}: {approval.status} {approval.answer}")


def shop_client(cluster: Cluster, load: Load, store_id: int) -> None:
    while not cluster.stop.is_set():
        try:
            made = cluster.http().post("/api/v1/redemption-codes", headers=cluster.headers("resident"))
        except OSError:  # not sent, or lost: an unused code is harmless
            if not cluster.wait_up():
                return
            time.sleep(0.02)
            continue
        if made.status != 201:
            load.odd(f"redemption code: {made.status} {made.text[:300]}")
            time.sleep(0.1)
            continue
        key = f"r-{uuid.uuid4().hex}"
        redemption = send(cluster, load, Write("redeem", "clerk", key, f"/api/v1/stores/{store_id}/redemptions",
                                               {"code": made.json()["code"], "points": 1}))
        if redemption.status is None:
            return
        load.add(redemption)
        if redemption.status != 201:
            load.odd(f"redeem {key}: {redemption.status} {redemption.answer}")
        time.sleep(0.1)  # stay well under the lookup limit


@dataclass
class Setup:
    households: dict[int, int]  # household id -> balance before the load
    resident_household: int
    rule_id: int
    store_id: int
    store_balance: int
    last_redemption: int


def balances(engine, household_ids, store_id) -> tuple[dict[int, int], int]:
    from moralbank.ledger.models import Account

    with engine.connect() as connection:
        households = dict(connection.execute(select(Account.household_id, Account.balance)
                                             .where(Account.household_id.in_(household_ids))).all())
        store = connection.scalar(select(Account.balance).where(Account.store_id == store_id))
    return households, store


def arrange(cluster: Cluster) -> Setup:
    """Log in through the API, set 0-day notice, add an uncapped rule, note the balances."""
    from moralbank.people.models import Household
    from moralbank.stores.models import Redemption

    http = cluster.http()
    for who in ("committee", "resident", "clerk"):
        answer = http.post("/api/v1/auth/tokens", json={"phone": PHONES[who], "password": DEMO_PASSWORD})
        assert answer.status == 201, answer
        cluster.tokens[who] = answer.json()["token"]
        cluster.user_ids[who] = answer.json()["user"]["id"]
    answer = http.patch("/api/v1/villages/BLM", json={"notice_days": 0}, headers=cluster.headers("committee"))
    assert answer.status == 200, answer
    answer = http.post("/api/v1/villages/BLM/rules", headers=cluster.headers("committee", uuid.uuid4().hex),
                       json={"category": "volunteer", "title": "断电演练", "points": AWARD_POINTS, "cap": None,
                             "photo_required": False})
    assert answer.status == 201, answer
    rule_id = answer.json()["id"]
    store_id = http.get("/api/v1/me", headers=cluster.headers("clerk")).json()["store"]["id"]
    resident_household = http.get("/api/v1/me", headers=cluster.headers("resident")).json()["household"]["id"]
    with cluster.engine.connect() as connection:
        household_ids = list(connection.scalars(select(Household.id).where(Household.number.in_(HOUSEHOLDS))))
        last_redemption = connection.scalar(select(func.coalesce(func.max(Redemption.id), 0)))
    assert len(household_ids) == len(HOUSEHOLDS) and resident_household in household_ids
    households, store_balance = balances(cluster.engine, household_ids, store_id)
    return Setup(households, resident_household, rule_id, store_id, store_balance, last_redemption)


@pytest.fixture
def cluster(app, tmp_path):
    """A 2-worker gunicorn on the test's database (the `app` fixture verifies the ledger afterwards)."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    env = server_env(uri, tmp_path / "instance", LOGIN_LIMIT_PER_ACCOUNT="1000 per minute",
                     LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS="1000 per minute",
                     CODE_MINT_LIMIT="1000 per minute", CODE_LOOKUP_LIMIT="100000 per minute")
    server = GunicornServer(env, workers=2, log=tmp_path / "gunicorn.log")
    engine = create_engine(uri)
    try:
        server.start()
        state = Cluster(server, engine)
        state.up.set()
        yield state
    finally:
        server.kill()
        engine.dispose()


def test_sigkill_under_write_load_loses_and_doubles_nothing(cluster):
    from moralbank.awards.models import Award
    from moralbank.idempotency import IdempotencyRecord
    from moralbank.ledger.models import Transfer
    from moralbank.stores.models import Redemption

    setup = arrange(cluster)
    rng = random.Random(SEED)
    load = Load()
    clients = [load.thread(award_client, cluster, load, list(setup.households), setup.rule_id, SEED + n,
                           name=f"awards-{n}") for n in range(2)]
    clients.append(load.thread(shop_client, cluster, load, setup.store_id, name="shop"))
    restarts: list[float] = []
    started = time.monotonic()
    for thread in clients:
        thread.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 1.0))
            cluster.up.clear()
            down = time.monotonic()
            cluster.server.kill()
            cluster.server.start()
            cluster.up.set()
            restarts.append(time.monotonic() - down)
        time.sleep(0.5)
    except BaseException:
        cluster.dead = True
        raise
    finally:
        cluster.stop.set()
        for thread in clients:
            thread.join(120)
    assert not any(thread.is_alive() for thread in clients), "a client thread hangs"
    assert cluster.server.starts == KILLS + 1
    elapsed = time.monotonic() - started
    log = cluster.server.log_tail()

    # No answer but the expected ones: no 5xx, no refusal of a valid request.
    assert not load.unexpected, "\n".join(load.unexpected[:20]) + "\n--- gunicorn log ---\n" + log
    writes = load.writes
    acked = [w for w in writes if w.status is not None and 200 <= w.status < 300]
    assert len(acked) == len(writes)
    retried = [w for w in writes if w.lost]
    by_kind = {kind: [w for w in writes if w.kind == kind] for kind in ("propose", "approve", "redeem")}
    summary = (f"{len(writes)} writes in {elapsed:.1f} s ({', '.join(f'{k}: {len(v)}' for k, v in by_kind.items())}); "
               f"{len(retried)} answers lost in a kill and retried "
               f"({sum(bool(w.committed_before_retry) for w in retried)} had committed); "
               f"{load.throttled} redemptions throttled; a restart took {sum(restarts) / len(restarts):.1f} s")
    print(summary)
    # The load was real: writes on every server generation, and kills that cut answers.
    assert len(by_kind["propose"]) >= KILLS and len(by_kind["redeem"]) >= KILLS // 2, summary
    assert retried, "no kill hit a request in flight: " + summary

    # A retried request got the original answer when its first attempt had committed, else ran once.
    for write in retried:
        assert write.replayed == write.committed_before_retry, (write, summary)

    # Sent again with the same key (most were answered by an earlier server generation), an
    # acknowledged write gets its original answer back, and nothing is written.
    http = cluster.http()
    for write in rng.sample(writes, min(40, len(writes))):
        answer = http.post(write.path, json=write.body, headers=cluster.headers(write.who, write.key))
        assert answer.status == write.status and answer.headers.get("Idempotent-Replayed") == "true", (write, answer)
        assert answer.json() == write.answer, (write, answer)
    cluster.server.kill()  # nothing writes from here on

    engine = cluster.engine
    with engine.connect() as db:
        # Proposals: each key's note is on exactly one award, the one the client was told.
        notes = dict(db.execute(select(Award.note, func.count()).where(Award.note.like("crash %"))
                                .group_by(Award.note)).all())
        doubled = {note: n for note, n in notes.items() if n > 1}
        assert not doubled, f"awards doubled: {doubled}"
        sent_notes = {w.body["note"] for w in by_kind["propose"]}
        assert set(notes) == sent_notes, "awards without an acknowledged proposal, or acknowledged ones missing"
        award_of = dict(db.execute(select(Award.note, Award.id).where(Award.note.like("crash %"))).all())
        for write in by_kind["propose"]:
            assert award_of[write.body["note"]] == write.answer["id"], write

        # Approvals: every acknowledged one posted its award, exactly one transfer each.
        approved = {w.answer["id"] for w in by_kind["approve"]}
        assert len(approved) == len(by_kind["approve"])
        crash_awards = set(award_of.values())
        statuses = dict(db.execute(select(Award.id, Award.status).where(Award.id.in_(crash_awards))).all())
        transfers = dict(db.execute(select(Transfer.award_id, func.count()).where(Transfer.award_id.in_(crash_awards))
                                    .group_by(Transfer.award_id)).all())
        for award_id in crash_awards:
            posted = award_id in approved
            assert statuses[award_id] == ("posted" if posted else "proposed"), (award_id, statuses[award_id])
            assert transfers.get(award_id, 0) == (1 if posted else 0), (award_id, transfers.get(award_id))
        amounts = set(db.scalars(select(Transfer.amount).where(Transfer.award_id.in_(crash_awards))))
        assert amounts <= {AWARD_POINTS}

        # Redemptions: every acknowledged one is there once, paid by one transfer; no others.
        redemption_ids = [w.answer["id"] for w in by_kind["redeem"]]
        assert len(set(redemption_ids)) == len(redemption_ids)
        stored = set(db.scalars(select(Redemption.id).where(Redemption.id > setup.last_redemption)))
        acknowledged = set(redemption_ids)
        assert stored == acknowledged, (f"stored but never acknowledged: {sorted(stored - acknowledged)}; "
                                        f"acknowledged but missing: {sorted(acknowledged - stored)}")
        paid = dict(db.execute(select(Transfer.redemption_id, func.count()).where(Transfer.redemption_id.in_(stored))
                               .group_by(Transfer.redemption_id)).all())
        assert all(paid.get(rid) == 1 for rid in stored), paid
        per_code = db.execute(select(Redemption.code_id, func.count()).where(Redemption.id.in_(stored))
                              .group_by(Redemption.code_id).having(func.count() > 1)).all()
        assert not per_code, f"a code paid twice: {per_code}"

        # Every key took effect once: one idempotency record per key, holding the answer the client got.
        records = {(row.user_id, row.key): row for row in db.execute(
            select(IdempotencyRecord.user_id, IdempotencyRecord.key, IdempotencyRecord.status_code,
                   IdempotencyRecord.response_body)
            .where(IdempotencyRecord.key.like("p-%") | IdempotencyRecord.key.like("a-%")
                   | IdempotencyRecord.key.like("r-%")))}
        assert len(records) == len(writes)
        for write in writes:
            record = records[(cluster.user_ids[write.who], write.key)]
            assert record.status_code == write.status and record.response_body["id"] == write.answer["id"], write

    # The balances moved by exactly what was acknowledged.
    households, store = balances(engine, list(setup.households), setup.store_id)
    posted_to = [w.answer["household_id"] for w in by_kind["approve"]]
    for household_id, before in setup.households.items():
        spent = len(by_kind["redeem"]) if household_id == setup.resident_household else 0
        assert households[household_id] == before + AWARD_POINTS * posted_to.count(household_id) - spent, household_id
    assert store == setup.store_balance + len(by_kind["redeem"])

    # The real command, on the database the server wrote.
    result = run_cli(cluster.server.env, "ledger", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the conftest check after the test (the `app` fixture) verifies it again.
