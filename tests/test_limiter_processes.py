"""Two gunicorn processes on one database and one Redis: the login limit holds across both
(429 after the burst, whichever process answers), for the API token endpoint and the web form.

The control: the same two processes with the limiter's memory storage (no REDIS_URL) count
separately, so it is Redis that makes the limit hold.

The counters' keys name the phone (``login-pair:<phone>:<address>``, ``login-account:<phone>``), and
the config has no key prefix setting, so each run logs in as fresh users with random phones (a rerun
within the 15-minute window starts from zero) and deletes the keys it made in its Redis database
afterwards.
"""
from __future__ import annotations

import os
import random
import re
from contextlib import ExitStack

import pytest

from support import DEMO_PASSWORD, redis_down_reason, session_of
from server_support import Http, gunicorn_server, server_env

REDIS_URL = "redis://127.0.0.1:6379/5"
LIMIT = 4
THROTTLED = "尝试次数太多，请 15 分钟后再试"


pytestmark = pytest.mark.slow


@pytest.fixture
def phones(app):
    """Three new committee logins of BLM with random phones (password DEMO_PASSWORD)."""
    from moralbank.database import write_transaction
    from moralbank.people.service import create_user, village_by_code

    rng = random.SystemRandom()
    made = {name: f"139{rng.randrange(10**8):08d}" for name in ("api", "web", "other")}
    with session_of(app):
        with write_transaction():
            for name, phone in made.items():
                create_user(phone=phone, name=f"限流{name}", password=DEMO_PASSWORD, role="committee",
                            area=village_by_code("BLM"))
    return made


@pytest.fixture
def redis_keys(phones):
    """Redis must answer (outside CI a missing Redis skips); the run's limiter keys go afterwards."""
    reason = redis_down_reason(REDIS_URL)
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    assert reason is None, reason  # in CI (.ci/run starts Redis) a missing Redis is a failure
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    yield client
    for pattern in [f"*{phone}*" for phone in phones.values()]:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def start_two(stack: ExitStack, app, tmp_path, *, workers: int, **extra: str):
    """Two gunicorn masters on two ports, one database."""
    servers = []
    for name in ("a", "b"):
        env = server_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / f"instance-{name}",
                         LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS=f"{LIMIT} per 15 minutes", **extra)
        log = tmp_path / f"gunicorn-{name}.log"
        servers.append(stack.enter_context(gunicorn_server(env, workers=workers, log=log)))
    assert servers[0].port != servers[1].port
    return servers


def api_login(server, phone: str, password: str):
    return Http(server.url).post("/api/v1/auth/tokens", json={"phone": phone, "password": password})


def web_login(server, phone: str, password: str):
    http = Http(server.url)
    page = http.get("/login")
    assert page.status == 200, page
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page.text)
    assert token, "no CSRF token on the login page"
    return http.post("/login", form={"phone": phone, "password": password, "csrf_token": token.group(1)})


def assert_api_throttled(answer, server) -> None:
    assert answer.status == 429, (server.url, answer)
    error = answer.json()["error"]
    assert error["code"] == "rate_limited" and error["message"] == THROTTLED, error
    assert int(answer.headers["Retry-After"]) > 0


def assert_web_throttled(answer, server) -> None:
    assert answer.status == 429, (server.url, answer)
    assert THROTTLED in answer.text, answer.text[:500]


def test_login_limit_holds_across_two_processes_with_redis(app, tmp_path, phones, redis_keys):
    with ExitStack() as stack:
        servers = start_two(stack, app, tmp_path, workers=2, REDIS_URL=REDIS_URL)

        # API: failures alternate between the processes; the limit counts them all.
        for attempt in range(LIMIT):
            server = servers[attempt % 2]
            answer = api_login(server, phones["api"], "wrong-password")
            assert answer.status == 401, (attempt, server.url, answer)
        for server in servers:
            assert_api_throttled(api_login(server, phones["api"], "wrong-password"), server)
            assert_api_throttled(api_login(server, phones["api"], DEMO_PASSWORD), server)  # even the right one
        # The wait is this account's at this address: another phone from the same address logs in.
        for server in servers:
            assert api_login(server, phones["other"], DEMO_PASSWORD).status == 201

        # The web login form, the same way.
        for attempt in range(LIMIT):
            server = servers[(attempt + 1) % 2]
            answer = web_login(server, phones["web"], "wrong-password")
            assert answer.status == 401, (attempt, server.url, answer)
        for server in servers:
            assert_web_throttled(web_login(server, phones["web"], "wrong-password"), server)
            assert_web_throttled(web_login(server, phones["web"], DEMO_PASSWORD), server)
        answer = web_login(servers[1], phones["other"], DEMO_PASSWORD)
        assert answer.status == 302 and answer.headers["Location"].endswith("/home"), answer

        # The counts are in Redis, under the phone.
        assert any(phones["api"] in key.decode() for key in redis_keys.scan_iter(match=f"*{phones['api']}*"))


def test_memory_storage_counts_each_process_apart(app, tmp_path, phones):
    """The control: without Redis each process (one worker each, so one counter each) sees only
    its own failures, and the limit does not hold across them."""
    with ExitStack() as stack:
        a, b = start_two(stack, app, tmp_path, workers=1)
        for attempt in range(LIMIT):  # a: 2 failures, b: 2 failures
            assert api_login((a, b)[attempt % 2], phones["api"], "wrong-password").status == 401
        # With a shared store this is where both would answer 429.
        assert api_login(a, phones["api"], "wrong-password").status == 401  # a: 3
        assert api_login(b, phones["api"], "wrong-password").status == 401  # b: 3
        assert api_login(a, phones["api"], "wrong-password").status == 401  # a: 4
        assert_api_throttled(api_login(a, phones["api"], DEMO_PASSWORD), a)  # a has seen the limit ...
        assert api_login(b, phones["api"], DEMO_PASSWORD).status == 201     # ... b has not
