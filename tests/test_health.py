"""The operator's probes: ``/healthz`` (the process answers) and ``/readyz`` (database
reachable, schema at the migrations' head, Redis reachable when configured): 200, or 503 naming
what is down. Each dependency is taken down in turn."""
from __future__ import annotations

import socket

import pytest
from sqlalchemy.engine import make_url

from support import BACKEND, SECRET, make_app


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_database_uri(tmp_path) -> str:
    if BACKEND == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'moralbank.db'}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/moralbank"


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_is_ok_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("app_config", [{"REDIS_URL": "redis://127.0.0.1:6379/15"}])
def test_readyz_checks_redis_when_configured(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}


def test_readyz_names_redis_when_it_is_down(app):
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{closed_port()}/0"
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable",
                                   "checks": {"database": "ok", "migrations": "ok", "redis": "down"}}


def test_readyz_names_a_database_behind_the_migrations_head(app):
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from flask_migrate import stamp

    config = Config()
    config.set_main_option("script_location", app.extensions["migrate"].directory)
    script = ScriptDirectory.from_config(config)
    previous = script.get_revision(script.get_current_head()).down_revision
    with app.app_context():
        stamp(revision=previous)  # as if new code were deployed before `flask db upgrade`
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "unavailable",
                                       "checks": {"database": "ok", "migrations": "not_at_head"}}
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        with app.app_context():
            stamp(revision="head")


def test_probes_with_the_database_down(tmp_path):
    """The database unreachable: /readyz says so with 503; /healthz still answers (the process is alive)."""
    app = make_app(unreachable_database_uri(tmp_path), {"SECRET_KEY": SECRET})
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": "down", "migrations": "unknown"}}
    # nothing about the server in the answer (anyone may ask)
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    assert str(url.port or "no-such-folder") not in response.get_data(as_text=True)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json() == {"status": "ok"}


def test_readyz_is_public_and_unthrottled(client):
    """Anyone (a load balancer has no login) may ask, as often as it likes."""
    for _ in range(30):
        assert client.get("/readyz").status_code == 200
