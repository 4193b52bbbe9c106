"""Database plumbing shared by every domain: UTC times, engine settings, write transactions.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign
keys on. pysqlite's own transaction handling is switched off
(``isolation_level=None``) so that we emit BEGIN ourselves: a read starts a
plain (deferred) transaction, a write starts ``BEGIN IMMEDIATE`` and so takes
the write lock before it reads anything it will act on. Without that, two
writers could both read under a shared lock and one would fail with
SQLITE_BUSY on upgrade, whatever the busy timeout.

PostgreSQL runs READ COMMITTED; the ledger takes row locks in a fixed order and
guards spending with a conditional UPDATE.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import DateTime, event
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

from .extensions import db

_WRITE_OPTION = "moralbank_write"
#: a request's reads before its write transaction, on SQLite: no BEGIN (each is its own snapshot)
_PRELOCK_OPTION = "moralbank_prelock"


#: added to the wall clock; only tests move it (``travel``), to reach the end of a notice period
_clock_offset = timedelta(0)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (every timestamp the app writes comes from here)."""
    return datetime.now(timezone.utc) + _clock_offset


def travel(delta: timedelta) -> None:
    """Move the app's clock forward by ``delta`` (tests; the CLI never does)."""
    global _clock_offset
    _clock_offset += delta


def reset_clock() -> None:
    global _clock_offset
    _clock_offset = timedelta(0)


def local_zone() -> ZoneInfo:
    """The deployment's time zone (calendar periods and display)."""
    try:
        return ZoneInfo(current_app.config["MORALBANK_TIMEZONE"])
    except RuntimeError:  # outside an app context
        return ZoneInfo("Asia/Shanghai")


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC on every engine and read back timezone-aware.

    SQLite has no time zones; storing naive UTC everywhere keeps the two engines alike.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use moralbank.database.utcnow()")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def install_engine_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    """Configure a freshly created engine (SQLite pragmas and BEGIN handling)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, connection_record):  # pragma: no cover - trivial
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        options = conn.get_execution_options()
        if options.get(_PRELOCK_OPTION) and not options.get(_WRITE_OPTION):
            return  # autocommit reads (see ``reads_before_write``)
        mode = "IMMEDIATE" if options.get(_WRITE_OPTION) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def reads_before_write() -> None:
    """A request that will write (an API POST): its reads before ``write_transaction()`` run without
    a transaction of their own on SQLite (each statement is its own snapshot, no BEGIN sent).
    They only find what the write transaction acts on, and the write checks again what it relies
    on (guarded UPDATEs, the code's state), so one snapshot for them would buy nothing. No effect
    when the session already has a transaction, nor on PostgreSQL (which sends no BEGIN statement)."""
    session = db.session()
    if not session.in_transaction():
        session.connection(execution_options={_PRELOCK_OPTION: True})


def read_alone():
    """The session's connection for a read that may be the request's only statement (a conditional
    GET's version check): on SQLite, when no transaction is open, it runs without a BEGIN. The
    session's pretend transaction is ended by the caller's ``end_read_alone()`` before more reads."""
    session = db.session()
    if session.in_transaction():
        return session.connection()
    session.info["read_alone"] = True
    return session.connection(execution_options={_PRELOCK_OPTION: True})


def end_read_alone() -> None:
    """After ``read_alone()``: the reads that follow share one snapshot again (a BEGIN of their own)."""
    session = db.session()
    if session.info.pop("read_alone", False):
        session.commit()


def keep_loaded(*objects) -> None:
    """Objects of this request (the user, their token and grants) that the commits of its write
    transactions do not expire: they are read once per request, not again after each commit.
    Everything else is expired as before, so a write still re-reads what it acts on."""
    session = db.session()
    session.info.setdefault("keep_loaded", {}).update({id(obj): obj for obj in objects})


def _commit(session) -> None:
    """Commit; with objects kept loaded (``keep_loaded``), expire every other object instead of all."""
    keep = session.info.get("keep_loaded")
    if not keep:
        session.commit()
        return
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = previous
    if previous:
        _expire_all_but_kept(session)


def _expire_all_but_kept(session) -> None:
    keep = session.info.get("keep_loaded") or {}
    if not keep:
        session.expire_all()
        return
    for obj in list(session.identity_map.values()):
        if id(obj) not in keep:
            session.expire(obj)


@contextmanager
def write_transaction():
    """Run the block as one write transaction; commit on success, roll back on error.

    Re-entrant: a service called inside another's transaction joins it, so an
    API request (with its idempotency record), a service and the ledger all
    commit or fail together. Any read transaction the session had open is ended
    first, so on SQLite the write begins IMMEDIATE with a fresh snapshot (on PostgreSQL, whose
    READ COMMITTED statements each see what is committed, it goes on as the write transaction;
    what it had read is expired either way).
    """
    session = db.session()
    depth = session.info.get("write_depth", 0)
    if depth:
        session.info["write_depth"] = depth + 1
        try:
            yield session
        finally:
            session.info["write_depth"] = depth
        return

    continued = False
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("unflushed changes outside a write transaction")
        if session.get_bind().dialect.name == "postgresql":
            # READ COMMITTED: each statement sees what was committed before it, so the request's
            # read transaction simply goes on as the write one (no COMMIT, no second checkout and
            # ping of a pooled connection); what was read is expired all the same.
            _expire_all_but_kept(session)
            continued = True
        else:
            _commit(session)
    session.info["write_depth"] = 1
    session.info.pop("ledger_doomed", None)
    try:
        if not continued:
            session.connection(execution_options={_WRITE_OPTION: True})
        yield session
        if session.info.pop("ledger_doomed", False):
            raise RuntimeError("a refused ledger transfer was caught and the transaction went on; rolled back")
        _commit(session)
        session.info.pop("new_files", None)
    except BaseException:
        session.rollback()
        for path in session.info.pop("new_files", []):  # files written for what was rolled back
            path.unlink(missing_ok=True)
        raise
    finally:
        session.info["write_depth"] = 0


class OutsideTransaction(RuntimeError):
    """A service that writes was called without ``write_transaction()``: a programming error.

    An exception rather than an ``assert``, which ``python -O`` strips."""


def require_write_transaction() -> None:
    """Services that write call this first: the edge (view, API wrapper, CLI command) opens the
    transaction, so that a request's writes commit or fail together."""
    if not in_write_transaction():
        raise OutsideTransaction("this service writes: call it inside write_transaction()")


def in_write_transaction() -> bool:
    """True inside ``write_transaction()``; the ledger asserts it."""
    return bool(db.session().info.get("write_depth"))
