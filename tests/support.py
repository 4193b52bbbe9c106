"""What the tests share besides fixtures: the demo logins, per-test databases made from session
templates, an app on a fresh database, and small helpers (a session outside a request, the CSRF
token of a page, a local moment). Test modules import from here; ``conftest.py`` holds only the
fixtures built on it.

The suite runs on SQLite (default) or PostgreSQL (``MORALBANK_TEST_DB=postgresql``, server from
``TEST_DATABASE_URL``, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url

from moralbank import create_app, periods
from moralbank.database import reset_clock, utcnow
from moralbank.extensions import db

BACKEND = os.environ.get("MORALBANK_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DEMO_PASSWORD = "demo-pass-2026"
PHONES = {"committee": "13800000001", "grid": "13800000002", "resident": "13800000003",
          "clerk": "13800000004", "supervisor": "13800000005", "committee_xlc": "13800000006"}
SECRET = "test-secret-key-that-is-long-enough-0123456789"


def pg_admin():
    import psycopg

    url = make_url(PG_ADMIN_URL)
    return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
                           password=url.password, dbname=url.database or "postgres", autocommit=True)


def pg_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def build_database(uri: str, *, seed: bool) -> None:
    """Migrate (and seed) a database through the real commands' code paths."""
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": SECRET, "TESTING": True})
    with app.app_context():
        upgrade()
        if seed:
            from moralbank.demo import seed_demo
            seed_demo(echo=lambda *args: None)
            # The demo's BLM adopts rule changes by villagers' meeting (drafts until then); the tests
            # of other features add rules and use them at once, so their template does not. The
            # governance tests (test_gov_rules.py) turn it back on.
            from moralbank.database import write_transaction
            from moralbank.people.models import Area
            with write_transaction():
                for village in db.session.query(Area).filter(Area.rule_changes_need_meeting.is_(True)):
                    village.rule_changes_need_meeting = False
        db.session.remove()
        db.engine.dispose()


class Databases:
    """Makes per-test databases from session templates."""

    def __init__(self, tmp_root):
        self.tmp_root = tmp_root
        self.templates: dict[bool, str] = {}
        #: demo templates by the clock they were seeded at: see ``template``
        self.demos: dict[tuple[str, str], str] = {}
        self.tag = uuid.uuid4().hex[:8]
        self.created: list[str] = []
        self._dropper: ThreadPoolExecutor | None = None

    def template(self, seed: bool, pinned: str | None = None) -> str:
        """The empty template, or the demo seeded at the pinned moment (``clock`` mark), or, on the
        real clock, seeded in this calendar month.

        The demo's history runs up to the moment it was seeded and its current month always has
        scored households; so a test reads "this month" as the demo's own month, and a test whose
        clock is pinned sees the demo as it would be seeded at that moment.
        """
        if not seed:
            if seed not in self.templates:
                self.templates[seed] = self._build("empty", seed=False)
            return self.templates[seed]
        key = ("pinned", pinned) if pinned else ("month", periods.current_month(utcnow()))
        if key not in self.demos:
            self.demos[key] = self._build(f"demo{len(self.demos)}", seed=True)
        return self.demos[key]

    def _build(self, label: str, *, seed: bool) -> str:
        if BACKEND == "sqlite":
            path = self.tmp_root / f"template-{label}.db"
            build_database(f"sqlite:///{path}", seed=seed)
            import sqlite3
            with sqlite3.connect(path) as conn:  # fold the WAL into the file before copying it
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return str(path)
        name = f"mbt_{self.tag}_{label}"
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        build_database(pg_url(name), seed=seed)
        self.created.append(name)
        return name

    def fresh(self, tmp_path, seed: bool = True, pinned: str | None = None) -> str:
        template = self.template(seed, pinned)
        if BACKEND == "sqlite":
            target = tmp_path / "moralbank.db"
            shutil.copyfile(template, target)
            return f"sqlite:///{target}"
        name = f"mbt_{self.tag}_{uuid.uuid4().hex[:10]}"
        with pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return pg_url(name)

    def drop(self, uri: str) -> None:
        """Drop a test's database; on PostgreSQL in a background thread (a DROP waits for a
        checkpoint, ~1 s, that the next test need not wait for). ``close`` waits for them all."""
        if BACKEND != "sqlite":
            if self._dropper is None:
                self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-db")
            self._dropper.submit(self._drop_now, make_url(uri).database)

    @staticmethod
    def _drop_now(name: str) -> None:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        if self._dropper is not None:
            self._dropper.shutdown(wait=True)
        if BACKEND != "sqlite":
            with pg_admin() as conn:
                for name in self.created:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_app(uri: str, extra: dict | None = None):
    config = {"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": SECRET, "TESTING": True,
              "RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex}
    config.update(extra or {})
    return create_app(config)


def assert_ledger_clean(app) -> None:
    from moralbank.ledger.verify import verify

    with app.app_context():
        db.session.remove()
        report = verify()
        db.session.remove()
    assert report.ok, "ledger verify failed after the test:\n" + "\n".join(report.discrepancies)


SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_moment(text: str) -> datetime:
    """A moment written as ISO text; Asia/Shanghai (the deployment's zone) unless it names one."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


@contextmanager
def app_on_fresh_database(databases, folder, *, seed: bool = True, extra: dict | None = None,
                          pinned: str | None = None):
    """An app on a fresh copy of the demo (or empty) database; its ledger must verify clean after.
    ``pinned``: the moment the test's clock is pinned at (the demo is seeded there)."""
    uri = databases.fresh(folder, seed=seed, pinned=pinned)
    application = make_app(uri, extra)
    try:
        yield application
    finally:
        reset_clock()
        try:
            assert_ledger_clean(application)
        finally:
            with application.app_context():
                db.session.remove()
                db.engine.dispose()
            databases.drop(uri)


@contextmanager
def session_of(app):
    """A database session outside any request, for arranging and checking data (removed afterwards)."""
    with app.app_context():
        try:
            yield db.session
        finally:
            db.session.remove()


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def redis_down_reason(url: str) -> str | None:
    """Why the Redis at ``url`` cannot be used (None when it answers): tests that need Redis skip
    with this reason outside CI and fail with it in CI."""
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as error:  # noqa: BLE001 - any failure means no Redis
        return f"Redis at {url} is unreachable ({error.__class__.__name__}: {error})"
    return None
