"""In Chromium at 360×740, a shop with no network: the clerk opens the offline page online, the
network goes, the page reloads from its service worker, takes two vouchers (one scanned from the QR
on the resident's screen, one typed), refuses the same voucher again and another store's voucher;
the network returns, the page syncs, and the resident's balance and history show both sales."""
from __future__ import annotations

import io
import re
import time

import pytest
import zxingcpp
from browser_support import PHONE, login, screenshot
from PIL import Image
from playwright.sync_api import expect

pytestmark = pytest.mark.clock("2026-12-01 10:00", tick=True)

FIRST, SECOND = "八里庙村积分超市", "兴旺便民超市"


def new_voucher(page, store: str, points: int) -> None:
    page.goto("/me/offline")
    page.select_option("#store_id", label=store)
    page.fill("#points", str(points))
    page.click("text=领取离线券")
    page.wait_for_url("**/me/offline")


def vouchers_on(page) -> list[dict]:
    """The resident's open vouchers as the page shows them, newest first."""
    found = []
    for section in page.locator("section.voucher[data-state=open]").all():
        voucher_id = int(section.get_attribute("id").split("-")[1])
        found.append({"id": voucher_id, "store": section.locator("h2").inner_text(),
                      "code": section.locator(".digits").inner_text(), "qr": section.locator("img.qr")})
    return found


def scanned(qr) -> str:
    """What a camera reads from the QR on the resident's screen."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))
    assert found, "the voucher's QR does not decode"
    return found[0].text


def until(page, script: str, seconds: float = 20) -> None:
    """Poll ``script`` until it is true (page.evaluate: wait_for_function would need eval, which the CSP forbids)."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"not true after {seconds} s: {script}"
        time.sleep(0.2)


def test_a_shop_takes_vouchers_offline_and_syncs_later(chromium, live_server, app):
    resident_ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, base_url=live_server.url,
                                        locale="zh-CN")
    clerk_ctx = chromium.new_context(viewport=PHONE, device_scale_factor=2, base_url=live_server.url,
                                     locale="zh-CN")
    foreign = []
    for ctx in (resident_ctx, clerk_ctx):
        ctx.on("request", lambda r: None if r.url.startswith(live_server.url) or r.url.startswith("data:")
               else foreign.append(r.url))
    try:
        resident, clerk = resident_ctx.new_page(), clerk_ctx.new_page()
        resident.set_default_timeout(20000)
        clerk.set_default_timeout(20000)
        login(resident, "13800000003")
        resident.goto("/me/offline")
        start = int(resident.inner_text("#balance"))
        new_voucher(resident, FIRST, 20)   # typed at the shop
        new_voucher(resident, FIRST, 30)   # scanned at the shop
        new_voucher(resident, SECOND, 10)  # another store's
        shown = vouchers_on(resident)
        assert [v["store"].split(" ·")[0] for v in shown] == [SECOND, FIRST, FIRST]
        other, to_scan, to_type = shown
        assert int(resident.inner_text("#balance")) == start - 60 and resident.inner_text("#held") == "60"
        screenshot(resident, "resident-offline-vouchers")
        url = scanned(to_scan["qr"])
        assert re.search(r"/shop/offline#v=MB1\.[\w-]+\.[\w-]+$", url), url
        other_url = scanned(other["qr"])

        # The clerk opens the page while online: its service worker keeps it and its data.
        login(clerk, "13800000004")
        clerk.goto("/shop/offline")
        expect(clerk.locator("#offline")).to_have_attribute("data-ready", "yes")
        until(clerk, "() => navigator.serviceWorker.controller !== null")
        until(clerk, """async () => {
            const cache = await caches.open('moralbank-offline-v1');
            return (await cache.keys()).length >= 6; }""")
        price = min(int(p) for p in clerk.evaluate(
            "JSON.parse(localStorage.getItem('moralbank-offline-data')).items.map(i => i.points)"))

        clerk_ctx.set_offline(True)
        clerk.reload()
        expect(clerk.locator("#offline")).to_have_attribute("data-ready", "yes")
        expect(clerk.locator("#net")).to_contain_text("没有网络")

        # Scanned: the QR's text, as the camera gives it.
        clerk.fill("#voucher-input", url)
        clerk.click("text=查验")
        expect(clerk.locator("#cart")).to_be_visible()
        expect(clerk.locator("#limit")).to_have_text("30")
        cheapest = clerk.locator(f"#cart-items .qty[data-points='{price}']").first
        cheapest.fill("1")
        expect(clerk.locator("#total")).to_have_text(str(price))
        clerk.click("#take")
        expect(clerk.locator("#receipt")).to_be_visible()
        expect(clerk.locator("#receipt-points")).to_have_text(str(price))
        screenshot(clerk, "clerk-offline-receipt")

        # Typed: the 8 digits under the QR.
        clerk.fill("#voucher-input", to_type["code"])
        clerk.click("text=查验")
        expect(clerk.locator("#cart")).to_be_visible()
        clerk.fill("#extra-points", "25")
        clerk.click("#take")
        expect(clerk.locator("#cart-error")).to_contain_text("超过")  # 25 > 20: refused on the spot
        clerk.fill("#extra-points", "5")
        clerk.click("#take")
        expect(clerk.locator("#receipt-points")).to_have_text("5")
        expect(clerk.locator("#pending-count")).to_have_text("2")

        # The same voucher again, and another store's: refused without a network.
        clerk.fill("#voucher-input", url)
        clerk.click("text=查验")
        expect(clerk.locator("#verdict")).to_contain_text("已经用过")
        expect(clerk.locator("#cart")).to_be_hidden()
        clerk.fill("#voucher-input", other_url)
        clerk.click("text=查验")
        expect(clerk.locator("#verdict")).to_contain_text("别的商店")
        screenshot(clerk, "clerk-offline-refused")

        # The network returns: the page syncs by itself.
        clerk_ctx.set_offline(False)
        clerk.click("#sync")
        expect(clerk.locator("#pending-count")).to_have_text("0")
        expect(clerk.locator("#sales li[data-status=posted]")).to_have_count(2)
        screenshot(clerk, "clerk-offline-synced")

        resident.goto("/me/history")
        lines = resident.locator("ul.lines li").all_inner_texts()
        sales = [line for line in lines if "兑换" in line and "离线券" in line]
        assert len(sales) == 2, lines
        assert any(f"-{price}" in line and to_scan["code"].replace(" ", "") in line for line in sales), sales
        assert any("-5" in line and to_type["code"].replace(" ", "") in line for line in sales), sales
        resident.goto("/me/offline")
        assert int(resident.inner_text("#balance")) == start - 10 - price - 5
        assert resident.inner_text("#held") == "10"
        screenshot(resident, "resident-offline-after")
    finally:
        resident_ctx.close()
        clerk_ctx.close()
    assert not foreign, f"pages loaded from other hosts: {foreign}"
