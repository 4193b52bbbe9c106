"""Prometheus metrics at ``/metrics`` (prometheus_client), for the operator's monitoring only.

- ``moralbank_http_requests_total{endpoint,method,status}`` and
  ``moralbank_http_request_duration_seconds{endpoint}``: per Flask endpoint name (``board.public_board``),
  never the raw path (which may carry a payment token and would make a series per URL);
- ``moralbank_transfers_posted_total{code}``: transfers the ledger wrote, counted when their
  transaction commits (a rolled-back transfer never happened);
- ``moralbank_redemptions_refused_total{reason}``: refused redemptions by the refusal's code;
- ``moralbank_awards_waiting{status}``: awards proposed, disputed or approved and not yet posted,
  counted from the database at scrape time;
- ``moralbank_ledger_verify_last_ok`` and ``moralbank_ledger_verify_last_run_timestamp_seconds``:
  the last ``flask ledger verify`` (kept in the audit log as ``ledger.verify``);
- ``moralbank_db_reads_total{target}``: pages that read from the replica or the primary.

Under gunicorn every worker is a process: with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty folder
the workers share, wiped when the master starts: ``gunicorn.conf.py``) the scrape sums them all.

Not public: with ``METRICS_TOKEN`` set the scrape must send ``Authorization: Bearer <token>``;
without it only a loopback address may read. Anything else gets 404, as if there were no such page.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Response, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .extensions import db

bp = Blueprint("metrics", __name__)

#: seconds; a page is fast under 0.1 s, slow over 1 s
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Made once per process (``create_app`` runs many times in the tests; the default registry refuses
# a second metric of the same name).
REQUESTS = Counter("moralbank_http_requests", "HTTP requests answered", ["endpoint", "method", "status"])
LATENCY = Histogram("moralbank_http_request_duration_seconds", "Time to answer a request",
                    ["endpoint"], buckets=_BUCKETS)
TRANSFERS = Counter("moralbank_transfers_posted", "Transfers written to the ledger (committed)", ["code"])
REFUSALS = Counter("moralbank_redemptions_refused", "Redemptions refused, by reason", ["reason"])
READS = Counter("moralbank_db_reads", "Read-only pages by the database that served them", ["target"])

_AWARDS_WAITING = ("proposed", "disputed", "approved")


# --- per request ---------------------------------------------------------------------------------

def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response):
    started = g.pop("metrics_started", None)
    if started is None:
        return response
    endpoint = request.endpoint or "none"
    if endpoint == "metrics.scrape":
        return response
    elapsed = time.perf_counter() - started
    g.request_seconds = elapsed
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    LATENCY.labels(endpoint).observe(elapsed)
    read_from = g.get("read_from")
    if read_from:
        READS.labels(read_from).inc()
    return response


# --- ledger and shops ----------------------------------------------------------------------------

def _transfer_posted(transfer, *, debit, credit) -> None:
    """A ledger posting hook: remember the code; counted when the session commits."""
    from sqlalchemy.orm import object_session

    session = object_session(transfer) or db.session()
    session.info.setdefault("metrics_posted", []).append(transfer.code)


def _after_commit(session) -> None:
    for code in session.info.pop("metrics_posted", ()):
        TRANSFERS.labels(code).inc()


def _after_rollback(session) -> None:
    session.info.pop("metrics_posted", None)


def redemption_refused(reason: str) -> None:
    """A stores refusal hook: one more refused redemption for ``reason`` (the error's code)."""
    REFUSALS.labels(reason or "other").inc()


# --- computed at scrape --------------------------------------------------------------------------

class DatabaseFigures:
    """Figures read from the database when Prometheus scrapes (one process answers: not summed)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        from sqlalchemy import func, select

        from .audit.models import AuditEntry
        from .awards.models import Award

        waiting = GaugeMetricFamily("moralbank_awards_waiting", "Awards not yet posted or rejected, by status",
                                    labels=["status"])
        verify_ok = GaugeMetricFamily("moralbank_ledger_verify_last_ok",
                                      "1 if the last `flask ledger verify` found the ledger consistent, else 0")
        verify_at = GaugeMetricFamily("moralbank_ledger_verify_last_run_timestamp_seconds",
                                      "When the last `flask ledger verify` ran (Unix time)")
        counts = dict(db.session.execute(select(Award.status, func.count()).where(Award.status.in_(_AWARDS_WAITING))
                                         .group_by(Award.status)).all())
        for status in _AWARDS_WAITING:
            waiting.add_metric([status], counts.get(status, 0))
        last = db.session.execute(select(AuditEntry.detail, AuditEntry.created_at)
                                  .where(AuditEntry.action == "ledger.verify")
                                  .order_by(AuditEntry.id.desc()).limit(1)).first()
        if last is not None:
            verify_ok.add_metric([], 1 if (last.detail or {}).get("ok") else 0)
            verify_at.add_metric([], last.created_at.timestamp())
        yield waiting
        yield verify_ok
        yield verify_at


def _registry(app) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, TRANSFERS, REFUSALS, READS):
            registry.register(collector)
    registry.register(DatabaseFigures(app))
    return registry


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def _allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        sent = request.headers.get("Authorization", "")
        return sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), token.encode())
    return _loopback(request.remote_addr)


@bp.get("/metrics")
def scrape():
    if not _allowed():
        abort(404)
    try:
        body = generate_latest(_registry(current_app))
    finally:
        db.session.remove()
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def init_app(app) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from .ledger import hooks
    from .stores import redemptions

    hooks.on_posted(_transfer_posted)
    redemptions.on_refused(redemption_refused)
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
    app.before_request_funcs.setdefault(None, []).insert(0, _started)
    app.after_request(_answered)
    app.register_blueprint(bp)
