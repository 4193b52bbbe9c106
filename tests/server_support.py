"""Real gunicorn servers for tests: start ``wsgi:app`` with a given environment, wait for
``/healthz``, kill the whole process group with SIGKILL, start it again (the process control is
moralbank.testing.servers, shared with the benchmark).

``gunicorn_server(env)`` is a context manager that always kills the group on the way out, so a
failing test leaves no gunicorn behind. ``Http`` is a small standard-library client (one
connection per request, cookies kept) that tells a request that never reached the server from
one whose answer was lost.
"""
from __future__ import annotations

import http.client
import json as jsonlib
import os
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from moralbank.testing import servers

ROOT = Path(__file__).resolve().parent.parent
#: a production-strength key (production refuses anything shorter than 32 characters)
SERVER_SECRET = "gunicorn-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
#: variables of the developer's shell that must not leak into a test server
_APP_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MORALBANK_ENV", "MORALBANK_INSTANCE",
                  "INSECURE_COOKIES", "LOGIN_LIMIT_PER_ACCOUNT", "LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS",
                  "CODE_LOOKUP_LIMIT", "PIN_LIMIT_PER_CARD_AND_ADDRESS", "CODE_MINT_LIMIT", "PROXY_FIX_HOPS",
                  "FLASK_APP", "FLASK_DEBUG", "TRUSTED_HOSTS", "PUBLIC_BASE_URL", "HSTS_MAX_AGE")


def server_env(database_url: str, instance: Path, **extra: str) -> dict:
    """The environment of a production server on ``database_url`` (plain-HTTP cookies, no Redis)."""
    env = {key: value for key, value in os.environ.items() if key not in _APP_VARIABLES}
    env.update({"DATABASE_URL": database_url, "SECRET_KEY": SERVER_SECRET, "MORALBANK_ENV": "production",
                "INSECURE_COOKIES": "1", "MORALBANK_INSTANCE": str(instance), "FLASK_APP": "wsgi.py",
                "PYTHONUNBUFFERED": "1", "TRUSTED_HOSTS": "127.0.0.1,localhost"})
    env.update(extra)
    return env


class GunicornServer(servers.GunicornServer):
    """``wsgi:app`` under gunicorn in its own session (so its process group is master and workers)."""

    def __init__(self, env: dict, *, workers: int = 2, log: Path, port: int | None = None):
        super().__init__(env, log=log, root=ROOT, workers=workers, port=port, options=("--timeout", "60"))


def gunicorn_server(env: dict, *, log: Path, workers: int = 2):
    """A started server; killed (whole process group) on the way out, whatever happened."""
    return servers.running(GunicornServer(env, workers=workers, log=log))


def run_cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``flask <args>`` in a subprocess with the server's environment."""
    flask = [sys.executable, "-m", "flask", *args]
    return subprocess.run(flask, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# --- a small HTTP client ------------------------------------------------------------------------

class NotSent(OSError):
    """The connection could not be opened: the server never saw the request."""


class Lost(OSError):
    """The request was sent but its answer was cut off (reset, EOF, a truncated body)."""


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return jsonlib.loads(self.body)

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.text[:300]!r}>"


class Http:
    """One connection per request (``Connection: close``). Raises ``NotSent`` when the connection
    is refused, ``Lost`` when the request went out but its answer was cut off."""

    def __init__(self, base_url: str, *, timeout: float = 30, headers: dict | None = None,
                 context=None, source_address: str | None = None):
        """``context``: the ``ssl.SSLContext`` of an https ``base_url``; ``source_address``: the local
        address to connect from (``127.0.0.2``: a second client as the server sees it)."""
        self.base_url = base_url
        self.context = context
        self.source_address = (source_address, 0) if source_address else None
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, json=None, form: dict | None = None,
                headers: dict | None = None) -> Answer:
        parts = urlsplit(self.base_url)
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                                     context=self.context, source_address=self.source_address)
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout,
                                                    source_address=self.source_address)
        all_headers = {"Connection": "close", **self.headers, **(headers or {})}
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            all_headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        try:
            try:
                connection.connect()
            except OSError as error:
                raise NotSent(str(error)) from error
            try:
                connection.request(method, path, body=body, headers=all_headers)
                response = connection.getresponse()
                answer = Answer(response.status, response.headers, response.read())
            except (OSError, http.client.HTTPException) as error:
                raise Lost(f"{error.__class__.__name__}: {error}") from error
        finally:
            connection.close()
        for header in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Answer:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> Answer:
        return self.request("PATCH", path, **kwargs)
