"""Issue 4 end to end: a nurse registers a patient and books an appointment; the patient opens the link
from the outbox, is told it is too early, and (the clock moved to the slot) enters the waiting room."""

from __future__ import annotations

import os
import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in
from web.keys import clock_key

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


async def test_nurse_books_an_appointment_and_the_patient_joins_when_the_window_opens(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    shots = os.environ.get("DONGHANH_SCREENSHOTS")
    nurse_ctx, nurse = await new_page(browser, running_app.url)
    patient_ctx, patient = await new_page(browser, running_app.url)
    try:
        await doctor_signs_in(nurse, "yta.hoa")

        # Register a new patient (commune from the real administrative units).
        await nurse.goto("/staff/patients/new")
        await nurse.fill("#f-name", "Lò Thị Xuân")
        await nurse.check("input[name=sex][value=female]")
        await nurse.fill("#f-birth_year", "1988")
        await nurse.fill("#f-phone", "0987 654 321")
        await nurse.select_option("#f-province", "15")
        await expect(nurse.locator("#f-commune_code option[value='04456']")).to_have_count(1)
        await nurse.select_option("#f-commune_code", "04456")
        await nurse.check("input[name=key_groups][value=pregnant]")
        await nurse.click("button.button:has-text('Đăng ký')")
        await nurse.wait_for_url(re.compile(r".*/staff/patients/\d+(\?.*)?$"))
        await expect(nurse.locator("main")).to_contain_text("Lò Thị Xuân")

        # Book tomorrow 14:30 with the commune doctor, and send the link.
        await nurse.click("a[href$='/invite']")
        await nurse.check("input[name=kind][value=appointment]")
        tomorrow = (datetime.now(LOCAL) + timedelta(days=1)).date()
        await nurse.fill("#date", tomorrow.isoformat())
        await nurse.fill("#time", "14:30")
        doctor_value = await nurse.locator("#doctor option", has_text="Nguyễn Thị Lan").get_attribute("value")
        assert doctor_value
        await nurse.select_option("#doctor", doctor_value)
        await nurse.check("input[name=send]")
        await nurse.click("form button.big[type=submit]")
        await nurse.wait_for_url(re.compile(r".*/staff/invitations/[0-9a-f-]+(\?.*)?$"))
        await expect(nurse.locator("main svg").first).to_be_visible()  # the QR code
        if shots:
            await nurse.screenshot(path=f"{shots}/invitation.png", full_page=True)

        # The patient's link, as the outbox shows the SMS that was sent: masked in the list, shown (and
        # audited) on request.
        await nurse.goto("/staff/outbox")
        await expect(nurse.locator("tr[data-kind=invitation] .sms-text").first).not_to_contain_text("/j/")
        await nurse.locator("tr[data-kind=invitation] .sms-text a[href^='/staff/outbox/']").first.click()
        sms = nurse.locator("tr[data-kind=invitation] .sms-text").first
        await expect(sms).to_contain_text("/s/")  # the short link: one SMS segment
        link = re.search(r"/s/[A-Za-z0-9]{12}", await sms.inner_text())
        assert link is not None

        await patient.goto(link.group(0))
        await expect(patient.locator("main")).to_contain_text("14:30")
        await expect(patient.locator("#step-device")).to_have_count(0)  # no way in yet
        if shots:
            await patient.set_viewport_size({"width": 400, "height": 700})
            await patient.screenshot(path=f"{shots}/too-early.png")

        # The clock reaches 14:20 tomorrow: the window (30 min before the slot) is open.
        clock = running_app.app[clock_key]
        slot = datetime.combine(tomorrow, time(14, 20), LOCAL)
        clock.advance(slot - clock.now())
        await patient.reload()
        await expect(patient.locator("#step-device")).to_be_visible()
        await expect(patient.locator("#device-ok")).to_be_enabled()
        await patient.click("#device-ok")
        await patient.check("#consent-box")
        await patient.click("#consent-ok")
        await patient.fill("#reason", "Khám thai định kỳ")
        await patient.click("#checkin-ok")
        await expect(patient.locator("#step-waiting")).to_be_visible()
        await expect(patient.locator("#position")).to_have_attribute("data-position", "1")
    finally:
        await nurse_ctx.close()
        await patient_ctx.close()
