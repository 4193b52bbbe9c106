"""Test fixtures: an app per test on a fresh copy of a migrated, seeded database.

The suite runs on SQLite (default) or PostgreSQL (``MORALBANK_TEST_DB=postgresql``,
server from ``TEST_DATABASE_URL``, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
The schema is made once per session by the real Alembic migrations and the demo
village by the real ``seed-demo``; each test gets its own copy (a file copy on
SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL), so tests commit for real
and never see each other. After every test the ledger must verify clean.

The demo is seeded up to the moment it runs, so its template is made per calendar
month: a test that pins the clock (``@pytest.mark.clock("2026-12-01 00:05")``,
Asia/Shanghai unless the text says otherwise) gets the demo as seeded at that
moment, and a run that crosses into a new month gets one seeded in the new month.
"""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
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
        if BACKEND != "sqlite":
            with pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{make_url(uri).database}" WITH (FORCE)')

    def close(self) -> None:
        if BACKEND != "sqlite":
            with pg_admin() as conn:
                for name in self.created:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    dbs = Databases(tmp_path_factory.mktemp("templates"))
    yield dbs
    dbs.close()


def _make_app(uri: str, extra: dict | None = None):
    config = {"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": SECRET, "TESTING": True,
              "RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex}
    config.update(extra or {})
    return create_app(config)


def _assert_ledger_clean(app) -> None:
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


@pytest.fixture
def clock(request):
    """The clock pinned where the test's ``@pytest.mark.clock(moment, tick=False)`` says, from
    before its app and database are made until after its ledger is verified; the real clock
    without the mark. time-machine moves ``datetime.now`` and ``time.time``, so
    ``moralbank.database.utcnow()`` and its test-only ``travel()`` follow. Yields the traveller
    (``clock.move_to(...)``) or None."""
    marker = request.node.get_closest_marker("clock")
    if marker is None:
        yield None
        return
    with time_machine.travel(local_moment(marker.args[0]), tick=marker.kwargs.get("tick", False)) as traveller:
        yield traveller


@pytest.fixture
def app_config(tmp_path):
    """Extra settings for the ``app`` fixture; override in a module or test. Photos go to the test's folder."""
    return {"UPLOAD_FOLDER": str(tmp_path / "uploads")}


@contextmanager
def app_on_fresh_database(databases, folder, *, seed: bool = True, extra: dict | None = None,
                          pinned: str | None = None):
    """An app on a fresh copy of the demo (or empty) database; its ledger must verify clean after.
    ``pinned``: the moment the test's clock is pinned at (the demo is seeded there)."""
    uri = databases.fresh(folder, seed=seed, pinned=pinned)
    application = _make_app(uri, extra)
    try:
        yield application
    finally:
        reset_clock()
        try:
            _assert_ledger_clean(application)
        finally:
            with application.app_context():
                db.session.remove()
                db.engine.dispose()
            databases.drop(uri)


@pytest.fixture
def app(clock, databases, tmp_path, app_config, request):
    """An app on a fresh copy of the demo database; the ledger must verify clean afterwards."""
    marker = request.node.get_closest_marker("clock")
    with app_on_fresh_database(databases, tmp_path, extra=app_config,
                               pinned=marker.args[0] if marker else None) as application:
        yield application


@pytest.fixture
def empty_app(clock, databases, tmp_path):
    """An app on a migrated database with no data."""
    with app_on_fresh_database(databases, tmp_path, seed=False) as application:
        yield application


@pytest.fixture
def ctx(app):
    """An application context for calling services directly."""
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def api(client):
    """Log in through the API: ``api.headers('committee')`` gives Authorization headers."""

    class Api:
        def __init__(self):
            self._tokens: dict[str, str] = {}

        def token(self, who: str) -> str:
            phone = PHONES.get(who, who)
            if phone not in self._tokens:
                response = client.post("/api/v1/auth/tokens", json={"phone": phone, "password": DEMO_PASSWORD})
                assert response.status_code == 201, response.get_json()
                self._tokens[phone] = response.get_json()["token"]
            return self._tokens[phone]

        def headers(self, who: str, **extra) -> dict:
            return {"Authorization": f"Bearer {self.token(who)}", **extra}

        def get(self, path, who, **kwargs):
            return client.get(path, headers=self.headers(who), **kwargs)

        def post(self, path, who, json=None, key=None, **kwargs):
            # Like a real client, every POST carries an Idempotency-Key (a fresh one unless given).
            headers = self.headers(who)
            headers["Idempotency-Key"] = key or uuid.uuid4().hex
            return client.post(path, headers=headers, json=json, **kwargs)

    return Api()


@contextmanager
def session_of(app):
    """A database session outside any request, for arranging and checking data (removed afterwards)."""
    with app.app_context():
        try:
            yield db.session
        finally:
            db.session.remove()


def csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def auth(client):
    """Log in through the web form as a demo role: ``auth.login('resident')``."""

    class Auth:
        def login(self, who: str, password: str = DEMO_PASSWORD, next_url: str | None = None):
            page = client.get("/login")
            token = csrf_from(page.get_data(as_text=True))
            url = "/login" + (f"?next={next_url}" if next_url else "")
            return client.post(url, data={"phone": PHONES.get(who, who), "password": password,
                                          "csrf_token": token})

        def logout(self):
            page = client.get("/home")
            token = csrf_from(page.get_data(as_text=True))
            return client.post("/logout", data={"csrf_token": token})

    return Auth()


# Browser fixtures (chromium is session-wide: one Playwright for the whole run).
from browser_support import chromium, live_server, phone  # noqa: E402,F401
