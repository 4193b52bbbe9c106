"""In Chromium at 360×740: the resident's home and history and the public board render, weigh
under 100 KB of HTML+CSS+JS (images excluded) and load nothing from other hosts."""
from __future__ import annotations

import re

from browser_support import login, screenshot

LIMIT = 100 * 1024


def weigh(page, path: str) -> int:
    """Bytes of HTML, CSS and JS that loading ``path`` fetched (from the network, not the cache)."""
    sizes = []

    def _count(response):
        if response.request.resource_type in ("document", "stylesheet", "script"):
            sizes.append(len(response.body()))
    page.on("response", _count)
    page.goto(path, wait_until="networkidle")
    page.remove_listener("response", _count)
    return sum(sizes)


def test_resident_home_and_history_on_a_phone(phone):
    page = phone
    page.context.route("**/*", lambda route: route.continue_(headers={**route.request.headers,
                                                                     "cache-control": "no-cache"}))
    login(page, "13800000003")
    weight = weigh(page, "/home")
    assert weight < LIMIT, f"/home weighs {weight} bytes"
    assert int(page.inner_text("[data-testid=balance]")) >= 0
    assert re.search(r"第 \d+ 名", page.inner_text("[data-testid=rank]")) or "还没有得分" in page.inner_text(
        "[data-testid=rank]")
    assert page.locator("svg.chart rect").count() == 12
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "resident-home")

    weight = weigh(page, "/me/history")
    assert weight < LIMIT, f"/me/history weighs {weight} bytes"
    assert page.locator("ul.lines li").count() == 20
    screenshot(page, "resident-history")
    page.click("a[rel=next]")
    assert page.locator("ul.lines li").count() >= 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_public_board_without_login(phone):
    page = phone
    weight = weigh(page, "/v/BLM?period=all")
    assert weight < LIMIT, f"/v/BLM weighs {weight} bytes"
    names = page.locator("ol.ranking .who").all_inner_texts()
    assert len(names) >= 50
    assert all(re.match(r"^.\*+.", name) for name in names), names[:5]
    body = page.inner_text("body")
    assert not re.search(r"1\d{10}", body) and "BLM-0" not in body
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "public-board")
