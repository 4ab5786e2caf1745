"""The staff nav bar's badge in Chromium: a specialist on a page with no socket of its own (the
hypertension dashboard) sees the count of requests offered to them go up the moment an offer arrives, as
text in a bordered pill with its meaning in a live region; the commune doctor asks from another page."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in


async def test_the_badge_appears_when_an_offer_arrives(running_app: RunningApp,
                                                       browser) -> None:  # type: ignore[no-untyped-def]
    async with running_app.pool.acquire() as con:
        patient = await con.fetchval("SELECT id FROM patient WHERE name = 'Vàng A Dế'")
    contexts = []
    try:
        context, specialist = await new_page(browser, running_app.url)
        contexts.append(context)
        await doctor_signs_in(specialist, "bs.timmach")
        context, doctor = await new_page(browser, running_app.url)
        contexts.append(context)
        await doctor_signs_in(doctor, "bacsi.lan")

        # The badge opens a socket where the page has none of its own; it is up before the offer.
        async with specialist.expect_websocket() as opened:
            await specialist.goto("/staff/htn")
        socket = await opened.value
        await socket.wait_for_event("framereceived", lambda payload: '"welcome"' in str(payload))
        badge = specialist.locator(".staff-nav [data-badge]")
        await expect(badge).to_have_attribute("data-offers", re.compile(r"^\d+$"))  # read at load
        before = int(await badge.get_attribute("data-offers") or "0")

        await doctor.goto(f"/staff/patients/{patient}/ask")
        await doctor.select_option("#specialty", "cardiology")
        await doctor.fill("#question", "Ngất thoáng qua khi gắng sức, nghe tim có thổi tâm thu: cần làm gì?")
        await doctor.check("#consent")
        await doctor.click("#ask-form button[type=submit]")
        await doctor.wait_for_url(re.compile(r"/staff/escalations/[0-9a-f-]{36}$"))

        await expect(badge).to_have_attribute("data-offers", str(before + 1))
        await expect(badge).to_be_visible()
        unread = int(await badge.get_attribute("data-unread") or "0")
        await expect(badge).to_have_text(str(before + 1 + unread))
        live = specialist.locator(".staff-nav [data-badge-text]")
        await expect(live).to_have_attribute("aria-live", "polite")
        await expect(live).to_contain_text(re.compile(f"(Yêu cầu đang chờ bạn nhận|Requests offered to you): "
                                                      f"{before + 1}"))
        assert await badge.get_attribute("title") == await live.text_content()
    finally:
        for context in contexts:
            await context.close()
