"""In Chromium at 360×740, five minutes into December: the committee logs in, lands on its to-do,
publishes November's 红榜 and settles November with a store, each after the server's second look
(the confirmation page), following only links and buttons a person would tap."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from browser_support import login, screenshot
from moralbank.extensions import db
from moralbank.rankings.models import RankingSnapshot
from moralbank.stores.models import Settlement


def count(app, model, *where) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0
        finally:
            db.session.remove()


def no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width}px wide"


@pytest.mark.clock("2026-12-01 00:05", tick=True)
def test_committee_closes_november_on_a_phone(app, phone):
    page = phone
    login(page, "13800000001")
    todo = page.locator("[data-testid=todo]")
    assert todo.is_visible()
    assert "2026年11月 红榜未发布" in todo.inner_text()
    assert page.locator("[data-testid=todo-unpublished] [data-count]").get_attribute("data-count") == "1"
    screenshot(page, "month-end-1-todo")

    # 红榜: from the to-do to the publish form, November chosen already, then the second look
    page.click("[data-testid=todo-unpublished] a")
    assert page.locator("#publish-period").input_value() == "2026-11"
    screenshot(page, "month-end-2-publish-form")
    page.click("#publish button[type=submit]")
    confirm = page.locator("[data-testid=confirm-page]")
    assert "发布 2026年11月 红榜（全村）" in confirm.inner_text()
    assert count(app, RankingSnapshot) == 0
    no_sideways_scroll(page)
    screenshot(page, "month-end-3-publish-confirm")
    page.click("[data-testid=confirm]")
    page.wait_for_url("**/v/BLM/rankings/*")
    assert "已发布" in page.locator(".flash").first.inner_text()
    assert count(app, RankingSnapshot, RankingSnapshot.period == "2026-11") == 1
    screenshot(page, "month-end-4-published")

    # 结算: back on the to-do, the first store owed for November, then the second look
    page.goto("/home")
    assert page.locator("[data-testid=todo-unpublished] [data-count]").get_attribute("data-count") == "0"
    page.locator("[data-testid=todo-unsettled] li a", has_text="2026年11月").first.click()
    page.wait_for_url("**/statement?period=2026-11")
    screenshot(page, "month-end-5-statement")
    page.click("button:has-text('记录结算')")
    confirm = page.locator("[data-testid=confirm-page]")
    assert "结算 2026年11月" in confirm.inner_text() and "笔兑换" in confirm.inner_text()
    assert count(app, Settlement, Settlement.period == "2026-11") == 0
    no_sideways_scroll(page)
    screenshot(page, "month-end-6-settle-confirm")
    page.click("[data-testid=confirm]")
    assert "已结算" in page.locator(".flash").first.inner_text()
    assert count(app, Settlement, Settlement.period == "2026-11") == 1
    screenshot(page, "month-end-7-settled")
