"""In Chromium at 360×740 (issue 12): the grid manager files an inspection sheet with photos and one
wrong row, fixes the row, and no photo is lost; a resident's payment code is paid and the page says
已付款, and a replaced code is refused at the till with the reason."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from browser_support import ARTIFACTS, PHONE, login, screenshot
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from moralbank import periods
from moralbank.awards import service as awards
from moralbank.errors import DomainError
from moralbank.awards.models import Award, Rule
from moralbank.database import travel, write_transaction
from moralbank.extensions import db
from moralbank.people.models import Area, Household, User


def _view(page, name: str, at: str | None = None) -> None:
    """A screenshot of what the phone's screen shows (the whole sheet is many screens long), scrolled to ``at``."""
    if at:
        page.locator(at).scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _jpeg(path) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 140, 60)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    return str(path)


def _sheet_setup(app):
    """Four households of the grid manager's hamlet, the demo sheet's items by title, and the fourth
    household already holding this month's 庭院整洁 (capped once a month): its row will be wrong."""
    with app.app_context():
        hamlet = db.session.scalar(select(Area).where(Area.code == "BLM-01"))
        hygiene = {rule.title: rule for rule in db.session.scalars(select(Rule).where(
            Rule.village_id == hamlet.parent_id, Rule.active.is_(True), Rule.category == "hygiene"))}
        rules = {title: rule.id for title, rule in hygiene.items()}
        used = [hygiene[t] for t in ("评为干净人家", "庭院整洁、物品摆放有序", "门前种花种菜美化环境", "柴草堆放整齐")]

        def free(household):  # the demo's history has not used up this month's or quarter's caps
            try:
                for rule in used:
                    awards.check_cap(household, rule, periods.today(), 1)
            except DomainError:
                return False
            return True
        households = [h for h in db.session.scalars(select(Household).where(Household.hamlet_id == hamlet.id)
                                                    .order_by(Household.number).offset(1)) if free(h)][:4]
        assert len(households) == 4
        grid = db.session.scalar(select(User).where(User.phone == "13800000002"))
        with write_transaction():
            awards.propose(grid, awards.Proposal(household_id=households[3].id, rule_id=rules["庭院整洁、物品摆放有序"]))
        ids = [h.id for h in households]
        db.session.remove()
    return ids, rules


@pytest.mark.clock("2026-12-02 09:00", tick=True)
def test_sheet_with_photos_and_a_wrong_row_loses_no_photo(app, phone, tmp_path):
    (a, b, c, wrong), rules = _sheet_setup(app)
    page = phone
    login(page, "13800000002")
    page.goto("/grid/sheet")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # Names sit on one line: a legend one line high, not one character per line.
    heights = page.locator(".hh-card legend").evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
    assert max(heights) < 40, heights
    box = page.locator("label.toggle").first.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 280

    def toggle(household, title):
        page.locator(f"#hh-{household} label.toggle", has_text=title).click()

    toggle(a, "评为干净人家")          # needs a photo
    page.set_input_files(f"#photo-{a}", _jpeg(tmp_path / "a.jpg"))
    toggle(b, "门前种花种菜")          # needs a photo
    page.set_input_files(f"#photo-{b}", _jpeg(tmp_path / "b.jpg"))
    toggle(c, "柴草堆放整齐")          # needs none
    toggle(wrong, "庭院整洁")          # already had it this month: the wrong row
    for household in (a, b):           # each photo is on the server before the sheet is sent
        expect(page.locator(f"#hh-{household} .kept")).to_be_visible()
    held = {h: page.input_value(f"input[name=photo_id-{h}]") for h in (a, b)}
    assert all(held.values()), held
    _view(page, "grid-sheet-photos", f"#hh-{a} .sheet-camera")

    with page.expect_navigation():
        page.click("button:has-text('整张提交')")
    expect(page.locator(".problems")).to_be_visible()
    assert page.locator(".problems li").count() == 1, page.inner_text(".problems")
    assert "庭院整洁" in page.inner_text(f"#hh-{wrong}")
    assert "起可以再记" in page.inner_text(f"#hh-{wrong} .field-error")
    for household in (a, b):           # the photos are still there, by the same ids, their thumbnails shown
        expect(page.locator(f"#hh-{household} .kept")).to_be_visible()
        assert page.input_value(f"input[name=photo_id-{household}]") == held[household]
        assert page.locator(f"#hh-{household} .kept img").evaluate("img => img.naturalWidth") > 0
    assert page.locator(f"#hh-{a} label.toggle", has_text="评为干净人家").locator("input").is_checked()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    _view(page, "grid-sheet-wrong-row")
    _view(page, "grid-sheet-wrong-row-field", f"#hh-{wrong} .field-error")
    _view(page, "grid-sheet-photo-kept", f"#hh-{a} .kept")

    toggle(wrong, "庭院整洁")          # fixed: untick the wrong row
    with page.expect_navigation():
        page.click("button:has-text('整张提交')")
    flash = page.locator(".flash").first.inner_text()
    assert "评分表已提交：3 条" in flash, flash
    _view(page, "grid-sheet-filed")
    with app.app_context():
        filed = {(award.household_id, award.rule_id): award.photo_path for award in db.session.scalars(
            select(Award).where(Award.household_id.in_((a, b, c)), Award.status == "proposed"))}
        db.session.remove()
    assert filed[(a, rules["评为干净人家"])] and filed[(b, rules["门前种花种菜美化环境"])]
    assert filed[(c, rules["柴草堆放整齐"])] is None


