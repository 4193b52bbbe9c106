"""The HTTP figures of `make bench`: the app under gunicorn, loaded from a separate process.

* ``GET /api/v1/households/{id}`` with a committee member's token, on a copy of the county data
  set (2M transfers), vs the hello-world JSON route of the same app (bench/wsgi_bench.py), both
  at 16 connections against gunicorn with 2 (sync) workers — target ≥ 50 % of hello's req/s;
* redemption POSTs (the clerk redeems a resident's payment code, one item, with an
  Idempotency-Key), same server, 16 connections, vs hello — target ≥ 30 % req/s, p99 < 25 ms,
  no errors;
* redemptions on PostgreSQL, gunicorn with 8 workers and the rate limiter on Redis, vs a psycopg
  script doing the same writes on 8 connections (``_baseline_process`` says exactly what) —
  target ≥ 50 %;
* peak RSS (VmHWM) of every gunicorn worker during those loads — target ≤ 150 MB.

Each figure and its baseline are measured in interleaved rounds (hello, household, redemption,
hello, …), so that what else the machine runs weighs on both alike; the workers' CPU time per
request is reported too, since unlike req/s it hardly depends on that.

The load generator is wrk when installed (``apt-get install wrk`` is tried once when it is not
and we are root), else a Python one: processes of threads, each with an http.client keep-alive
connection. Either way it runs in other processes than the servers, and the table says which.

Everything the load needs is made by the app's own services before the clock starts: users and
their role grants, bearer tokens, an item on each store's shelf, points for the residents'
households (awards posted through the ledger), and payment codes issued by the residents — one
code is good for one redemption, so codes are issued between the timed rounds, twice as many as
the last measured rate would use (a round that still runs out stops there, timed to that moment).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
#: the key every bench process signs with (codes are HMACs of it; the server must agree)
BENCH_SECRET = "bench-only-secret-" + "k" * 40
HELLO_PATH = "/api/v1/bench/hello"  # the route bench/wsgi_bench.py adds
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


# --- requests and load generators ------------------------------------------------------------

@dataclass(frozen=True)
class Req:
    method: str
    path: str
    headers: tuple = ()
    body: bytes = b""

    def raw(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body or self.method == "POST":
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _get(path: str, token: str | None = None) -> Req:
    return Req("GET", path, (("Authorization", f"Bearer {token}"),) if token else ())


def _post_json(path: str, token: str, payload: dict, key: str) -> Req:
    return Req("POST", path, (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"),
                              ("Idempotency-Key", key)), json.dumps(payload).encode())


def find_wrk(install: bool = True) -> str | None:
    """The wrk binary; when missing, try ``apt-get install -y wrk`` once (root only). None: use Python."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("  wrk not installed: trying apt-get install -y wrk …", flush=True)
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, timeout=180,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        except (OSError, subprocess.TimeoutExpired):
            pass
    return shutil.which("wrk")


