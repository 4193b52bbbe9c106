"""In Chromium at a phone viewport: a grid manager files an inspection sheet, the committee approves it."""
from __future__ import annotations

import re

from browser_support import login, screenshot
from sqlalchemy import select

from moralbank.awards.models import Award
from moralbank.extensions import db


def test_inspection_sheet_filed_on_a_phone_and_approved(app, phone):
    page = phone
    login(page, "13800000002")
    screenshot(page, "grid-home")

    page.goto("/grid/sheet")
    # Pick two items that need no photo and whose monthly cap (8) the demo history never reaches.
    page.click("text=选择评分项目")
    for box in page.locator("details input[name=rules]").all():
        box.uncheck()
    page.check("label:has-text('冬季清雪出工') input")
    page.check("label:has-text('参加志愿服务') input")
    page.click("text=换项目")
    items = page.locator(".hh-card").first.locator("label.toggle").all_inner_texts()
    assert any("冬季清雪出工" in h for h in items) and any("参加志愿服务" in h for h in items)

    cells = page.locator(".hh-card label.toggle input[type=checkbox]")
    ticked = 6
    for index in range(ticked):
        cells.nth(index).check()
    screenshot(page, "grid-sheet-filled")
    page.click("text=整张提交")
    flash = page.locator(".flash").first.inner_text()
    assert f"评分表已提交：{ticked} 条" in flash, flash
    screenshot(page, "grid-sheet-submitted")

    page.click("button:has-text('退出')")
    login(page, "13800000001")
    page.goto("/committee/review")
    assert page.locator("ul.queue li").count() >= ticked
    screenshot(page, "committee-review-queue")
    page.check("#all")
    page.click("text=通过所选")
    flash = page.locator(".flash").first.inner_text()
    assert re.search(r"已通过 \d+ 条", flash), flash
    screenshot(page, "committee-review-approved")

    with app.app_context():
        statuses = db.session.scalars(select(Award.status).where(Award.status.in_(("proposed", "approved")))).all()
        db.session.remove()
    # The village has 3 days of public notice: the sheet's awards are now in notice, none left to review.
    assert statuses.count("approved") >= ticked and "proposed" not in statuses

    # The village's settings: a bad value is named next to its field, what was typed stays.
    page.goto("/committee/settings")
    page.fill("#notice_days", "99")
    page.click("text=保存设置")
    assert "公示天数：应为 0 到 30 的整数" in page.locator("#notice_days-error").inner_text()
    assert page.input_value("#notice_days") == "99"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "committee-settings-error")
    page.goto("/committee/rules")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "committee-rules")

    page.goto("/v/BLM/notices")
    assert page.locator("ul.queue li").count() >= ticked
    body = page.inner_text("main")
    assert "公示至" in body
    screenshot(page, "public-notice")


def test_login_page_on_a_phone_is_chinese_and_readable(phone):
    page = phone
    page.goto("/login")
    assert page.locator("h1").inner_text() == "登录"
    # Nothing overflows the 360 px screen sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "login")
