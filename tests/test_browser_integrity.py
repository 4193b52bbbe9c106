"""Chromium at 360 px: the integrity page, the kinship declaration and the resident's expiry warning."""
from __future__ import annotations

import pytest

from browser_support import login, screenshot

pytestmark = pytest.mark.slow


@pytest.mark.clock("2026-12-01 09:30", tick=True)
def test_integrity_kinships_and_expiry_on_a_phone(phone):
    page = phone
    login(page, "13800000005")  # the supervisor
    page.goto("/integrity?village=BLM")
    assert "不是结论" in page.content()
    for kind in ("concentrated", "outlier_proposer", "rubber_stamp", "relative", "self_hamlet"):
        assert page.locator(f"#{kind} li").count() >= 1, kind
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "integrity-page")
    page.context.clear_cookies()

    login(page, "13800000002")  # the grid manager declares a relative
    page.goto("/kinships")
    page.fill("#household", "BLM-009")
    page.fill("#relation", "父母")
    with page.expect_navigation():
        page.get_by_role("button", name="登记", exact=True).click()
    assert "已登记" in page.content() and "BLM-009" in page.content()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "kinships-declared")
    page.context.clear_cookies()

    login(page, "13800000146")  # a resident of XLC, where points lapse after 6 months
    assert page.get_by_test_id("expiring").is_visible()
    assert "到期清零" in page.get_by_test_id("expiring").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "resident-expiring")
