"""The walk: every page that each demo role (and the public) reaches from its menu and home page,
on a 360×740 and a 320×640 phone, in Chromium.

On every page: nothing scrolls sideways (``scrollWidth <= innerWidth``; print views aside), every
menu entry can be reached (inside the viewport's width, or inside the 更多 menu, which opens without
JavaScript), no internal code shows (``hygiene``, ``award``, ``household_id`` …), and axe-core (npm,
vendored in tests/vendor/, injected only here) finds no serious or critical violation.

Links are followed from the menu and the home page to depth 2 (same origin, GET, no logout,
exports or language switch), one page per URL shape (``/households/7`` and ``/households/8`` are
one), at most ``PER_ROLE`` pages a role. Screenshots go to test-artifacts/screenshots/walk/.

SQLite only: the pages' rendering does not depend on the database engine, and the walk is the
slowest browser test; the engines are covered by the route tests.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from browser_support import ARTIFACTS, login
from support import BACKEND, PHONES

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="the pages' rendering does not depend on the "
                                "database engine; the walk runs once, on SQLite")

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
SHOTS = ARTIFACTS / "walk"
VIEWPORTS = ({"width": 360, "height": 740}, {"width": 320, "height": 640})
PER_ROLE = 22
#: links never followed: they write, download, or only switch a setting
SKIP = re.compile(r"/logout|/export|\.xlsx|\.csv|format=|/lang/|/settings/text|/static/|/api/|/healthz|/print")
#: words that are internal codes, never meant for a person's eyes (the walk is in Chinese, so any
#: English word of these is a code that leaked)
CODES = re.compile(r"\b(hygiene|custom|volunteer|elders|enterprise|deduction|award|issuance|sink|redemption|"
                   r"reversal|settlement|adjustment|expiry|household_id|quantity|rule_id|resident_id|"
                   r"proposed|approved|disputed|posted|rejected|None|"
                   r"[a-z]+\.(?:approve|reject|post|propose|propose_sheet|declare|object|reverse|create|"
                   r"revise|retire|settle|redeem|issue|revoke|unlock|pin_failed|login|logout|denied|"
                   r"login_failed|password_changed|settings|publish|import))\b")

CHECK = """() => {
  const width = window.innerWidth;
  const menu = [...document.querySelectorAll('nav a, nav button, nav summary')].filter(
      e => !e.closest('details:not([open])') || e.tagName === 'SUMMARY');
  const out = menu.map(e => { const r = e.getBoundingClientRect();
      return {text: e.innerText.trim(), left: r.left, right: r.right, width: r.width, height: r.height}; });
  const small = [];
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !e.getClientRects().length || e.closest('[hidden], .visually-hidden, thead')) continue;
    let size = parseFloat(getComputedStyle(e).fontSize);
    if (e instanceof SVGElement && e.ownerSVGElement) size *= e.ownerSVGElement.getScreenCTM().a;
    if (size < 13.95) small.push(e.tagName.toLowerCase() + ' ' + size.toFixed(1) + 'px: ' + e.textContent.trim().slice(0, 20));
  }
  return {scroll: document.scrollingElement.scrollWidth, width, menu: out, small: small.slice(0, 5),
          hidden: [...document.querySelectorAll('nav details:not([open]) a')].map(e => e.innerText.trim())};
}"""
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
      .map(v => ({id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || ''))}));
}"""


def shape(path: str) -> str:
    """One page per URL shape: numbers and codes in the path are one."""
    return re.sub(r"/\d+", "/N", path)


