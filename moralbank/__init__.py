"""moralbank: a village moral bank (道德银行 / 积分超市).

``create_app(config=None)`` builds the Flask app: settings, extensions,
blueprints and CLI commands. ``config`` is a mapping of overrides (tests pass
``SQLALCHEMY_DATABASE_URI``, ``SECRET_KEY``, ``TESTING``).
"""
from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from .config import load_settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict | None = None) -> Flask:
    """The application factory."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("MORALBANK_INSTANCE") or str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(load_settings(app.instance_path, config))
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from . import models  # noqa: F401  (register every table with the metadata)
    # The domains that keep caches in step with the ledger register with it on import (the ledger
    # imports no domain): the rankings' period scores, kept in the posting transaction and verified,
    # and the stores' check that every settlement equals its month's net redemptions.
    from . import rankings, stores  # noqa: F401
    from .database import install_engine_hooks
    from .extensions import babel, csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    with app.app_context():
        install_engine_hooks(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    limiter.init_app(app)
    from .throttle import init_app as init_throttle
    from .throttle import password_guess
    init_throttle(app)
    from .people.auth import count_password_guesses
    count_password_guesses(password_guess)

    from .i18n import init_app as init_i18n
    init_i18n(app, babel)

    from .people.auth import init_app as init_auth
    init_auth(app, login_manager)

    # <int:…> in URLs stays within a database integer: /households/99999999999999999999 is a 404,
    # not an overflow.
    from werkzeug.routing import IntegerConverter

    class BoundedInt(IntegerConverter):
        def __init__(self, map, **kwargs):
            kwargs.setdefault("max", 2**31 - 1)
            super().__init__(map, **kwargs)
    app.url_map.converters["int"] = BoundedInt

    from .api import bp as api_bp
    from .health import bp as health_bp
    from .web import init_app as init_web
    app.register_blueprint(api_bp)
    app.register_blueprint(health_bp)
    init_web(app)

    from .edge import init_app as init_edge
    init_edge(app)
    # Before every other hook (each inserts itself first): the request id and the clock start.
    from . import assets, metrics, replica, requestlog
    metrics.init_app(app)
    requestlog.init_app(app)
    replica.init_app(app)
    assets.init_app(app)

    from .cli import init_app as init_cli
    init_cli(app)

    if app.config["PROXY_FIX_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = app.config["PROXY_FIX_HOPS"]
        # nginx (deploy/nginx/moralbank.conf) sets X-Forwarded-For from the connecting address (never
        # what the client sent), X-Forwarded-Proto and X-Forwarded-Host; ProxyFix trusts that many hops.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app
