"""Real gunicorn servers for tests: start ``wsgi:app`` with a given environment, wait for
``/healthz``, kill the whole process group with SIGKILL, start it again.

``gunicorn_server(env)`` is a context manager that always kills the group on the way out, so a
failing test leaves no gunicorn behind. ``Http`` is a small standard-library client (one
connection per request, cookies kept) that tells a request that never reached the server from
one whose answer was lost.
"""
from __future__ import annotations

import http.client
import json as jsonlib
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
#: a production-strength key (production refuses anything shorter than 32 characters)
SERVER_SECRET = "gunicorn-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
#: variables of the developer's shell that must not leak into a test server
_APP_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MORALBANK_ENV", "MORALBANK_INSTANCE",
                  "INSECURE_COOKIES", "LOGIN_LIMIT_PER_ACCOUNT", "LOGIN_LIMIT_PER_ADDRESS", "CODE_MINT_LIMIT",
                  "PROXY_FIX_HOPS",
                  "FLASK_APP", "FLASK_DEBUG")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(database_url: str, instance: Path, **extra: str) -> dict:
    """The environment of a production server on ``database_url`` (plain-HTTP cookies, no Redis)."""
    env = {key: value for key, value in os.environ.items() if key not in _APP_VARIABLES}
    env.update({"DATABASE_URL": database_url, "SECRET_KEY": SERVER_SECRET, "MORALBANK_ENV": "production",
                "INSECURE_COOKIES": "1", "MORALBANK_INSTANCE": str(instance), "FLASK_APP": "wsgi.py",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _gunicorn_options() -> list[str]:
    from gunicorn import config

    options = []
    # gunicorn >= 24 opens a control socket in ~/.gunicorn shared by every master of the user.
    if "control_socket_disable" in config.Config().settings:
        options.append("--no-control-socket")
    return options


def _group_alive(pgid: int) -> bool:
    """Is any live (not zombie) process still in the group?"""
    proc = Path("/proc")
    if not proc.exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class GunicornServer:
    """``wsgi:app`` under gunicorn in its own session (so its process group is master and workers)."""

    def __init__(self, env: dict, *, workers: int = 2, log: Path, port: int | None = None):
        self.env = env
        self.workers = workers
        self.log = log
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Start the master and wait until ``/healthz`` answers 200 (a new port if this one stays taken)."""
        for _attempt in range(3):
            if self._spawn_and_wait(timeout):
                self.starts += 1
                return
            self.port = free_port()
        raise RuntimeError(f"gunicorn did not come up; log:\n{self.log_tail()}")

    def _spawn_and_wait(self, timeout: float) -> bool:
        command = [sys.executable, "-m", "gunicorn", "--workers", str(self.workers),
                   "--bind", f"127.0.0.1:{self.port}", "--timeout", "60", *_gunicorn_options(), "wsgi:app"]
        with open(self.log, "ab") as log:
            log.write(f"\n=== start {self.starts + 1} on port {self.port} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reap_group()
                return False  # exited: most likely the port was taken
            try:
                if Http(self.url, timeout=2).get("/healthz").status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gunicorn did not answer /healthz within {timeout} s; log:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, and wait until none is left."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._reap_group()
        self.process = None

    def _reap_group(self) -> None:
        pgid = self.process.pid
        deadline = time.monotonic() + 10
        while _group_alive(pgid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of group {pgid} survived SIGKILL")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.02)

    def restart(self) -> None:
        """Kill -9 and start again on the same port."""
        self.kill()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def gunicorn_server(env: dict, *, log: Path, workers: int = 2):
    """A started server; killed (whole process group) on the way out, whatever happened."""
    server = GunicornServer(env, workers=workers, log=log)
    try:
        server.start()
        yield server
    finally:
        server.kill()


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

    def __init__(self, base_url: str, *, timeout: float = 30, headers: dict | None = None):
        self.base_url = base_url
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, json=None, form: dict | None = None,
                headers: dict | None = None) -> Answer:
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
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
