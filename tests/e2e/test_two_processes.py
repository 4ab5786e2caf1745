"""A call whose patient page is served by one app process and doctor page by another (two apps on one
PostgreSQL, joined by the bus): claimed, paired, video decoded on both sides, chat, hang-up."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for, patient_reaches_waiting_room, wait_for_decoded_video


async def test_a_call_across_two_processes_decodes_video_both_ways(two_apps: tuple[RunningApp, RunningApp],
                                                                    browser: Browser) -> None:
    a, b = two_apps
    patient_ctx, patient = await new_page(browser, a.url)
    doctor_ctx, doctor = await new_page(browser, b.url)
    try:
        await patient_reaches_waiting_room(patient, await link_for(a, 1))
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#queue-body tr").first).to_contain_text("Giàng A Páo", timeout=30_000)
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        await expect(patient.locator("#step-call")).to_be_visible(timeout=30_000)
        assert await wait_for_decoded_video(patient) > 0
        assert await wait_for_decoded_video(doctor) > 0

        await patient.fill("#chat-text", "Chào bác sĩ")
        await patient.press("#chat-text", "Enter")
        await expect(doctor.locator("#chat-log")).to_contain_text("Chào bác sĩ")

        doctor.once("dialog", lambda dialog: dialog.accept())
        await doctor.click("#btn-hangup")
        await expect(patient.locator("#step-ended")).to_be_visible()
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
