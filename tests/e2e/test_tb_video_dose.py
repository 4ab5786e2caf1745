"""A patient records today's dose with the fake camera from their link; the nurse's review page shows its
contact sheet; she confirms; the patient's calendar shows the day observed by video."""

from __future__ import annotations

from datetime import datetime, timedelta

from playwright.async_api import Browser, expect

from care.appointments import FACILITY_TZ
from db import tb as tb_db
from db.audit import SYSTEM
from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in
from web.auth import issue_link
from web.keys import signer_key


async def test_patient_records_nurse_confirms_calendar_shows_video(running_app: RunningApp,
                                                                   browser: Browser) -> None:
    today = datetime.now(FACILITY_TZ).date()
    async with running_app.pool.acquire() as con:
        patient_id, facility_id = await con.fetchrow(
            "SELECT p.id, p.facility_id FROM patient p JOIN facility f ON f.id = p.facility_id "
            "WHERE f.level = 'commune' ORDER BY p.id LIMIT 1")
        await tb_db.register(con, SYSTEM, patient_id, facility_id, tb_db.NewCase(
            today - timedelta(days=12), "2HRZE/4HR", True, started_on=today - timedelta(days=10)))
        token, _ = await issue_link(con, running_app.app[signer_key], patient_id, 3600)
    patient_ctx, patient = await new_page(browser, running_app.url)
    nurse_ctx, nurse = await new_page(browser, running_app.url)
    try:
        await patient.goto(f"/tb/{token}")
        await patient.click("#record")
        await patient.wait_for_function(
            "() => /[2-9]/.test(document.getElementById('progress').textContent)")  # ≥ 2 s recorded
        await patient.click("#stop")
        await patient.wait_for_selector("body[data-sent=true]", timeout=60_000)
        await expect(patient.locator("#progress")).to_have_text("Video của bạn đã đến nơi. Điều dưỡng sẽ kiểm tra.")

        await doctor_signs_in(nurse, "yta.hoa")
        await nurse.goto("/staff/tb/review")
        sheet = nurse.locator("article.tb-clip img.contact-sheet").first
        await expect(sheet).to_be_visible()
        await nurse.wait_for_function(
            "() => { const i = document.querySelector('img.contact-sheet'); return i.complete && i.naturalWidth > 0; }")
        assert await sheet.evaluate("i => i.naturalWidth") == 720
        await nurse.click("article.tb-clip button[value=confirm]")
        await nurse.wait_for_url("**/staff/tb/review")
        await expect(nurse.locator("article.tb-clip")).to_have_count(0)

        await patient.goto(f"/tb/{token}")
        day = patient.locator(f"li[data-day='{today.isoformat()}']")
        await expect(day).to_have_attribute("data-status", "video")
        await expect(day).to_contain_text("Đã xác nhận qua video")
    finally:
        await patient_ctx.close()
        await nurse_ctx.close()