def _number(page) -> str:
    return page.inner_text("#digits").replace(" ", "")


def test_payment_code_paid_after_a_new_code_and_the_old_one_refused(app, chromium, live_server):
    resident_ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, base_url=live_server.url)
    clerk_ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, base_url=live_server.url)
    try:
        resident, clerk = resident_ctx.new_page(), clerk_ctx.new_page()
        login(resident, "13800000003")
        resident.goto("/me/pay")
        expect(resident.locator("#digits")).to_have_text(re.compile(r"^\d{4} \d{4}$"))
        first = _number(resident)
        balance_before = int(resident.inner_text("#balance"))

        # Reopened with under a minute left, the page shows a new code, not the old one.
        ttl = int(resident.locator("#pay").get_attribute("data-seconds-left"))
        travel(timedelta(seconds=ttl - 40))
        resident.goto("/me/pay")
        second = _number(resident)
        assert second != first and int(resident.locator("#pay").get_attribute("data-seconds-left")) > 60
        # 换一个码 ends the one shown
        with resident.expect_navigation():
            resident.click("#refresh")
        third = _number(resident)
        assert third not in (first, second)
        screenshot(resident, "resident-payment-code-new")

        login(clerk, "13800000004")
        clerk.goto("/shop")
        clerk.fill("#code", second)
        clerk.click("text=查询")
        flash = clerk.locator(".flash.error").inner_text()
        assert "村民已换了新的付款码" in flash, flash
        assert clerk.input_value("#code") == second, "the box keeps the number the clerk typed"
        assert clerk.evaluate("document.documentElement.scrollWidth") <= 360
        screenshot(clerk, "clerk-code-replaced")

        clerk.fill("#code", third)
        clerk.click("text=查询")
        clerk.fill("#points", "2")
        clerk.click("text=确认兑换")
        clerk.wait_for_url("**/shop/receipts/*")

        resident.wait_for_selector("#done:not([hidden])", timeout=10000)
        assert "已付款" in resident.inner_text("#done")
        assert resident.inner_text("#spent") == "2"
        assert int(resident.inner_text("#balance")) == balance_before - 2
        screenshot(resident, "resident-paid-after-new-code")
    finally:
        resident_ctx.close()
        clerk_ctx.close()


def test_rule_form_refusal_opens_at_the_form_with_what_was_typed(phone):
    page = phone
    login(page, "13800000001")
    page.goto("/committee/rules")
    page.fill("#title-new", "帮五保户挑水")
    page.fill("#points-new", "99999")
    page.fill("#cap_count-new", "2")
    page.select_option("#cap_period-new", "month")
    page.evaluate("document.querySelector('#points-new').removeAttribute('max')")  # as a phone without validation
    with page.expect_navigation():
        page.click("#rule-new button[type=submit]")
    assert page.url.endswith("/committee/rules/new#rule-new")
    error = page.locator("#points-new-error")
    assert "分值：要填 -1000 到 1000 之间、不为 0 的整数" in error.inner_text()
    assert error.evaluate("e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"), \
        "the message is on the screen the page opens at, not 4,500 px above"
    assert page.input_value("#title-new") == "帮五保户挑水" and page.input_value("#points-new") == "99999"
    assert page.input_value("#cap_period-new") == "month"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    _view(page, "committee-rule-form-error")
