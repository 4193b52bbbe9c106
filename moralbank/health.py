"""Probes for the operator: ``/healthz`` says the process answers; ``/readyz`` says it
can serve: the database answers, its schema is at the migrations' head, and Redis answers when
``REDIS_URL`` is configured. 200, or 503 naming what is down; never an error message (anyone may
call them), which goes to the log instead.
"""
from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, current_app, jsonify

from .extensions import db

bp = Blueprint("health", __name__)

#: a probe must answer within the prober's timeout, not hang on a dead server
REDIS_TIMEOUT_SECONDS = 1.0


@bp.get("/healthz")
def healthz():
    """The process answers (no dependency is asked: a restart would not fix them)."""
    return {"status": "ok"}


@lru_cache(maxsize=4)
def _script_heads(directory: str) -> frozenset[str]:
    """The migrations' head revisions (read once: the scripts do not change under a running process)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", directory)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def _check_database() -> tuple[str, str]:
    """(database, migrations): ``ok``, ``down``; migrations ``ok``, ``not_at_head`` or ``unknown``."""
    from alembic.runtime.migration import MigrationContext

    try:
        with db.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
    except Exception:  # any failure to reach or read the database means "not ready"
        current_app.logger.warning("readyz: database unreachable", exc_info=True)
        return "down", "unknown"
    heads = _script_heads(current_app.extensions["migrate"].directory)
    if current == heads:
        return "ok", "ok"
    current_app.logger.warning("readyz: database at %s, migrations' head %s", sorted(current), sorted(heads))
    return "ok", "not_at_head"


def _check_redis(url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_timeout=REDIS_TIMEOUT_SECONDS)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:  # refused, timed out, auth failed: not reachable for the app either
        current_app.logger.warning("readyz: redis unreachable", exc_info=True)
        return "down"
    return "ok"


@bp.get("/readyz")
def readyz():
    """200 when every dependency is ready, 503 otherwise; ``checks`` says which is which."""
    database, migrations = _check_database()
    checks = {"database": database, "migrations": migrations}
    if current_app.config.get("REDIS_URL"):
        checks["redis"] = _check_redis(current_app.config["REDIS_URL"])
    ready = all(value == "ok" for value in checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response
