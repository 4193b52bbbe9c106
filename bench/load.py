"""The Python load generator and what both generators share: ``Req`` (one raw HTTP request),
``Loader`` (one load phase, with wrk when there is one, else Python), ``start_together``.

The Python generator is processes of threads, each thread with its own http.client keep-alive
connection; its processes are spawned (not forked) and started at one word, so that the time of
spawning them is not part of the load.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.wrk import run_wrk


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


def get(path: str, token: str | None = None) -> Req:
    return Req("GET", path, (("Authorization", f"Bearer {token}"),) if token else ())


def post_json(path: str, token: str, payload: dict, key: str) -> Req:
    return Req("POST", path, (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"),
                              ("Idempotency-Key", key)), json.dumps(payload).encode())


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
    outcomes = start_together(children, ready, go, results, seconds)
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


def start_together(children: list, ready, go, results, seconds: float) -> list:
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
    """Runs one load phase with wrk or the Python generator. ``filler``: what wrk's connections send
    once the one-time requests ran out (not counted; the server's hello route)."""

    wrk: str | None
    workdir: Path
    connections: int
    filler: Req

    @property
    def name(self) -> str:
        return "wrk" if self.wrk else "python (http.client)"

    def run(self, base: str, requests: list[Req], *, seconds: float, cycle: bool = True,
            connections: int | None = None) -> dict:
        connections = connections or self.connections
        if self.wrk:
            return run_wrk(self.wrk, base, requests, cycle=cycle, connections=connections, seconds=seconds,
                           workdir=self.workdir, filler=self.filler)
        return _run_python(base, requests, cycle=cycle, connections=connections, seconds=seconds)

