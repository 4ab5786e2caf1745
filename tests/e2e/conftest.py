"""Real Chromium (Debian's /usr/bin/chromium) with a fake camera and microphone, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = os.environ.get("DONGHANH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--disable-dev-shm-usage",
    # Keep WebRTC on loopback: no mDNS host-candidate obfuscation in a headless test.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not chromium_available():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: Browser, base_url: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(base_url=base_url, permissions=["camera", "microphone"],
                                        viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    # Browser console lines go to stdout, which pytest shows only when a test fails.
    page.on("console", lambda m: print(f"[{page.url.rsplit('/', 1)[-1][:10]}] {m.type}: {m.text}"))
    return context, page
