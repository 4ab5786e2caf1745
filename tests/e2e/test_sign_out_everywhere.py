"""Issue 7 point 2 in the browser: signing out in one tab closes the staff page open in another tab of the
same session — its socket is closed with 4401, it says so and goes to the sign-in page."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in


async def test_a_queue_page_is_closed_and_sent_to_sign_in_when_its_session_signs_out_in_another_tab(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    context, queue_tab = await new_page(browser, running_app.url)
    try:
        await doctor_signs_in(queue_tab)
        await expect(queue_tab.locator("body")).to_have_attribute("data-conn", "open")

        other_tab = await context.new_page()  # same browser, same session cookie
        await other_tab.goto("/staff/patients")
        await other_tab.click("nav.staff-nav form[action='/staff/logout'] button")
        await other_tab.wait_for_url(re.compile(r".*/staff/login$"))

        # The first tab's socket was closed with 4401: it says so (in Vietnamese) and does not reconnect…
        await expect(queue_tab.locator("body")).to_have_attribute("data-conn", "signed-out")
        await expect(queue_tab.locator("#conn")).to_have_text(re.compile("đăng xuất"))
        # …and goes to the sign-in page, back to the queue afterwards.
        await queue_tab.wait_for_url(re.compile(r".*/staff/login\?next=%2Fstaff$"))
        await expect(queue_tab.locator("#username")).to_be_visible()
    finally:
        await context.close()
