"""Settings from the environment.

Three environments, chosen by ``MORALBANK_ENV``: ``development`` (the default for
``make run``), ``testing`` and ``production``. Production refuses to start
without a real ``SECRET_KEY``; development and testing use a fixed key that is
never accepted in production.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

#: the key used only in development and tests; production refuses it.
DEV_SECRET_KEY = "moralbank-development-only-key"


class ConfigError(RuntimeError):
    """The deployment is misconfigured; the app must not start."""


def _default_sqlite_uri(instance_path: str) -> str:
    return "sqlite:///" + str(Path(instance_path) / "moralbank.db")


def _instance_secret(instance_path: str) -> str:
    """A random key made once and kept in ``instance/secret_key`` (readable by the owner only)."""
    import os
    import secrets

    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key


def load_settings(instance_path: str, overrides: dict | None = None) -> dict:
    """Build the settings mapping from the environment and ``overrides``.

    ``overrides`` (what tests pass to ``create_app``) wins over the environment.
    """
    overrides = dict(overrides or {})
    env = overrides.get("MORALBANK_ENV") or os.environ.get("MORALBANK_ENV", "development")
    if overrides.get("TESTING"):
        env = "testing"
    if env not in ("development", "testing", "production"):
        raise ConfigError(f"MORALBANK_ENV must be development, testing or production, not {env!r}")

    settings: dict = {
        "MORALBANK_ENV": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or _default_sqlite_uri(instance_path),
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        # Time zone for calendar periods (month, quarter, year) and display.
        "MORALBANK_TIMEZONE": os.environ.get("MORALBANK_TIMEZONE", "Asia/Shanghai"),
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "BABEL_DEFAULT_TIMEZONE": os.environ.get("MORALBANK_TIMEZONE", "Asia/Shanghai"),
        "LANGUAGES": ["zh_CN", "en"],
        # Bearer tokens of the JSON API.
        "API_TOKEN_TTL": timedelta(days=int(os.environ.get("API_TOKEN_TTL_DAYS", "30"))),
        # Throttling budgets (flask-limiter syntax), read by moralbank/throttle.py, which says how each counts.
        # Failed password guesses (login and password change, web and API) per (account, address) ...
        "LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS": os.environ.get("LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS",
                                                              "5 per 15 minutes"),
        # ... and per account from every address: past it, only addresses that have not failed get a try.
        "LOGIN_LIMIT_PER_ACCOUNT": os.environ.get("LOGIN_LIMIT_PER_ACCOUNT", "20 per 15 minutes"),
        # Payment-code lookups per clerk, web and API together.
        # (the daily cap bounds a day of guessing: README, "Guessing a payment code")
        "CODE_LOOKUP_LIMIT": os.environ.get("CODE_LOOKUP_LIMIT", "60 per minute;500 per day"),
        # Paper-card PIN attempts per (card, address).
        "PIN_LIMIT_PER_CARD_AND_ADDRESS": os.environ.get("PIN_LIMIT_PER_CARD_AND_ADDRESS", "10 per 15 minutes"),
        # Redis down: the limiter counts in memory rather than failing every request it guards.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        # Payment codes a household may mint (each takes an 8-digit number of the village's space).
        "CODE_MINT_LIMIT": os.environ.get("CODE_MINT_LIMIT", "6 per minute;60 per hour"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "MAX_CONTENT_LENGTH": int(os.environ.get("MAX_CONTENT_LENGTH", str(8 * 1024 * 1024))),
        "WTF_CSRF_TIME_LIMIT": None,
        # Behind a proxy that sets X-Forwarded-For/-Proto (production): how many hops to trust.
        "PROXY_FIX_HOPS": int(os.environ.get("PROXY_FIX_HOPS", "0")),
        # Host names this server answers to (comma-separated, e.g. "jf.example.gov.cn,.example.gov.cn";
        # a leading dot admits subdomains). Any other Host header gets 400. Unset: any host (development).
        "TRUSTED_HOSTS": [host.strip() for host in os.environ.get("TRUSTED_HOSTS", "").split(",") if host.strip()]
        or None,
        # SQLite waits this long for a lock before failing (ms).
        "SQLITE_BUSY_TIMEOUT_MS": int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "15000")),
        # Scheme and host of the URLs in QR codes and on printed cards (e.g. "https://jf.example.gov.cn");
        # unset: the request's own (a printed card then points wherever the issuing request said).
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL") or None,
        # A streaming standby of DATABASE_URL for the read-mostly pages (moralbank/replica.py); unset: none.
        "DATABASE_REPLICA_URL": os.environ.get("DATABASE_REPLICA_URL") or None,
        # /metrics: a scrape must send "Authorization: Bearer <this>"; unset: loopback addresses only.
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None,
        # "json": every log record a JSON line with the request id (moralbank/requestlog.py); "text": as is.
        "LOG_FORMAT": os.environ.get("LOG_FORMAT", "json" if env == "production" else "text"),
        # Strict-Transport-Security max-age sent on HTTPS answers (seconds); 0 sends none.
        "HSTS_MAX_AGE": int(os.environ.get("HSTS_MAX_AGE", str(365 * 24 * 3600))),
        # Offline vouchers: how many a household may hold at once, how many days one lasts, and how
        # long after its expiry a sale taken before it may still sync (then expire-holds voids it).
        "OFFLINE_VOUCHER_LIMIT": int(os.environ.get("OFFLINE_VOUCHER_LIMIT", "3")),
        "OFFLINE_VOUCHER_DAYS": int(os.environ.get("OFFLINE_VOUCHER_DAYS", "31")),
        "OFFLINE_SYNC_GRACE_HOURS": int(os.environ.get("OFFLINE_SYNC_GRACE_HOURS", "48")),
    }
    if env == "production":
        settings["SESSION_COOKIE_SECURE"] = os.environ.get("INSECURE_COOKIES") != "1"
        settings["REMEMBER_COOKIE_SECURE"] = settings["SESSION_COOKIE_SECURE"]
    if env == "testing":
        settings["WTF_CSRF_ENABLED"] = True
        settings["RATELIMIT_ENABLED"] = True
    settings.update(overrides)
    settings["MORALBANK_ENV"] = env

    if not settings.get("SECRET_KEY"):
        if env == "production":
            raise ConfigError("SECRET_KEY must be set in production (a long random string)")
        # Tests use the fixed key; development gets a random key kept in the instance folder, so
        # a server started without MORALBANK_ENV=production does not sign sessions with a public key.
        settings["SECRET_KEY"] = DEV_SECRET_KEY if env == "testing" else _instance_secret(instance_path)
    elif env == "production" and (settings["SECRET_KEY"] == DEV_SECRET_KEY or len(settings["SECRET_KEY"]) < 32):
        raise ConfigError("SECRET_KEY is too weak for production: use at least 32 random characters")
    if env == "production" and not settings.get("TRUSTED_HOSTS"):
        # Without it the Host header picks the host of every absolute URL the app makes.
        raise ConfigError("TRUSTED_HOSTS must be set in production (the host names the server answers to)")

    base = settings.get("PUBLIC_BASE_URL")
    if base and not (base.startswith("https://") or base.startswith("http://")):
        raise ConfigError(f"PUBLIC_BASE_URL must start with https:// or http://, not {base!r}")

    uri = settings["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgres://") or uri.startswith("postgresql://"):
        # psycopg 3 is the driver; accept the common short forms.
        uri = "postgresql+psycopg://" + uri.split("://", 1)[1]
        settings["SQLALCHEMY_DATABASE_URI"] = uri
    settings.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    if uri.startswith("postgresql"):
        settings["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("pool_pre_ping", True)

    replica = settings.get("DATABASE_REPLICA_URL")
    if replica:
        if replica.startswith(("postgres://", "postgresql://")):
            replica = "postgresql+psycopg://" + replica.split("://", 1)[1]
        if not replica.startswith("postgresql") or not uri.startswith("postgresql"):
            raise ConfigError("DATABASE_REPLICA_URL must be a PostgreSQL streaming standby of a PostgreSQL DATABASE_URL")
        binds = dict(settings.get("SQLALCHEMY_BINDS") or {})
        # A replica that does not answer must fail fast: its readers fall back to the primary.
        binds["replica"] = {"url": replica, "pool_pre_ping": True, "connect_args": {"connect_timeout": 2}}
        settings["SQLALCHEMY_BINDS"] = binds
    if settings.get("LOG_FORMAT") not in ("json", "text"):
        raise ConfigError("LOG_FORMAT must be json or text")

    redis_url = settings.get("REDIS_URL")
    settings.setdefault("RATELIMIT_STORAGE_URI", redis_url or "memory://")
    if settings["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://", "unix://")):
        # A Redis that does not answer must fail fast (then the in-memory fallback counts), not after
        # the operating system's TCP timeout.
        settings.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})
    # X-RateLimit-* on every answer costs two more round trips to the limiter's storage per request;
    # a refusal still says when to come back (Retry-After, ``throttle._retry_after``).
    settings.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    return settings