# The wrk script: requests are read from a file of "<length>\n<raw request>" records. With
# CYCLE they repeat; without, each is sent once and the thread stops when they run out, noting
# when (wrk itself divides by the whole -d duration, so the rate is computed from these times).
_WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local function now()
  local tv = ffi.new("bench_timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

local DATA, CYCLE, FILLER = %(data)s, %(cycle)s, %(filler)s
local threads = {}
function setup(thread)
  thread:set("started_at", now())
  table.insert(threads, thread)
end

local reqs, i = {}, 0
finished_at = 0
function init(args)
  local f = assert(io.open(DATA, "rb"))
  while true do
    local n = f:read("*l")
    if not n then break end
    reqs[#reqs + 1] = f:read(tonumber(n))
  end
  f:close()
end

function request()
  i = i + 1
  if i > #reqs then
    if CYCLE then
      i = 1
    else
      if finished_at == 0 then
        finished_at = now()
        wrk.thread:stop()
      end
      return FILLER
    end
  end
  return reqs[i]
end

function done(summary, latency, requests)
  local started, finished = nil, 0
  for _, t in ipairs(threads) do
    local s = t:get("started_at")
    if started == nil or s < started then started = s end
    local f = t:get("finished_at")
    if f and f > finished then finished = f end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\"requests\": %%d, \"duration_us\": %%d, \"status_errors\": %%d, \"socket_errors\": %%d, " ..
    "\"timeouts\": %%d, \"p50_ms\": %%.3f, \"p90_ms\": %%.3f, \"p99_ms\": %%.3f, \"max_ms\": %%.3f, " ..
    "\"started\": %%.6f, \"finished\": %%.6f}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, started, finished))
end
"""


def _lua_string(data: bytes) -> str:
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b}" for b in data) + '"'


def _run_wrk(wrk: str, base: str, requests: list[Req], *, cycle: bool, connections: int, seconds: float,
             workdir: Path) -> dict:
    data = workdir / f"wrk-{uuid.uuid4().hex}.bin"
    with open(data, "wb") as handle:
        for req in requests:
            raw = req.raw()
            handle.write(f"{len(raw)}\n".encode() + raw)
    script = workdir / f"wrk-{uuid.uuid4().hex}.lua"
    script.write_text(_WRK_LUA % {"data": _lua_string(str(data).encode()), "cycle": "true" if cycle else "false",
                                  "filler": _lua_string(_get(HELLO_PATH).raw())})
    # One wrk thread: it keeps 16 connections busy at a fraction of a core, leaving the rest
    # of this 2-core class of machine to the server.
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(script), base + HELLO_PATH]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    data.unlink(missing_ok=True)
    script.unlink(missing_ok=True)
    line = next((line for line in out.stdout.splitlines() if line.startswith("BENCH-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line[len("BENCH-JSON "):])
    elapsed = raw["duration_us"] / 1e6
    if raw["finished"] > 0:  # ran out of one-time requests before the duration
        elapsed = raw["finished"] - raw["started"]
    errors = raw["status_errors"] + raw["socket_errors"] + raw["timeouts"]
    return {"requests": raw["requests"], "seconds": round(elapsed, 2), "rps": raw["requests"] / elapsed,
            "p50_ms": raw["p50_ms"], "p90_ms": raw["p90_ms"], "p99_ms": raw["p99_ms"], "max_ms": raw["max_ms"],
            "errors": errors, "status_errors": raw["status_errors"], "exhausted": raw["finished"] > 0}


def _python_load_process(host: str, port: int, requests: list, cycle: bool, threads: int, seconds: float,
                         ready, go, results) -> None:
    """One load process: ``threads`` keep-alive connections sharing ``requests`` (spawned, not forked).
    It says it is ready, waits for the word, and runs ``seconds`` from then."""
    import http.client
    import itertools

    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    outcome = {"requests": 0, "status_errors": 0, "socket_errors": 0, "finished": 0.0}
    ready.put(os.getpid())
    go.wait()
    start_at = time.time()
    deadline = start_at + seconds
    outcome["started"] = start_at

    def run():
        connection = http.client.HTTPConnection(host, port, timeout=10)
        mine, errors, socket_errors = [], 0, 0
        while True:
            index = next(counter)
            if index >= len(requests):
                if not cycle:
                    break
                index %= len(requests)
            now = time.time()
            if now >= deadline:
                break
            method, path, headers, body = requests[index]
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body or None, headers=dict(headers))
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    connection.close()
                if response.status >= 400:
                    errors += 1
            except (OSError, http.client.HTTPException):
                socket_errors += 1
                connection.close()
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            outcome["requests"] += len(mine)
            outcome["status_errors"] += errors
            outcome["socket_errors"] += socket_errors
            outcome["finished"] = max(outcome["finished"], time.time())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((outcome, latencies))


def _run_python(base: str, requests: list[Req], *, cycle: bool, connections: int, seconds: float) -> dict:
    import multiprocessing

    host, port = base.split("//", 1)[1].split(":")
    processes = max(1, min(connections, os.cpu_count() or 1))
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    plain = [(r.method, r.path, r.headers, r.body) for r in requests]
    children = []
    for index in range(processes):
        share = plain if cycle else plain[index::processes]
        threads = connections // processes + (1 if index < connections % processes else 0)
        child = context.Process(target=_python_load_process,
                                args=(host, int(port), share, cycle, threads, seconds, ready, go, results))
        child.start()
        children.append(child)
    outcomes = _start_together(children, ready, go, results, seconds)
    latencies = sorted(value for _, values in outcomes for value in values)
    total = sum(outcome["requests"] for outcome, _ in outcomes)
    start_at = min(outcome["started"] for outcome, _ in outcomes)
    deadline = start_at + seconds
    finished = max(outcome["finished"] for outcome, _ in outcomes)
    elapsed = min(finished, deadline) - start_at
    status_errors = sum(outcome["status_errors"] for outcome, _ in outcomes)
    socket_errors = sum(outcome["socket_errors"] for outcome, _ in outcomes)
    return {"requests": total, "seconds": round(elapsed, 2), "rps": total / elapsed,
            "p50_ms": quantile(latencies, 0.5) * 1000, "p90_ms": quantile(latencies, 0.9) * 1000,
            "p99_ms": quantile(latencies, 0.99) * 1000, "max_ms": latencies[-1] * 1000 if latencies else 0,
            "errors": status_errors + socket_errors, "status_errors": status_errors,
            "exhausted": not cycle and finished < deadline - 0.5}


def _start_together(children: list, ready, go, results, seconds: float) -> list:
    """Wait until every spawned child says it is ready (imports done, connection open), give the
    word to all at once, and collect what each reports. Spawning takes seconds on a busy machine,
    so no start time is fixed in advance."""
    for _ in children:
        ready.get(timeout=300)
    go.set()
    outcomes = [results.get(timeout=seconds + 300) for _ in children]
    for child in children:
        child.join()
    return outcomes


def quantile(values, q):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Loader:
    """Runs one load phase with wrk or the Python generator."""

    wrk: str | None
    workdir: Path
    connections: int = 16

    @property
    def name(self) -> str:
        return "wrk" if self.wrk else "python (http.client)"

    def run(self, base: str, requests: list[Req], *, seconds: float, cycle: bool = True,
            connections: int | None = None) -> dict:
        connections = connections or self.connections
        if self.wrk:
            return _run_wrk(self.wrk, base, requests, cycle=cycle, connections=connections, seconds=seconds,
                            workdir=self.workdir)
        return _run_python(base, requests, cycle=cycle, connections=connections, seconds=seconds)


# --- gunicorn --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces, so split after the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class Gunicorn:
    """gunicorn serving bench.wsgi_bench:app; samples its workers' peak RSS while it runs."""

    def __init__(self, workers: int, env: dict, log: Path):
        self.workers, self.env, self.log = workers, env, log
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.peak_kb: dict[int, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> "Gunicorn":
        env = dict(os.environ)
        for name in ("DATABASE_URL", "REDIS_URL", "TRUSTED_HOSTS", "PROXY_FIX_HOPS"):
            env.pop(name, None)
        env.update(self.env)
        env.update({"SECRET_KEY": BENCH_SECRET, "MORALBANK_ENV": "production", "PYTHONPATH": str(ROOT),
                    "TRUSTED_HOSTS": "127.0.0.1,localhost"})
        self._log = open(self.log, "ab")
        # Default (sync) workers, as the README's deployment line runs them.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}",
             "--chdir", str(ROOT), "bench.wsgi_bench:app"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _wait_ready(self, timeout: float = 90) -> None:
        import http.client

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}); see {self.log}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", HELLO_PATH)
                if connection.getresponse().status == 200 and len(_children(self.process.pid)) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer in {timeout} s; see {self.log}")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    def sample(self) -> None:
        for pid in _children(self.process.pid):
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), _status_kb(pid, "VmHWM"))

    def cpu_seconds(self) -> float:
        """User + system CPU of the workers so far (the master only supervises)."""
        ticks = 0
        for pid in _children(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return ticks / os.sysconf("SC_CLK_TCK")

    @property
    def peak_mb(self) -> float:
        return max(self.peak_kb.values(), default=0) / 1024

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.process.poll() is None:
            self.sample()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


# --- the data the load needs, made by the app's services -------------------------------------

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


def _close(app) -> None:
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
                out.append({"village_id": village.id, "store_id": store.id, "item_id": item.id,
                            "clerk_id": clerk.id, "resident_ids": resident_ids,
                            "store_account_id": ledger.store_account(store.id).id,
                            "household_accounts": household_accounts, "readable": readable_ids,
                            "committee": committee, "clerk": clerk})
        for entry in out:
            entry["committee_token"], _ = issue_token(entry.pop("committee"))
            entry["clerk_token"], _ = issue_token(entry.pop("clerk"))
    _close(app)
    return {"villages": out}


def issue_codes(uri: str, fixture: dict, count: int) -> list[dict]:
    """``count`` payment codes issued by the residents (the service a resident's POST /redemption-codes
    calls), round-robin over villages and households so the load spreads over the stores."""
    from moralbank.database import write_transaction
    from moralbank.extensions import db
    from moralbank.people.models import User
    from moralbank.stores.service import issue_code

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
    _close(app)
    return codes


def household_requests(fixture: dict) -> list[Req]:
    requests = [_get(f"/api/v1/households/{household_id}", village["committee_token"])
                for village in fixture["villages"] for household_id in village["readable"]]
    random.Random(5).shuffle(requests)
    return requests


def redemption_requests(fixture: dict, codes: list[dict]) -> list[Req]:
    villages = fixture["villages"]
    return [_post_json(f"/api/v1/stores/{villages[c['village']]['store_id']}/redemptions",
                       villages[c["village"]]["clerk_token"],
                       {"code": c["code"], "items": [{"item_id": villages[c["village"]]["item_id"], "quantity": 1}]},
                       f"bench-{uuid.uuid4().hex}") for c in codes]


def verify_ledger(uri: str) -> dict:
    from moralbank.ledger.verify import verify

    app = bench_app(uri)
    with app.app_context():
        report = verify()
    _close(app)
    return {"ok": report.ok, "transfers": report.transfers, "discrepancies": report.discrepancies[:5]}


# --- SQLite ----------------------------------------------------------------------------------

def work_copy(source: Path, target: Path) -> Path:
    """A throwaway copy of the data set (the load writes to it)."""
    connection = sqlite3.connect(source)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(source, target)
    # The data-set builder writes its transfers with award_id, redemption_id and settlement_id all
    # NULL and then runs ANALYZE, so sqlite_stat1 says each of those indexes holds 2,000,000 rows
    # per value; the planner then scans all of transfers for `WHERE redemption_id = ?` (the
    # receipt's balance-after query: 420 ms, inside the write lock). In a real ledger ~15 % of
    # transfers carry distinct redemption ids (ANALYZE gives ~7 rows a value) and the index is
    # used. Those three statistics are dropped from the copy so the planner judges as it would there.
    connection = sqlite3.connect(target)
    connection.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'transfers' AND idx IN "
                       "('ix_transfers_award_id', 'ix_transfers_redemption_id', 'ix_transfers_settlement_id')")
    connection.commit()
    connection.close()
    return target