def links_of(page, origin: str) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]:not([download])", "els => els.map(e => e.href)")
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != origin or SKIP.search(href):
            continue
        found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def check_page(page, path: str, name: str, index: int, viewports=VIEWPORTS, codes: bool = True) -> list[str]:
    """Visit ``path`` at both phone sizes; the problems found, as lines."""
    problems = []
    for viewport in viewports:
        page.set_viewport_size(viewport)
        response = page.goto(path)
        status = response.status if response else 0
        if status >= 500:
            problems.append(f"{path}: HTTP {status}")
            continue
        state = page.evaluate(CHECK)
        size = f"{viewport['width']}px"
        if state["scroll"] > state["width"]:
            problems.append(f"{path} @{size}: scrolls sideways ({state['scroll']} > {state['width']})")
        for entry in state["menu"]:
            if entry["width"] and (entry["left"] < 0 or entry["right"] > state["width"] + 0.5):
                problems.append(f"{path} @{size}: menu entry {entry['text']!r} off-screen ({entry['right']:.0f})")
            if entry["width"] and (entry["height"] < 44 or entry["width"] < 44):
                problems.append(f"{path} @{size}: menu entry {entry['text']!r} is a "
                                f"{entry['width']:.0f}×{entry['height']:.0f} target")
        for item in state["small"]:
            problems.append(f"{path} @{size}: text under 14 px: {item}")
        text = page.inner_text("body") if codes else ""  # English pages use these words as words
        for code in sorted(set(CODES.findall(text))):
            problems.append(f"{path} @{size}: internal code {code!r} visible")
        SHOTS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"
        page.screenshot(path=str(SHOTS / f"{name}-{index:02d}-{slug}-{viewport['width']}.png"),
                        full_page=viewport["width"] == 360)
        if state["hidden"]:  # a 更多 menu: it opens without JavaScript, and then fits
            page.click("nav details > summary")
            opened = page.evaluate(CHECK)
            for entry in opened["menu"]:
                if entry["width"] and (entry["right"] > opened["width"] + 0.5 or entry["height"] < 44):
                    problems.append(f"{path} @{size}: entry {entry['text']!r} off-screen or small in the open menu")
            if index == 1:
                page.screenshot(path=str(SHOTS / f"{name}-menu-open-{viewport['width']}.png"))
        if viewport["width"] == 360 and len(viewports) > 1:
            page.add_script_tag(path=str(AXE))
            for violation in page.evaluate(AXE_RUN):
                problems.append(f"{path}: axe {violation['impact']} {violation['id']} ({violation['help']}): "
                                f"{violation['nodes']}")
    return problems


#: pages a role reaches other than by a link from its menu: an error page, a page of another role
#: (403), a paper card, the shop's pages that a scanned code opens
EXTRA = {"public": ["/no-such-page", "/home"],
         "committee": ["/awards/1", "/committee/households/1/card"],
         "resident": ["/committee/review", "/awards/999999"],
         "clerk": ["/shop/card", "/shop/redeem"],
         "grid": [], "supervisor": []}


def walk(page, origin: str, name: str, start: str, extra=(), viewports=VIEWPORTS,
         codes: bool = True) -> tuple[list[str], list[str]]:
    page.goto(start)
    queue = [(path, 1) for path in [urlsplit(page.url).path] + links_of(page, origin)]
    queue += [(path, 2) for path in extra]
    seen_shapes: set[str] = set()
    visited, problems = [], []
    while queue and len(visited) < PER_ROLE:
        path, depth = queue.pop(0)
        key = shape(path.split("?")[0])
        if key in seen_shapes:
            continue
        seen_shapes.add(key)
        visited.append(path)
        problems += check_page(page, path, name, len(visited), viewports, codes)
        if depth < 2:
            queue += [(link, depth + 1) for link in links_of(page, origin)]
    return visited, problems


ROLES = ["public", "committee", "grid", "resident", "clerk", "supervisor"]


@pytest.mark.clock("2026-12-10 10:00", tick=True)
@pytest.mark.parametrize("role", ROLES)
def test_every_page_of_every_role_fits_a_phone(chromium, live_server, role):
    context = chromium.new_context(viewport=VIEWPORTS[0], locale="zh-CN", base_url=live_server.url,
                                  bypass_csp=True)  # to inject axe-core; the pages load nothing inline
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        if role == "public":
            visited, problems = walk(page, live_server.url, role, "/v/BLM", EXTRA[role])
            visited2, problems2 = walk(page, live_server.url, role + "-login", "/login")
            visited, problems = visited + visited2, problems + problems2
        else:
            login(page, PHONES[role])
            visited, problems = walk(page, live_server.url, role, "/home", EXTRA[role])
    finally:
        context.close()
    print(f"\n{role} visited {len(visited)} pages: {' '.join(visited)}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{role}-problems.txt").write_text("\n".join(visited + [""] + problems), encoding="utf-8")
    assert len(visited) >= 2
    assert not problems, "\n".join(problems)


@pytest.mark.clock("2026-12-10 10:00", tick=True)
@pytest.mark.parametrize("role,language", [("resident", "zh"), ("committee", "zh"), ("clerk", "zh"),
                                           ("committee", "en"), ("grid", "en")])
def test_large_text_still_fits_the_smallest_phone(chromium, live_server, role, language):
    """With 大字 on, the same pages at 320×640, in Chinese and in English (longer words): nothing
    sideways, every menu entry reachable, text at least 14 px (axe is not run again: the markup is
    the same)."""
    context = chromium.new_context(viewport=VIEWPORTS[1], locale="zh-CN", base_url=live_server.url)
    context.add_cookies([{"name": "text_size", "value": "large", "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        if language == "en":
            page.goto("/lang/en")
        login(page, PHONES[role])
        assert page.evaluate("document.documentElement.classList.contains('large')")
        visited, problems = walk(page, live_server.url, f"{role}-large-{language}", "/home",
                                 viewports=VIEWPORTS[1:], codes=language == "zh")
    finally:
        context.close()
    assert len(visited) >= 2
    assert not problems, "\n".join(problems)
