"""The hypertension register in Chromium: a patient sends a home reading from their link (on a 360 px
phone); the district specialist's worklist shows them with the reason; the specialist writes a review
from the chart; the dashboard's counts change."""

from __future__ import annotations

import re
from datetime import timedelta

from playwright.async_api import expect

from care.appointments import FACILITY_TZ
from care.hypertension import Month
from db import hypertension as htn_db
from db import patients as patients_db
from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for, patient_reaches_waiting_room
from web.keys import clock_key


async def test_home_reading_reaches_the_worklist_review_and_dashboard(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    app = running_app
    today = app.app[clock_key].now().astimezone(FACILITY_TZ).date()
    async with app.pool.acquire() as con:
        commune = await con.fetchval("SELECT facility_id FROM staff WHERE username = 'yta.hoa'")
        pid = await patients_db.create(con, facility_id=commune, name="Sùng Thị Mỷ", phone="0912000222")
        await htn_db.enrol(con, patient_id=pid, facility_id=commune, staff_id=None, today=today,
                           enrolment=htn_db.Enrolment(today - timedelta(days=200)))
        await htn_db.add_visit(con, patient_id=pid, visited_on=today - timedelta(days=20), staff_id=None,
                               today=today)  # seen, no BP taken
    month = str(Month.of(today))

    phone = await browser.new_context(base_url=app.url, viewport={"width": 360, "height": 740})
    patient = await phone.new_page()
    patient.set_default_timeout(20_000)
    specialist_ctx, specialist = await new_page(browser, app.url)
    try:
        await doctor_signs_in(specialist, "bs.timmach")
        await specialist.goto(f"/staff/htn?month={month}")
        district = specialist.locator("#report tbody tr").first
        await expect(district.locator("[data-col=visited_no_bp]")).to_have_text(re.compile(r"^\s*1\b"))
        uncontrolled_before = int((await district.locator("[data-col=uncontrolled]").inner_text()).split()[0])

        await patient.goto(await link_for(app, pid))
        form = patient.locator("#home-bp-form")
        await expect(form).to_be_visible()
        await patient.fill("#bp-sys", "185")
        await patient.fill("#bp-dia", "100")
        await patient.click("#home-bp-form button[type=submit]")
        await expect(patient.locator("#home-bp-status")).to_contain_text("Huyết áp của bạn rất cao")

        await specialist.goto("/staff/htn/worklist")
        row = specialist.locator(f"#worklist tr[data-patient='{pid}']")
        await expect(row).to_contain_text("185/100")
        await expect(row.locator("[data-reason=urgent]")).to_be_visible()
        await row.locator("a").first.click()  # the name: the chart
        await specialist.wait_for_url(f"**/staff/htn/p/{pid}")
        await expect(specialist.locator("svg.bp-chart circle[data-value='185']")).to_have_count(1)
        await specialist.fill("#review", "Tăng amlodipin 10 mg; trạm đo lại sau 2 tuần.")
        await specialist.click("#review-form button[type=submit]")
        await expect(specialist.locator("#done")).to_be_visible()

        await specialist.goto(f"/staff/htn?month={month}")
        district = specialist.locator("#report tbody tr").first
        await expect(district.locator("[data-col=uncontrolled]")).to_have_text(
            re.compile(rf"^\s*{uncontrolled_before + 1}\b"))
        await expect(district.locator("[data-col=visited_no_bp]")).to_have_text(re.compile(r"^\s*0\b"))
        async with app.pool.acquire() as con:
            signed = await con.fetchval(
                "SELECT nv.assessment FROM note_version nv JOIN consultation c ON c.id = nv.consultation_id "
                "WHERE c.patient_id = $1 AND c.outcome = 'htn_review'", pid)
        assert signed.startswith("Tăng amlodipin")
    finally:
        await phone.close()
        await specialist_ctx.close()


async def test_signing_an_i10_note_offers_enrolment_on_the_call_page(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    async with running_app.pool.acquire() as con:
        staff_facility = await con.fetchval("SELECT facility_id FROM staff WHERE username = 'bacsi.lan'")
        patient_id = await patients_db.create(con, facility_id=staff_facility, name="Hà Văn Tằng")
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    try:
        await patient_reaches_waiting_room(patient, await link_for(running_app, patient_id))
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#queue-body tr").first).to_contain_text("Hà Văn Tằng")
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        await expect(doctor.locator("#htn-offer")).to_be_hidden()
        await doctor.fill("#icd-search", "I10")
        await expect(doctor.locator("#icd-results [role=option]").first).to_contain_text("I10")
        await doctor.press("#icd-search", "Enter")
        await expect(doctor.locator("#diagnoses")).to_contain_text("I10")
        await doctor.click("#note-sign")
        await expect(doctor.locator("#note-versions li")).to_have_count(1)
        offer = doctor.locator("#htn-offer")
        await expect(offer).to_be_visible()
        await expect(offer.locator("a")).to_have_attribute("href", f"/staff/htn/p/{patient_id}")
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