# --- PostgreSQL ------------------------------------------------------------------------------

def pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


def pg_create(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        # Databases left by an earlier run that was killed (its process is gone) go first.
        for (stale,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'moralbank\\_bench\\_%'"):
            pid = stale.rsplit("_", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                admin.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name


def redis_reachable() -> bool:
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_dsn(uri: str) -> str:
    return uri.replace("postgresql+psycopg://", "postgresql://")


def migrate(uri: str) -> None:
    from flask_migrate import upgrade

    app = bench_app(uri)
    with app.app_context():
        upgrade()
    _close(app)


def _copy_text_expression(column) -> str:
    """SQL (for SQLite) turning one column into PostgreSQL COPY text: \\N for NULL, escapes for
    backslash, tab, newline and carriage return. The formatting runs in SQLite's C code, so
    Python only moves blocks of lines."""
    value = f'CAST("{column}" AS TEXT)'
    for char, escaped in (("'\\'", "'\\\\'"), ("char(9)", "'\\t'"), ("char(10)", "'\\n'"),
                          ("char(13)", "'\\r'")):
        value = f"replace({value}, {char}, {escaped})"
    return f"coalesce({value}, '\\N')"


def copy_sqlite_to_postgres(source: Path, uri: str) -> dict:
    """Every row of the SQLite data set into the migrated PostgreSQL database (COPY, table by table
    in foreign-key order), then the id sequences moved past the copied ids, and ANALYZE."""
    import psycopg

    from moralbank import models  # noqa: F401  (every table on the metadata)
    from moralbank.extensions import db

    lite = sqlite3.connect(source)
    present = {name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    counts = {}
    with psycopg.connect(pg_dsn(uri)) as pg:
        # A bulk load of rows already consistent: no per-row foreign-key triggers (superuser only).
        pg.execute("SET session_replication_role = replica")
        for table in db.metadata.sorted_tables:
            if table.name not in present:
                continue
            columns = [column.name for column in table.columns]
            line = " || char(9) || ".join(_copy_text_expression(name) for name in columns)
            rows = lite.execute(f'SELECT {line} FROM "{table.name}"')
            count = 0
            quoted = ", ".join(f'"{name}"' for name in columns)
            with pg.cursor().copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                while block := rows.fetchmany(20_000):
                    copy.write("".join(text + "\n" for (text,) in block))
                    count += len(block)
            counts[table.name] = count
            if "id" in columns:
                pg.execute(f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                           f"(SELECT COALESCE(MAX(id), 0) + 1 FROM \"{table.name}\"), false)")
        pg.execute("SET session_replication_role = DEFAULT")
        pg.commit()
        pg.autocommit = True
        pg.execute("ANALYZE")
    lite.close()
    return counts


def _baseline_process(dsn: str, jobs: list, seconds: float, ready, go, results) -> None:
    """The PostgreSQL baseline: one connection, one transaction per redemption doing the writes the
    service does (and the one read they need, the code by its number), with the ids of accounts,
    item, store and clerk known up front:

      INSERT idempotency_records (clerk, key, hash) ON CONFLICT DO NOTHING RETURNING id
      SELECT id, household_id FROM redemption_codes WHERE village_id = … AND code = … FOR UPDATE
      UPDATE redemption_codes SET consumed_at = now WHERE id = … AND consumed_at IS NULL AND expires_at > now
      UPDATE items SET stock = stock - 1 WHERE id = … AND stock >= 1
      INSERT redemptions … RETURNING id;  INSERT redemption_lines …
      INSERT transfers (household → store, idempotency key redemption:<id>) ON CONFLICT DO NOTHING RETURNING id
      UPDATE accounts SET balance = balance ± 1 … RETURNING balance   (both, ascending id; the debit guarded ≥ 0)
      INSERT audit_log (store.redeem)
      UPDATE idempotency_records SET status_code = 201, response_body = … WHERE id = …
      COMMIT

    It skips what the service adds around them: token, user and grant lookups, the store, household
    and item reads, the ORM, and the balance-after query for the receipt."""
    from datetime import datetime, timezone

    import psycopg
    from psycopg.types.json import Json

    done = 0
    with psycopg.connect(dsn) as connection:
        ready.put(os.getpid())
        go.wait()
        start_at = time.time()
        deadline = start_at + seconds
        cpu = time.process_time()
        for job in jobs:
            if time.time() >= deadline:
                break
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            with connection.transaction():
                cursor = connection.cursor()
                claimed = cursor.execute(
                    "INSERT INTO idempotency_records (user_id, key, request_hash, created_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING id",
                    (job["clerk_id"], f"baseline-{uuid.uuid4().hex}", "0" * 64, now)).fetchone()[0]
                code_id, household_id = cursor.execute(
                    "SELECT id, household_id FROM redemption_codes WHERE village_id = %s AND code = %s FOR UPDATE",
                    (job["village_id"], job["code"])).fetchone()
                consumed = cursor.execute(
                    "UPDATE redemption_codes SET consumed_at = %s WHERE id = %s AND consumed_at IS NULL "
                    "AND expires_at > %s", (now, code_id, now)).rowcount
                assert consumed == 1
                taken = cursor.execute("UPDATE items SET stock = stock - 1 WHERE id = %s AND stock >= 1",
                                       (job["item_id"],)).rowcount
                assert taken == 1
                redemption_id = cursor.execute(
                    "INSERT INTO redemptions (village_id, store_id, household_id, points, clerk_id, code_id, "
                    "created_at) VALUES (%s, %s, %s, 1, %s, %s, %s) RETURNING id",
                    (job["village_id"], job["store_id"], household_id, job["clerk_id"], code_id, now)).fetchone()[0]
                cursor.execute("INSERT INTO redemption_lines (redemption_id, item_id, name, unit_points, quantity) "
                               "VALUES (%s, %s, '基准商品', 1, 1)", (redemption_id, job["item_id"]))
                cursor.execute(
                    "INSERT INTO transfers (village_id, debit_account_id, credit_account_id, amount, code, "
                    "idempotency_key, redemption_id, actor_id, reason, created_at) VALUES (%s, %s, %s, 1, "
                    "'redemption', %s, %s, %s, '积分超市', %s) ON CONFLICT DO NOTHING RETURNING id",
                    (job["village_id"], job["household_account"], job["store_account"],
                     f"redemption:{redemption_id}", redemption_id, job["clerk_id"], now)).fetchone()
                for account, delta in sorted(((job["household_account"], -1), (job["store_account"], 1))):
                    guard = " AND balance + %s >= 0" if delta < 0 else ""
                    params = (delta, account, delta) if delta < 0 else (delta, account)
                    assert cursor.execute(f"UPDATE accounts SET balance = balance + %s WHERE id = %s{guard} "
                                          "RETURNING balance", params).fetchone() is not None
                cursor.execute(
                    "INSERT INTO audit_log (village_id, actor_id, action, target_type, target_id, detail, source, "
                    "created_at) VALUES (%s, %s, 'store.redeem', 'redemption', %s, %s, '127.0.0.1', %s)",
                    (job["village_id"], job["clerk_id"], redemption_id,
                     Json({"points": 1, "store_id": job["store_id"]}), now))
                cursor.execute("UPDATE idempotency_records SET status_code = 201, response_body = %s WHERE id = %s",
                               (Json({"id": redemption_id, "household_id": household_id, "points": 1}), claimed))
            done += 1
        cpu = time.process_time() - cpu
    results.put((done, start_at, time.time(), cpu))


def psycopg_baseline(uri: str, fixture: dict, codes: list[dict], *, connections: int, seconds: float) -> dict:
    import multiprocessing

    villages = fixture["villages"]
    jobs = [{"village_id": villages[c["village"]]["village_id"], "store_id": villages[c["village"]]["store_id"],
             "item_id": villages[c["village"]]["item_id"], "clerk_id": villages[c["village"]]["clerk_id"],
             "store_account": villages[c["village"]]["store_account_id"],
             "household_account": c["household_account"], "code": c["code"]} for c in codes]
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    children = [context.Process(target=_baseline_process,
                                args=(pg_dsn(uri), jobs[index::connections], seconds, ready, go, results))
                for index in range(connections)]
    for child in children:
        child.start()
    outcomes = _start_together(children, ready, go, results, seconds)
    total = sum(count for count, _, _, _ in outcomes)
    start_at = min(started for _, started, _, _ in outcomes)
    elapsed = min(max(finished for _, _, finished, _ in outcomes), start_at + seconds) - start_at
    return {"requests": total, "seconds": round(elapsed, 2), "rps": total / elapsed,
            "cpu_ms_per_request": sum(cpu for _, _, _, cpu in outcomes) * 1000 / max(total, 1),
            "exhausted": elapsed < seconds - 0.5}


# --- the whole HTTP part ---------------------------------------------------------------------

@dataclass
class Options:
    seconds: float = 20.0              # of load per figure, in `rounds` interleaved rounds
    rounds: int = 4
    warmup: float = 3.0                # each warm-up (not counted)
    connections: int = 16
    load_generator: str = "auto"       # auto | wrk | python
    postgres: bool = True
    verify: bool = True                # `ledger verify` on both databases after their load
    log: Path = field(default_factory=lambda: DATA / "http-bench-gunicorn.log")

    @property
    def round_seconds(self) -> float:
        return self.seconds / self.rounds


def _report(label: str, result: dict) -> None:
    latency = (f", p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['errors']} errors"
               if "p99_ms" in result else "")
    if "cpu_ms_per_request" in result:
        latency += f", {result['cpu_ms_per_request']:.2f} ms CPU each"
    print(f"    {label}: {result['rps']:.0f}/s{latency}, {result['requests']:,} in {result['seconds']} s"
          + (" (used every code issued)" if result.get("exhausted") else ""), flush=True)


class CodePool:
    """Payment codes issued round by round, between the timed rounds: as many as the last measured
    rate would use in a round, twice over (a round that still runs out stops there and is timed
    to that moment, and the next round gets more)."""

    def __init__(self, uri: str, fixture: dict, rate: float):
        self.uri, self.fixture, self.rate, self.issued = uri, fixture, rate, 0

    def take(self, seconds: float) -> list[dict]:
        codes = issue_codes(self.uri, self.fixture, int(self.rate * seconds * 2) + 100)
        self.issued += len(codes)
        return codes

    def measured(self, result: dict) -> dict:
        self.rate = result["rps"]
        return result


def _measured(loader: Loader, server: Gunicorn, requests: list[Req], *, seconds: float, cycle: bool) -> dict:
    """One measured load, with the workers' CPU per request (which, unlike the rate, hardly depends
    on what else the machine runs)."""
    cpu = server.cpu_seconds()
    result = loader.run(server.base, requests, seconds=seconds, cycle=cycle)
    result["cpu_ms_per_request"] = (server.cpu_seconds() - cpu) * 1000 / max(result["requests"], 1)
    return result


def _interleaved(figures: dict, rounds: int) -> dict:
    """Run each figure's rounds in turn (a, b, c, a, b, c, …) so that whatever else the machine is
    doing weighs on a figure and its baseline alike; then merge each figure's rounds: rates from
    the summed requests and seconds, p50 the median of the rounds', p99 and max the worst round's."""
    runs: dict = {name: [] for name in figures}
    for index in range(rounds):
        for name, run_round in figures.items():
            runs[name].append(run_round(index))
    merged = {}
    for name, results in runs.items():
        requests = sum(r["requests"] for r in results)
        seconds = sum(r["seconds"] for r in results)
        out = {"requests": requests, "seconds": round(seconds, 2), "rps": requests / seconds,
               "cpu_ms_per_request": sum(r["cpu_ms_per_request"] * r["requests"] for r in results) / max(requests, 1),
               "exhausted": any(r.get("exhausted") for r in results), "rounds": results}
        if "p99_ms" in results[0]:
            out.update({"p50_ms": sorted(r["p50_ms"] for r in results)[len(results) // 2],
                        "p99_ms": max(r["p99_ms"] for r in results), "max_ms": max(r["max_ms"] for r in results),
                        "errors": sum(r["errors"] for r in results)})
        merged[name] = out
    return merged


def run(source: Path, options: Options | None = None) -> dict:
    """All HTTP figures on a copy of ``source`` (the 2M-transfer SQLite data set) and, when
    PostgreSQL answers, on a PostgreSQL database loaded from that copy. Returns the results."""
    options = options or Options()
    DATA.mkdir(parents=True, exist_ok=True)
    wrk = None if options.load_generator == "python" else find_wrk()
    if options.load_generator == "wrk" and not wrk:
        raise RuntimeError("--load-generator wrk, but wrk is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="moralbank-bench-"))
    loader = Loader(wrk, workdir, options.connections)
    out: dict = {"load_generator": loader.name, "connections": options.connections, "seconds": options.seconds,
                 "rounds": options.rounds, "server": "gunicorn, sync workers",
                 "load_average_before": [round(x, 2) for x in os.getloadavg()],
                 "notes": [
                     f"each figure: {options.rounds} rounds of {options.round_seconds:g} s, interleaved with its "
                     "baseline's; rates are completed requests per second of load",
                     "latencies per request " + ("(wrk's, with its coordinated-omission correction)" if wrk
                                                 else "(client side)") + "; p99 is the worst round's",
                     "cpu_ms_per_request: user+system CPU of the gunicorn workers (of the psycopg processes for "
                     "the baseline) / requests",
                     "code lookups are limited to BENCH_CODE_LOOKUP_LIMIT (default 1000000 per minute) instead of "
                     "60 per minute per clerk; the limiter stays on",
                     "the SQLite copy drops three misleading sqlite_stat1 rows of transfers (see work_copy)"]}
    print(f"  load generator: {loader.name}; {options.connections} connections; {options.seconds:g} s a figure "
          f"in {options.rounds} interleaved rounds, after {options.warmup:g} s of warm-up", flush=True)
    work = DATA / f"http-{source.name}"
    try:
        out["sqlite"], fixture = _run_sqlite(source, work, loader, options)
        if not options.postgres:
            out["postgresql"] = {"skipped": "--no-postgres"}
        elif pg_reachable():
            out["postgresql"] = _run_postgres(work, fixture, loader, options)
        else:
            out["postgresql"] = {"skipped": f"PostgreSQL not reachable at {PG_ADMIN}"}
            print(f"  PostgreSQL not reachable at {PG_ADMIN}: skipped", flush=True)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(work) + suffix).unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _run_sqlite(source: Path, work: Path, loader: Loader, options: Options) -> tuple[dict, dict]:
    started = time.perf_counter()
    work_copy(source, work)
    uri = f"sqlite:///{work}"
    fixture = make_fixture(uri)
    print(f"  SQLite: a copy of {source.name} with bench users, tokens, items and points "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    result: dict = {"workers": 2}
    hello, household = [_get(HELLO_PATH)], household_requests(fixture)
    with Gunicorn(2, {"DATABASE_URL": uri}, options.log) as server:
        loader.run(server.base, hello, seconds=options.warmup)
        loader.run(server.base, household, seconds=options.warmup)
        warm = loader.run(server.base, redemption_requests(fixture, issue_codes(uri, fixture, 400)),
                          seconds=options.warmup, cycle=False)
        pool = CodePool(uri, fixture, warm["rps"])
        seconds = options.round_seconds
        result.update(_interleaved({
            "hello": lambda _: _measured(loader, server, hello, seconds=seconds, cycle=True),
            "household": lambda _: _measured(loader, server, household, seconds=seconds, cycle=True),
            "redemption": lambda _: pool.measured(_measured(
                loader, server, redemption_requests(fixture, pool.take(seconds)), seconds=seconds, cycle=False)),
        }, options.rounds))
        result["redemption"]["codes_issued"] = pool.issued
        server.sample()
        result["worker_peak_rss_mb"] = round(server.peak_mb, 1)
    _report("hello-world JSON", result["hello"])
    _report("GET /api/v1/households/{id}", result["household"])
    _report("POST /api/v1/stores/{id}/redemptions", result["redemption"])
    if options.verify:
        result["ledger_verify"] = _verify(uri)
    result["fixture"] = {"villages": len(fixture["villages"]),
                         "readable_households": sum(len(v["readable"]) for v in fixture["villages"]),
                         "resident_households": sum(len(v["resident_ids"]) for v in fixture["villages"])}
    return result, fixture


def _verify(uri: str) -> dict:
    started = time.perf_counter()
    report = verify_ledger(uri)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"    ledger verify after the load: {'clean' if report['ok'] else report['discrepancies']} "
          f"({report['transfers']:,} transfers, {report['seconds']} s)", flush=True)
    return report


def _run_postgres(work: Path, fixture: dict, loader: Loader, options: Options) -> dict:
    name = f"moralbank_bench_{os.getpid()}"
    started = time.perf_counter()
    uri = pg_create(name)
    try:
        migrate(uri)
        counts = copy_sqlite_to_postgres(work, uri)
        print(f"  PostgreSQL: migrated {name}, copied {sum(counts.values()):,} rows "
              f"({counts.get('transfers', 0):,} transfers) ({time.perf_counter() - started:.0f} s)", flush=True)
        redis = redis_reachable()
        result: dict = {"workers": 8, "transfers": counts.get("transfers", 0),
                        "limiter_storage": "Redis" if redis else "memory (Redis not reachable)"}
        env = {"DATABASE_URL": uri} | ({"REDIS_URL": REDIS_URL} if redis else {})
        seconds = options.round_seconds
        with Gunicorn(8, env, options.log) as server:
            warm = loader.run(server.base, redemption_requests(fixture, issue_codes(uri, fixture, 400)),
                              seconds=options.warmup, cycle=False)
            pool = CodePool(uri, fixture, warm["rps"])
            warm = psycopg_baseline(uri, fixture, issue_codes(uri, fixture, 2000), connections=8,
                                    seconds=options.warmup)
            baseline_pool = CodePool(uri, fixture, warm["rps"])
            # The baseline's rounds run while gunicorn's workers wait idle between the HTTP rounds.
            result.update(_interleaved({
                "redemption": lambda _: pool.measured(_measured(
                    loader, server, redemption_requests(fixture, pool.take(seconds)), seconds=seconds, cycle=False)),
                "baseline": lambda _: baseline_pool.measured(psycopg_baseline(
                    uri, fixture, baseline_pool.take(seconds), connections=8, seconds=seconds)),
            }, options.rounds))
            result["redemption"]["codes_issued"] = pool.issued
            result["baseline"]["codes_issued"] = baseline_pool.issued
            server.sample()
            result["worker_peak_rss_mb"] = round(server.peak_mb, 1)
        _report(f"POST redemptions, 8 workers, limiter on {result['limiter_storage']}", result["redemption"])
        _report("psycopg baseline, 8 connections", result["baseline"])
        if options.verify:
            result["ledger_verify"] = _verify(uri)
        return result
    finally:
        pg_drop(name)
