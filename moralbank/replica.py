"""Reading from a PostgreSQL streaming replica (``DATABASE_REPLICA_URL``).

The pages that many people read and that may lag the primary by a moment — the public board and
published rankings, the staff dashboards, the town overview and the exports — are decorated with
:func:`reads_replica`: their queries go to the replica (``extensions.RoutingSession``). Everything
else, and every write transaction anywhere, uses the primary.

**Reading one's own writes.** After a request commits a write, the primary's WAL position
(``pg_current_wal_lsn()``, taken after the commit, so at or past its commit record) is kept in the
user's session. A replica page then asks the replica ``pg_last_wal_replay_lsn() >= that`` first: until
the replica has replayed that far, this user's replica pages read from the primary; once it has,
the mark is dropped and the replica serves them again. A time window ("primary for 5 s after a
write") would be simpler but wrong both ways: too long on a healthy replica, too short on a lagging
one. Other users may see the replica a moment behind, as on any notice board.

**Replica down.** If the replica does not answer (refused, timed out, in recovery trouble), reads go
to the primary, a warning is logged once, and the replica is tried again after
:data:`RETRY_SECONDS`; if it goes away during a page, the page is read again from the primary. The pages go on working; ``moralbank_db_reads_total{target}`` shows where
reads went.

The user is loaded from the primary before a page switches (a logged-out session must not live
on in the replica's lag).
"""
from __future__ import annotations

import logging
import threading
import time
from functools import wraps

from flask import current_app, g, request, session
from flask_login import current_user

from .extensions import db

log = logging.getLogger(__name__)

#: after a failure the replica is left alone this long
RETRY_SECONDS = 10.0
#: the session key of the primary's WAL position after this user's last write
SESSION_KEY = "_wal"

_state_lock = threading.Lock()
_down_until: dict[str, float] = {}


def configured() -> bool:
    return "replica" in (current_app.config.get("SQLALCHEMY_BINDS") or {})


def _mark_down(url: str, error: Exception) -> None:
    with _state_lock:
        first = _down_until.get(url, 0) == 0
        _down_until[url] = time.monotonic() + RETRY_SECONDS
    if first:
        log.warning("read replica unreachable (%s): reading from the primary", error.__class__.__name__)


def _replica_ready(engine) -> bool:
    """The replica answers and has replayed this user's last write (if any)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    key = str(engine.url)
    if _down_until.get(key, 0) > time.monotonic():
        return False
    written = session.get(SESSION_KEY) if not request.path.startswith("/api/") else None
    try:
        with engine.connect() as connection:
            if written:
                caught_up = connection.scalar(text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
                                              {"lsn": written})
            else:
                caught_up = connection.scalar(text("SELECT pg_is_in_recovery()")) is not None
    except (SQLAlchemyError, OSError) as error:
        _mark_down(key, error)
        return False
    if _down_until.pop(key, 0):
        log.warning("read replica answers again")
    if written and caught_up:
        session.pop(SESSION_KEY, None)
    return bool(caught_up)


def use_replica() -> bool:
    """Route the rest of this request's reads to the replica when it is configured, up and caught up
    with this user's writes; returns whether it did. ``g.read_from`` says where (for the metrics)."""
    if not configured():
        return False
    current_user._get_current_object()  # the user (and their session's validity) from the primary
    ready = _replica_ready(db.engines["replica"])
    db.session().info["use_replica"] = ready
    g.read_from = "replica" if ready else "primary"
    return ready


def reads_replica(view):
    """Decorate a read-only page (or one whose reads may lag, with writes of its own) to read from the
    replica."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not use_replica():
            return view(*args, **kwargs)
        from sqlalchemy.exc import InterfaceError, OperationalError
        try:
            return view(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            session = db.session()
            if not session.info.get("use_replica"):
                raise  # the page had written: the primary's error, not the replica's
            # The replica went away between the check and the page's reads: read it all again from the primary.
            _mark_down(str(db.engines["replica"].url), error)
            session.rollback()
            session.info["use_replica"] = False
            g.read_from = "primary"
            return view(*args, **kwargs)
    return wrapper


def _after_commit(db_session) -> None:
    """A write committed in a request: keep the primary's WAL position for this user; stop reading
    from the replica for the rest of the request."""
    if not db_session.info.get("write_depth"):
        return
    db_session.info["use_replica"] = False
    from flask import has_request_context
    if not has_request_context() or request.path.startswith("/api/") or not configured():
        return
    from sqlalchemy import text
    try:
        with db.engine.connect() as connection:
            lsn = connection.scalar(text("SELECT pg_current_wal_lsn()::text"))
    except Exception:  # the write is done; the worst outcome is reading the replica a moment early
        log.warning("could not read the primary's WAL position after a write", exc_info=True)
        return
    session[SESSION_KEY] = lsn


def init_app(app) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if configured_in(app) and not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)


def configured_in(app) -> bool:
    return "replica" in (app.config.get("SQLALCHEMY_BINDS") or {})
