"""Least privilege in the browser: a coordinator's queue page shows counts and states, no names."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in
from tests.integration.test_http import checked_in, jar_session


async def test_coordinator_sees_the_queue_without_names_and_no_patient_pages(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    async with jar_session() as http:
        await checked_in(http, running_app)  # a demo patient waits at the commune station
    context, page = await new_page(browser, running_app.url)
    try:
        await doctor_signs_in(page, "dieuphoi")
        row = page.locator("#queue-body tr").first
        await expect(row).to_be_visible()
        await expect(row.locator(".triage")).to_have_text(re.compile(r"NC[0-4]"))
        await expect(row).not_to_contain_text("Giàng A Páo")
        await expect(row.locator("a")).to_have_count(0)  # no link to a patient page, no name
        await expect(page.locator("#claim-next")).to_have_count(0)
        await expect(page.locator("nav a[href='/staff/patients']")).to_have_count(0)
        response = await page.goto("/staff/patients/1")
        assert response is not None and response.status == 403
    finally:
        await context.close()


async def test_coordinator_dashboard_shows_counts_and_says_when_a_table_is_empty(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = await new_page(browser, running_app.url)
    try:
        await doctor_signs_in(page, "dieuphoi")
        await page.goto("/staff/coordination")
        # The demo seeds opinion requests in several states and no call: one table has rows, one says so.
        await expect(page.locator("#table-open_requests tbody tr").first).to_be_visible()
        await expect(page.locator("#table-calls caption")).to_have_text("Không có cuộc gọi nào đang diễn ra.")
        await expect(page.locator("#title-calls")).to_have_text("Cuộc gọi đang diễn ra")
        await expect(page.locator("main")).not_to_contain_text("Giàng A Páo")
    finally:
        await context.close()
