"""Leaving with a plan, in Chromium: after the call the doctor writes a medicine and a summary, sees the
preview, signs; the patient's open page shows the summary at once, and again after a reload."""

from __future__ import annotations

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for, patient_reaches_waiting_room


async def test_the_doctor_signs_a_summary_and_the_patients_page_shows_it(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    try:
        await patient_reaches_waiting_room(patient, await link_for(running_app, 1))
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#queue-body tr").first).to_contain_text("Giàng A Páo")
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        await expect(patient.locator("#step-call")).to_be_visible()
        # The doctor's page joins the room as soon as its socket is open; "end" comes after on that socket.
        await expect(doctor.locator("body")).to_have_attribute("data-conn", "open")
        doctor.once("dialog", lambda dialog: dialog.accept())
        await doctor.click("#btn-hangup")
        await expect(patient.locator("#step-ended")).to_be_visible()
        await expect(patient.locator("#summary-wait")).to_be_visible()

        await doctor.click("#medicine-add")
        await doctor.fill("[name=med_drug]", "Amlodipin")
        await doctor.fill("[name=med_dose]", "5 mg")
        await doctor.fill("[name=med_how]", "1 viên buổi sáng")
        await doctor.check("#summary_share")
        await doctor.fill("#summary_advice", "Ăn nhạt, bớt muối.")
        await doctor.check("input[name=summary_warning][value=chest_pain]")
        preview = doctor.locator("#summary-preview-page")
        await expect(preview).to_contain_text("Amlodipin 5 mg: 1 viên buổi sáng")
        await expect(preview).to_contain_text("Đau ngực")
        await expect(doctor.locator("#summary-preview-sms")).to_contain_text("Thuoc: Amlodipin 5 mg")
        await expect(doctor.locator("#summary-preview-sms-meta")).to_contain_text("0••• ••• 601")
        await doctor.click("#note-sign")
        await expect(doctor.locator("#note-versions li")).to_have_count(1)

        summary = patient.locator("#visit-summary")
        await expect(summary).to_be_visible()
        await expect(summary).to_contain_text("Tóm tắt buổi khám")
        await expect(summary.locator("ul[data-key=medicines]")).to_have_text("Amlodipin 5 mg: 1 viên buổi sáng")
        await expect(summary.locator("ul[data-key=warning]")).to_contain_text("Đau ngực")
        await expect(summary.locator("ul[data-key=advice]")).to_have_text("Ăn nhạt, bớt muối.")
        await expect(patient.locator("#summary-wait")).to_be_hidden()

        await patient.reload()  # the link is finished; the page now comes from PostgreSQL
        summary = patient.locator("#visit-summary")
        await expect(summary.locator("ul[data-key=medicines]")).to_have_text("Amlodipin 5 mg: 1 viên buổi sáng")
        await expect(summary.locator("ul[data-key=follow_up]")).to_have_count(0)  # no follow-up date given
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
