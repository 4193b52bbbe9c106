"""In Chromium at a phone viewport, the whole shop journey: the resident shows the payment code,
the clerk's phone opens the URL inside the QR, picks an item and confirms; the resident's page
then shows the new balance."""
from __future__ import annotations

import io
import re

import zxingcpp
from browser_support import PHONE, login, screenshot
from PIL import Image
from playwright.sync_api import expect


def test_pay_with_the_qr_code_at_the_shop(chromium, live_server):
    resident_ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, base_url=live_server.url)
    clerk_ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, base_url=live_server.url)
    foreign = []
    for ctx in (resident_ctx, clerk_ctx):
        ctx.on("request", lambda r: None if r.url.startswith(live_server.url) or r.url.startswith("data:")
               else foreign.append(r.url))
    try:
        resident, clerk = resident_ctx.new_page(), clerk_ctx.new_page()
        login(resident, "13800000003")
        resident.goto("/me/pay")
        expect(resident.locator("#digits")).to_have_text(re.compile(r"^\d{4} \d{4}$"))
        expect(resident.locator("#code-area")).to_be_visible()
        resident.wait_for_load_state("networkidle")
        balance_before = int(resident.inner_text("#balance"))
        screenshot(resident, "resident-payment-code")

        # The clerk scans the QR with any camera app: decode what the screen shows.
        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(resident.locator("#qr").screenshot())))
        assert found, "the QR on the resident's screen does not decode"
        url = found[0].text
        assert re.search(r"/shop/redeem\?t=[\w-]{32}$", url), url

        login(clerk, "13800000004")
        clerk.goto(url)
        assert "何*海" in clerk.inner_text("h1")
        assert int(clerk.inner_text("#available")) == balance_before
        first = clerk.locator("input.qty:not([disabled])").first
        price = int(first.get_attribute("data-points"))
        first.fill("1")
        assert clerk.inner_text("#total") == str(price)
        screenshot(clerk, "clerk-cart")
        clerk.click("text=确认兑换")
        clerk.wait_for_url("**/shop/receipts/*")
        assert int(clerk.inner_text("#balance-after")) == balance_before - price
        screenshot(clerk, "clerk-receipt")

        # The resident's page notices within a few seconds.
        resident.wait_for_selector("#done:not([hidden])", timeout=10000)
        assert int(resident.inner_text("#balance")) == balance_before - price
        assert resident.inner_text("#spent") == str(price)
        screenshot(resident, "resident-paid")
    finally:
        resident_ctx.close()
        clerk_ctx.close()
    assert not foreign, f"pages loaded from other hosts: {foreign}"
