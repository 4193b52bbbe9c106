"""Browser test support: the app served on a loopback port, and Debian's Chromium driven by Playwright.

Screenshots go to ``test-artifacts/screenshots/`` (kept by CI as artifacts).
Chromium is installed by ``.ci/run`` (``apt-get install chromium fonts-wqy-microhei``);
Playwright's own browser download is never used.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PHONE = {"width": 360, "height": 740}


class LiveServer:
    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(app):
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `apt-get install -y chromium fonts-wqy-microhei` "
                    "(.ci/run does) or set CHROMIUM_PATH")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def phone(chromium, live_server):
    """A fresh phone-sized browser context on the live server; every request must stay on it."""
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                   base_url=live_server.url)
    foreign: list[str] = []

    def _watch(request):
        if not request.url.startswith(live_server.url) and not request.url.startswith("data:"):
            foreign.append(request.url)
    context.on("request", _watch)
    page = context.new_page()
    page.set_default_timeout(15000)
    page.foreign_requests = foreign
    yield page
    context.close()
    assert not foreign, f"pages loaded from other hosts: {foreign}"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page, phone_number: str, password: str = "demo-pass-2026") -> None:
    page.goto("/login")
    page.fill("#phone", phone_number)
    page.fill("#password", password)
    page.click("button[type=submit]")
    # each role lands on its job: 首页 (/home), or the clerk's 收款 and the grid manager's 评分表
    page.wait_for_url(lambda url: url.split("?")[0].endswith(("/home", "/shop", "/grid/sheet")))
