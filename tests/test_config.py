"""Settings: no default secret outside development, secure cookies in production,
DATABASE_URL accepted in its common spellings."""
from __future__ import annotations

import pytest

from moralbank import create_app
from moralbank.config import DEV_SECRET_KEY, ConfigError

GOOD_KEY = "k3y-" + "0123456789abcdef" * 3


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Settings come from the environment too: start every test from a known one."""
    for name in ("SECRET_KEY", "DATABASE_URL", "MORALBANK_ENV", "INSECURE_COOKIES", "REDIS_URL",
                 "API_TOKEN_TTL_DAYS", "LOGIN_LIMIT_PER_ACCOUNT", "TRUSTED_HOSTS", "PUBLIC_BASE_URL", "HSTS_MAX_AGE",
                 "LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS", "CODE_LOOKUP_LIMIT", "PIN_LIMIT_PER_CARD_AND_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MORALBANK_INSTANCE", str(tmp_path / "instance"))


def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'config-test.db'}"


def production(tmp_path, **extra):
    extra.setdefault("TRUSTED_HOSTS", ["localhost"])
    return create_app({"MORALBANK_ENV": "production", "SQLALCHEMY_DATABASE_URI": sqlite_uri(tmp_path), **extra})


def test_production_without_secret_key_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        production(tmp_path)


def test_production_with_empty_secret_key_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        production(tmp_path)


@pytest.mark.parametrize("key", [DEV_SECRET_KEY, "short", "x" * 31])
def test_production_with_a_weak_secret_key_refuses_to_start(tmp_path, key):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        production(tmp_path, SECRET_KEY=key)


def test_production_chosen_by_environment_also_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("MORALBANK_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", sqlite_uri(tmp_path))
    monkeypatch.setenv("TRUSTED_HOSTS", "localhost")
    with pytest.raises(ConfigError):
        create_app()
    monkeypatch.setenv("SECRET_KEY", DEV_SECRET_KEY)
    with pytest.raises(ConfigError):
        create_app()


def test_production_with_a_good_key_starts_with_secure_cookies(tmp_path):
    app = production(tmp_path, SECRET_KEY=GOOD_KEY)
    assert app.config["MORALBANK_ENV"] == "production"
    assert app.config["SECRET_KEY"] == GOOD_KEY
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert not app.testing and not app.debug


def test_production_secret_key_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", GOOD_KEY)
    app = production(tmp_path)
    assert app.config["SECRET_KEY"] == GOOD_KEY and app.config["SESSION_COOKIE_SECURE"] is True


def test_production_session_cookie_is_marked_secure(tmp_path):
    """What a browser sees: the session cookie set over HTTPS carries Secure, HttpOnly and SameSite=Lax."""
    app = production(tmp_path, SECRET_KEY=GOOD_KEY, RATELIMIT_STORAGE_URI="memory://")
    response = app.test_client().get("/login", base_url="https://localhost")
    cookies = [value for name, value in response.headers.items() if name.lower() == "set-cookie"]
    assert cookies, "the login page sets no session cookie"
    session_cookie = next(cookie for cookie in cookies if cookie.startswith(app.config["SESSION_COOKIE_NAME"] + "="))
    attributes = {part.strip().split("=")[0].lower() for part in session_cookie.split(";")}
    assert {"secure", "httponly"} <= attributes
    assert "samesite=lax" in session_cookie.lower()


def test_development_makes_its_own_random_key_once_without_secure_cookies(tmp_path, monkeypatch):
    import os
    import stat

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("MORALBANK_ENV", raising=False)
    monkeypatch.setenv("MORALBANK_INSTANCE", str(tmp_path / "instance"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": sqlite_uri(tmp_path)})
    assert app.config["MORALBANK_ENV"] == "development"
    key = app.config["SECRET_KEY"]
    assert key != DEV_SECRET_KEY and len(key) >= 32, "a public key would let anyone forge a session"
    again = create_app({"SQLALCHEMY_DATABASE_URI": sqlite_uri(tmp_path)})
    assert again.config["SECRET_KEY"] == key, "restarting must keep people logged in"
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert not app.config.get("SESSION_COOKIE_SECURE")


def test_testing_flag_wins_over_production(tmp_path):
    app = create_app({"MORALBANK_ENV": "production", "TESTING": True, "SQLALCHEMY_DATABASE_URI": sqlite_uri(tmp_path)})
    assert app.config["MORALBANK_ENV"] == "testing"


def test_unknown_environment_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="MORALBANK_ENV"):
        create_app({"MORALBANK_ENV": "staging", "SQLALCHEMY_DATABASE_URI": sqlite_uri(tmp_path)})


@pytest.mark.parametrize("given", [
    "postgresql://mb:secret@db.example:5432/moralbank",
    "postgres://mb:secret@db.example:5432/moralbank",
    "postgresql+psycopg://mb:secret@db.example:5432/moralbank",
])
def test_database_url_is_normalised_to_psycopg(monkeypatch, given):
    monkeypatch.setenv("DATABASE_URL", given)
    app = create_app({"SECRET_KEY": GOOD_KEY, "TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://mb:secret@db.example:5432/moralbank"
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping") is True
    from moralbank.extensions import db
    with app.app_context():
        assert db.engine.dialect.name == "postgresql" and db.engine.dialect.driver == "psycopg"


def test_database_uri_override_is_normalised_too():
    app = create_app({"SECRET_KEY": GOOD_KEY, "TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": "postgresql://mb@127.0.0.1/moralbank"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://mb@127.0.0.1/moralbank"


def test_default_database_is_sqlite_under_the_instance_folder(tmp_path):
    app = create_app({"SECRET_KEY": GOOD_KEY, "TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'moralbank.db'}"
    assert (tmp_path / "instance").is_dir()


def test_redis_url_feeds_the_rate_limiter(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    app = create_app({"SECRET_KEY": GOOD_KEY, "TESTING": True, "SQLALCHEMY_DATABASE_URI": sqlite_uri(tmp_path)})
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/3"
