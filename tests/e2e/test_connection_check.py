"""The device check's connection test in Chromium: the fake camera's media goes to the server's aiortc
echo peer and back, and the page reports the measured round trip, loss and bitrate."""

from __future__ import annotations

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import link_for


async def test_connection_test_reports_what_the_server_measured(running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = await new_page(browser, running_app.url)
    try:
        await page.goto(await link_for(running_app, 5))
        await expect(page.locator("#device-test")).to_be_enabled()
        await page.click("#device-test")
        result = page.locator("#device-test-result")
        await expect(result).to_have_attribute("data-result", "good", timeout=30_000)  # loopback: a good link
        await expect(result).to_contain_text("ms")
        await expect(result).to_contain_text("kbps")
        await expect(page.locator("#device-test")).to_be_enabled()
    finally:
        await context.close()
