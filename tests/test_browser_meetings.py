"""In Chromium at a phone viewport (360×740): the committee records a villagers' meeting that adopts
a draft rule, and the public board's catalogue shows the item with the meeting that adopted it."""
from __future__ import annotations

from browser_support import login, screenshot

from moralbank.awards.rules import create_rule
from moralbank.database import write_transaction
from moralbank.extensions import db
from moralbank.people.models import User
from moralbank.people.service import village_by_code


def test_a_meeting_adopts_a_draft_and_the_board_shows_it(app, phone):
    with app.app_context():
        with write_transaction():
            village = village_by_code("BLM")
            village.rule_changes_need_meeting = True
            committee = db.session.query(User).filter_by(phone="13800000001").one()
            create_rule(village, category="volunteer", title="参加村规民约宣讲", points=2, actor=committee)
        db.session.remove()
    page = phone
    login(page, "13800000001")
    page.goto("/committee/meetings")
    assert "参加村规民约宣讲" in page.inner_text("main")
    page.fill("#held_on", "2026-11-20")
    page.select_option("#kind", "representatives")
    for field, value in (("entitled", "45"), ("present", "20"), ("votes_for", "18"), ("votes_against", "2"),
                         ("votes_abstain", "0")):
        page.fill(f"#{field}", value)
    page.check("label:has-text('参加村规民约宣讲') input")
    page.click("text=记录会议并使草案生效")
    # 20 of 45 is no quorum: said next to the field, what was typed stays.
    assert "实到人数：需超过应到人数的一半" in page.locator("#present-error").inner_text()
    assert page.input_value("#entitled") == "45"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "meeting-no-quorum")
    page.fill("#present", "43")
    page.fill("#votes_for", "41")
    page.check("label:has-text('参加村规民约宣讲') input")
    page.click("text=记录会议并使草案生效")
    flash = page.locator(".flash").first.inner_text()
    assert "2026-11-20 村民代表会议 41 票赞成 2 票反对" in flash, flash
    screenshot(page, "meeting-recorded")

    page.goto("/v/BLM")
    page.click("text=积分清单（经村民会议通过）")
    item = page.locator("li:has-text('参加村规民约宣讲')")
    assert "2026-11-20 村民代表会议 41 票赞成 2 票反对" in item.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "board-catalogue")
    page.goto("/v/BLM/catalogue?print=1")
    assert "参加村规民约宣讲" in page.inner_text("table")
    screenshot(page, "board-catalogue-print")


def test_a_vetoed_household_sees_why_and_until_when(app, phone):
    from sqlalchemy import select

    from moralbank.awards.models import Rule
    from moralbank.awards.posting import record_award
    from moralbank.people import access

    with app.app_context():
        with write_transaction():
            resident = db.session.query(User).filter_by(phone="13800000003").one()
            household = access.own_household(resident)
            rule = db.session.scalar(select(Rule).where(Rule.village_id == household.village_id,
                                                        Rule.veto.is_(True), Rule.active.is_(True)).order_by(Rule.id))
            record_award(household, rule)
            title = rule.title
        db.session.remove()
    page = phone
    login(page, "13800000003")
    notice = page.locator("[data-testid=veto]").inner_text()
    assert title in notice and "前不评星级、不上红榜" in notice, notice
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "resident-home-vetoed")
