"""The HTTP figures of `make bench`: the app under gunicorn, loaded from a separate process.

* ``GET /api/v1/households/{id}`` with a committee member's token, on a copy of the county data
  set (2M transfers), vs the hello-world JSON route of the same app (bench/wsgi_bench.py), both
  at 16 connections against gunicorn with 2 (sync) workers — target ≥ 50 % of hello's req/s;
* redemption POSTs (the clerk redeems a resident's payment code, one item, with an
  Idempotency-Key), same server, 16 connections, vs hello — target ≥ 30 % req/s, p99 < 25 ms,
  no errors;
* redemptions on PostgreSQL, gunicorn with 8 workers and the rate limiter on Redis, vs a psycopg
  script doing the same writes on 8 connections (``_baseline_process`` in bench/postgres.py says
  exactly what) — target ≥ 50 %;
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

The parts: bench/load.py and bench/wrk.py (load generators), bench/server.py (gunicorn),
bench/fixtures.py (the data the load needs), bench/postgres.py (the PostgreSQL database and its
psycopg baseline); this module runs them in order and merges the rounds.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.fixtures import (conditional_requests, household_requests, issue_codes, make_fixture, public_paths,
                            redemption_requests, verify_ledger, work_copy)
from bench.load import Loader, Req, get
from bench.postgres import (PG_ADMIN, REDIS_URL, copy_sqlite_to_postgres, migrate, pg_create, pg_drop,
                            pg_reachable, psycopg_baseline, redis_reachable)
from bench.server import HELLO_PATH, ROOT, Gunicorn
from bench.wrk import find_wrk

DATA = ROOT / "bench" / "data"
#: connections of the SQLite redemption figure (its p99 target is at 8)
REDEMPTION_CONNECTIONS = 8


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
    loader = Loader(wrk, workdir, options.connections, get(HELLO_PATH))
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
                     "the data set's transfers carry real award and redemption ids: no planner statistics are "
                     "touched"]}
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
    result: dict = {"workers": 2, "redemption_connections": REDEMPTION_CONNECTIONS}
    # The redemption's p99 target is at 8 connections (2 workers, each request holding SQLite's
    # write lock for its last few ms): its own loader.
    writer = Loader(loader.wrk, loader.workdir, REDEMPTION_CONNECTIONS, loader.filler)
    hello, household = [get(HELLO_PATH)], household_requests(fixture)
    public = public_paths(fixture)
    ranking, board = [get(path) for path in public["ranking"]], [get(path) for path in public["board"]]
    with Gunicorn(2, {"DATABASE_URL": uri}, options.log) as server:
        loader.run(server.base, hello, seconds=options.warmup)
        loader.run(server.base, household, seconds=options.warmup)
        loader.run(server.base, ranking + board, seconds=options.warmup)
        ranking_304 = conditional_requests(server.base, public["ranking"])
        board_304 = conditional_requests(server.base, public["board"])
        warm = writer.run(server.base, redemption_requests(fixture, issue_codes(uri, fixture, 400)),
                          seconds=options.warmup, cycle=False)
        pool = CodePool(uri, fixture, warm["rps"])
        seconds = options.round_seconds
        result.update(_interleaved({
            "hello": lambda _: _measured(loader, server, hello, seconds=seconds, cycle=True),
            "household": lambda _: _measured(loader, server, household, seconds=seconds, cycle=True),
            "ranking": lambda _: _measured(loader, server, ranking, seconds=seconds, cycle=True),
            "ranking_304": lambda _: _measured(loader, server, ranking_304, seconds=seconds, cycle=True),
            "board": lambda _: _measured(loader, server, board, seconds=seconds, cycle=True),
            "board_304": lambda _: _measured(loader, server, board_304, seconds=seconds, cycle=True),
            "redemption": lambda _: pool.measured(_measured(
                writer, server, redemption_requests(fixture, pool.take(seconds)), seconds=seconds, cycle=False)),
        }, options.rounds))
        result["redemption"]["codes_issued"] = pool.issued
        server.sample()
        result["worker_peak_rss_mb"] = round(server.peak_mb, 1)
    _report("hello-world JSON", result["hello"])
    _report("GET /api/v1/households/{id}", result["household"])
    _report("GET /api/v1/rankings?village= (public)", result["ranking"])
    _report("  the same, conditional (304)", result["ranking_304"])
    _report("GET /v/<village> (public board page)", result["board"])
    _report("  the same, conditional (304)", result["board_304"])
    _report(f"POST /api/v1/stores/{{id}}/redemptions, {REDEMPTION_CONNECTIONS} connections", result["redemption"])
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
