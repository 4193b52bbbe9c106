"""The production shape on this machine: Debian's nginx with the site of ``deploy/nginx`` (rendered
by ``deploy/render``, a self-signed certificate made here) in front of gunicorn (2 workers,
``PROXY_FIX_HOPS=1``, Redis for the login counts, Prometheus multiprocess folder, JSON logs).

Through nginx: HTTPS over HTTP/2, pages with ``Secure`` cookies and a log-in; plain HTTP redirected;
login throttling keyed on the real client address (127.0.0.1 and 127.0.0.2 are limited apart, a
forged ``X-Forwarded-For`` does not escape the limit); gzip on HTML, CSS and JS; static files served
by nginx, versioned by their hash and cached for a year; /metrics not served; the request id passed
to the app and echoed. Directly at gunicorn (loopback): /metrics sums both workers.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import socket
import ssl

import pytest

from moralbank.testing import nginx as nginx_support
from moralbank.testing.servers import free_port
from server_support import ROOT, Http, gunicorn_server, server_env
from support import DEMO_PASSWORD, csrf_from, redis_down_reason, session_of

REDIS_URL = "redis://127.0.0.1:6379/5"
LIMIT = 3

pytestmark = pytest.mark.slow


def _second_loopback_works() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def phone(app):
    """A fresh committee login (random phone: the Redis counts of an earlier run do not matter)."""
    from moralbank.database import write_transaction
    from moralbank.people.service import create_user, village_by_code

    number = f"139{random.SystemRandom().randrange(10**8):08d}"
    with session_of(app):
        with write_transaction():
            create_user(phone=number, name="部署检查", password=DEMO_PASSWORD, role="committee",
                        area=village_by_code("BLM"))
    yield number
    import redis
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{number}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


@pytest.fixture
def stack(app, tmp_path, phone):
    """gunicorn behind nginx; yields (https base URL, ssl context, gunicorn server, gunicorn log)."""
    if nginx_support.nginx_binary() is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    reason = redis_down_reason(REDIS_URL)
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    assert reason is None, reason
    cert, key = nginx_support.self_signed(tmp_path / "tls")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = server_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance", INSECURE_COOKIES="0",
                     PROXY_FIX_HOPS="1", TRUSTED_HOSTS="localhost,127.0.0.1", REDIS_URL=REDIS_URL, LOG_FORMAT="json",
                     LOGIN_LIMIT_PER_ACCOUNT_AND_ADDRESS=f"{LIMIT} per 15 minutes",
                     LOGIN_LIMIT_PER_ACCOUNT="100 per 15 minutes", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    env.pop("INSECURE_COOKIES")
    log = tmp_path / "gunicorn.log"
    with gunicorn_server(env, log=log, workers=2) as server:
        https_port, http_port = free_port(), free_port()
        folder = tmp_path / "nginx"
        folder.mkdir()
        site = nginx_support.render_site(folder / "site.conf", HOST="localhost", TLS_CERT=str(cert),
                                         TLS_KEY=str(key), APP_ROOT=str(ROOT), APP_ADDRESS=f"127.0.0.1:{server.port}",
                                         HTTP_PORT=str(http_port), HTTPS_PORT=str(https_port), LISTEN="127.0.0.1:",
                                         LOG_DIR=str(folder))
        proxy = nginx_support.Nginx(folder, site, https_port)
        proxy.start()
        try:
            context = ssl.create_default_context(cafile=str(cert))
            yield {"cert": str(cert), "metrics": metrics_dir, "url": f"https://localhost:{https_port}", "http_port": http_port, "context": context,
                   "server": server, "log": log, "folder": folder}
        finally:
            proxy.stop()


def client(stack, source: str = "127.0.0.1") -> Http:
    return Http(stack["url"], context=stack["context"], source_address=source)


def check_https_http2_secure_cookies_and_a_login(stack, phone):
    # HTTP/2 offered by ALPN
    context = ssl.create_default_context(cafile=stack["cert"])
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", int(stack["url"].rsplit(":", 1)[1]))) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"
    # plain HTTP is a redirect to HTTPS
    plain = Http(f"http://localhost:{stack['http_port']}").get("/login")
    assert plain.status == 301 and plain.headers["Location"] == stack["url"] + "/login"

    browser = client(stack)
    page = browser.get("/login")
    assert page.status == 200
    cookies = page.headers.get_all("Set-Cookie") or []
    assert cookies and all("Secure" in cookie and "HttpOnly" in cookie for cookie in cookies), cookies
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert re.fullmatch(r"[0-9a-f]{32}", page.headers["X-Request-ID"])  # nginx's $request_id, echoed
    token = csrf_from(page.text)
    answer = browser.post("/login", form={"phone": phone, "password": DEMO_PASSWORD, "csrf_token": token},
                          headers={"Referer": stack["url"] + "/login"})
    assert answer.status == 302, answer
    assert answer.headers["Location"].startswith(("/", stack["url"]))  # the app saw https and the host
    assert all("Secure" in cookie for cookie in answer.headers.get_all("Set-Cookie"))
    assert browser.get("/home").status == 200
    assert browser.get("/metrics").status == 404  # not through the proxy


def wrong_login(http: Http, phone: str, forged: str | None = None):
    headers = {"X-Forwarded-For": forged} if forged else None
    return http.post("/api/v1/auth/tokens", json={"phone": phone, "password": "wrong-password-1"}, headers=headers)


def check_login_throttling_is_keyed_on_the_real_client_address(stack, phone):
    first, second = client(stack, "127.0.0.1"), client(stack, "127.0.0.2")
    for _ in range(LIMIT):
        assert wrong_login(first, phone).status == 401
    assert wrong_login(first, phone).status == 429
    # a forged X-Forwarded-For is replaced by nginx: still the same address, still limited
    for forged in ("10.9.8.7", "127.0.0.2", "10.0.0.1, 10.0.0.2"):
        answer = wrong_login(first, phone, forged)
        assert answer.status == 429, (forged, answer)
    # another client behind the same proxy has its own budget
    assert wrong_login(second, phone).status == 401
    good = second.post("/api/v1/auth/tokens", json={"phone": phone, "password": DEMO_PASSWORD})
    assert good.status == 201


def check_gzip_on_html_css_and_js_and_static_files_versioned_and_cached(stack):
    browser = client(stack)
    page = browser.get("/login", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip"
    html = gzip.decompress(page.body).decode()
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert any(a.startswith("/static/css/app.css?v=") for a in assets), assets
    assert any(a.startswith("/static/js/app.js?v=") for a in assets), assets
    for url in assets:
        path, version = url.split("?v=")
        content = (ROOT / path.lstrip("/")).read_bytes()
        assert version == hashlib.sha256(content).hexdigest()[:12]  # the file's own hash
        answer = browser.get(url, headers={"Accept-Encoding": "gzip"})
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert answer.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(answer.body) == content
        assert "Server" not in answer.headers or "gunicorn" not in answer.headers["Server"]  # nginx served it
    plain = browser.get("/static/css/app.css")
    assert plain.status == 200 and plain.headers["Cache-Control"] == "public, max-age=3600"


def check_metrics_sum_both_workers_and_logs_are_json_without_secrets(stack, phone):
    browser = client(stack)
    for _ in range(12):
        assert browser.get("/healthz").status == 200
    wrong_login(browser, phone)
    direct = Http(stack["server"].url).get("/metrics")
    assert direct.status == 200
    count = re.search(r'moralbank_http_requests_total\{endpoint="health.healthz",method="GET",status="200"\} ([0-9.]+)',
                      direct.text)
    # gunicorn's own readiness probes asked /healthz too (directly, before nginx started)
    assert count and float(count.group(1)) >= 12, direct.text[:2000]
    assert len(list(stack["metrics"].glob("counter_*.db"))) >= 2  # a file per worker, summed at the scrape
    lines = [line for line in stack["log"].read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    requests = [r for r in records if r.get("logger") == "moralbank.request"]
    assert any(r["route"] == "/api/v1/auth/tokens" and r["status"] == 401 and r["remote_addr"] == "127.0.0.1"
               for r in requests)
    text = stack["log"].read_text()
    assert "wrong-password-1" not in text and DEMO_PASSWORD not in text and phone not in text


# Two tests, not four: each starts gunicorn and nginx (a few seconds on this machine).

def test_pages_over_https_with_secure_cookies_gzip_and_versioned_static_files(stack, phone):
    check_https_http2_secure_cookies_and_a_login(stack, phone)
    check_gzip_on_html_css_and_js_and_static_files_versioned_and_cached(stack)


def test_login_limits_per_real_client_address_metrics_and_json_logs(stack, phone):
    if not _second_loopback_works():
        pytest.skip("127.0.0.2 is not usable as a source address here")
    check_login_throttling_is_keyed_on_the_real_client_address(stack, phone)
    check_metrics_sum_both_workers_and_logs_are_json_without_secrets(stack, phone)
