"""The patient's page tells the truth in Chromium (issue 8: 1, 3, 10): nobody online → call 115 and the
station's number; a doctor signing in later sees the alert and acknowledges it; the patient's hang-up
only leaves the call and the doctor calls back; when the doctor drops, the patient is told at once, and the
"back at the front" explanation stays on screen under their place."""

from __future__ import annotations

import uuid

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for


async def test_patient_page_tells_the_truth_and_hanging_up_only_leaves_the_call(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    try:
        await patient.goto(await link_for(running_app, 7))
        await expect(patient.locator("#device-audio")).to_be_enabled()
        await patient.click("#device-audio")
        await patient.check("#consent-box")
        await patient.click("#consent-ok")
        await patient.check("input[name=symptoms][value=chest_pain]")
        await patient.click("#checkin-ok")
        # Nobody is online: no "a doctor has been alerted"; call 115, the on-call doctor was texted.
        await expect(patient.locator("#emergency-nobody")).to_be_visible()
        await expect(patient.locator("#emergency-nobody")).to_contain_text("không có bác sĩ nào trực tuyến")
        await expect(patient.locator("#emergency-alerted")).to_be_hidden()
        await expect(patient.locator("#emergency-on-call")).to_be_visible()
        await expect(patient.locator("#station-phone")).to_have_attribute("href", "tel:02163878210")

        await doctor_signs_in(doctor)  # after the check-in: the stored alert is shown
        alert = doctor.locator("#alerts [data-alert]")
        await expect(alert).to_contain_text("Vàng A Dế")
        await expect(patient.locator("#emergency-alerted")).to_be_visible()  # now a doctor has seen it
        await alert.locator("button.ack").click()
        await expect(alert).to_have_count(0)

        await doctor.locator("#queue-body tr").first.locator("button.claim").click()
        await doctor.wait_for_url("**/staff/c/*")
        room = uuid.UUID(doctor.url.rsplit("/", 1)[1])
        await expect(patient.locator("#step-call")).to_be_visible()
        for side in (patient, doctor):  # both in the room together: each has started its peer connection
            await side.wait_for_function("() => window.dhCall && window.dhCall.pc !== null")
        await expect(doctor.locator("#empty-call")).to_be_hidden()

        patient.once("dialog", lambda dialog: dialog.accept())
        await patient.click("#btn-hangup")
        await expect(patient.locator("#queue-notice")).to_contain_text("Bạn đã rời cuộc gọi")
        await expect(patient.locator("#rejoin")).to_be_visible()
        await expect(doctor.locator("#empty-call")).to_be_visible()
        await expect(doctor.locator("#empty-call-since")).to_contain_text("đã rời cuộc gọi")
        async with running_app.pool.acquire() as con:
            assert await con.fetchval("SELECT status FROM consultation WHERE id = $1", room) == "active"

        await doctor.click("#call-back")
        await expect(patient.locator("#step-call")).to_be_visible()
        await expect(doctor.locator("#empty-call")).to_be_hidden()

        await doctor_ctx.close()  # the doctor's connection drops
        await expect(patient.locator("#call-status")).to_contain_text("Kết nối của bác sĩ bị ngắt")
        async with running_app.pool.acquire() as con:
            await con.execute("UPDATE consultation SET doctor_seen_at = now() - interval '1 hour' WHERE id = $1",
                              room)
        assert await running_app.hub.sweep() == [room]
        await expect(patient.locator("#step-waiting")).to_be_visible()
        await expect(patient.locator("#position")).to_have_attribute("data-position", "1")
        # The queue message that gave the place did not wipe the explanation.
        await expect(patient.locator("#queue-notice")).to_contain_text("Bác sĩ bị mất kết nối")
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
