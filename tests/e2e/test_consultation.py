"""A patient joins from a real link in Chromium, a doctor claims them, both see decoded video, chat,
the doctor signs a note that is read back from PostgreSQL, and a reload mid-call resumes the call."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.async_api import Page, expect

from db import chat as chat_db
from db import notes as notes_db
from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from web.auth import issue_link
from web.keys import signer_key

FRAMES_DECODED = """async () => {
  const call = window.dhCall;
  if (!call || !call.pc) return 0;
  const report = await call.pc.getStats();
  let frames = 0;
  report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0; });
  return frames;
}"""


async def wait_for_decoded_video(page: Page, more_than: int = 0) -> int:
    """Wait until this page's peer connection has decoded remote video frames (from getStats)."""
    return await wait_for_frames(page, lambda frames: frames > more_than)


async def wait_for_frames(page: Page, done: Callable[[int], bool]) -> int:
    """Poll getStats (an async browser call, which wait_for_function cannot await) until `done(frames)`."""
    async with asyncio.timeout(30):
        while True:
            frames: int = await page.evaluate(FRAMES_DECODED)
            if done(frames):
                return frames
            await asyncio.sleep(0.25)


async def link_for(app: RunningApp, patient_id: int) -> str:
    async with app.pool.acquire() as con:
        token, _ = await issue_link(con, app.app[signer_key], patient_id, 3600)
    return f"/j/{token}"


async def patient_reaches_waiting_room(page: Page, link: str) -> None:
    await page.goto(link)
    await expect(page.locator("#step-device")).to_be_visible()
    await expect(page.locator("#device-ok")).to_be_enabled()
    await page.click("#device-ok")
    await expect(page.locator("#step-consent")).to_be_visible()
    await page.check("#consent-box")
    await page.click("#consent-ok")
    await expect(page.locator("#step-checkin")).to_be_visible()
    await page.fill("#reason", "Ho và sốt nhẹ")
    await page.check("input[name=symptoms][value=cough]")
    await page.click("#checkin-ok")
    await expect(page.locator("#step-waiting")).to_be_visible()
    await expect(page.locator("#position")).to_have_attribute("data-position", "1")


async def doctor_signs_in(page: Page, username: str = "bacsi.lan") -> None:
    await page.goto("/staff/login")
    await page.fill("#username", username)
    await page.fill("#password", "demo1234")
    await page.click("button[type=submit]")
    await page.wait_for_url("**/staff")


async def test_patient_and_doctor_see_each_other_chat_sign_a_note_and_survive_a_reload(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    shots = os.environ.get("DONGHANH_SCREENSHOTS")
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    try:
        await patient_reaches_waiting_room(patient, await link_for(running_app, 1))

        await doctor_signs_in(doctor)
        row = doctor.locator("#queue-body tr").first
        await expect(row).to_contain_text("Giàng A Páo")
        await expect(row.locator(".triage")).to_have_text("NC2")  # 68 years old with a symptom
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        room = uuid.UUID(doctor.url.rsplit("/", 1)[1])

        await expect(patient.locator("#step-call")).to_be_visible()
        patient_frames = await wait_for_decoded_video(patient)
        doctor_frames = await wait_for_decoded_video(doctor)
        assert patient_frames > 0 and doctor_frames > 0

        await patient.fill("#chat-text", "Chào bác sĩ, tôi bị ho")
        await patient.press("#chat-text", "Enter")
        await expect(doctor.locator("#chat-log")).to_contain_text("Chào bác sĩ, tôi bị ho")
        await doctor.fill("#chat-text", "Chào anh, anh ho mấy ngày rồi?")
        await doctor.click("#chat-form button")
        await expect(patient.locator("#chat-log")).to_contain_text("anh ho mấy ngày rồi?")

        await doctor.fill("#subjective", "Ho 3 ngày, sốt nhẹ")
        await doctor.fill("input[name=systolic]", "150")
        await doctor.fill("input[name=diastolic]", "95")
        await doctor.fill("input[name=pulse]", "88")
        await doctor.fill("#assessment", "Viêm họng cấp; THA chưa kiểm soát")
        await doctor.fill("#icd-search", "I10")
        await expect(doctor.locator("#icd-results [role=option]").first).to_contain_text("I10")
        await doctor.press("#icd-search", "Enter")
        await expect(doctor.locator("#diagnoses")).to_contain_text("I10")
        await doctor.fill("#plan", "Uống nhiều nước; tái khám đo huyết áp sau 1 tuần")
        await expect(doctor.locator("#note-status")).to_contain_text("nháp", timeout=10_000)
        if shots:
            await asyncio.to_thread(Path(shots).mkdir, parents=True, exist_ok=True)
            await doctor.evaluate("window.scrollTo(0, 0)")
            await doctor.screenshot(path=f"{shots}/doctor-call.png", full_page=False)
            await patient.set_viewport_size({"width": 400, "height": 860})
            await patient.screenshot(path=f"{shots}/patient-call.png")
        await doctor.click("#note-sign")
        await expect(doctor.locator("#note-versions li")).to_have_count(1)

        async with running_app.pool.acquire() as con:
            versions = await notes_db.versions(con, room)
            chat = await chat_db.history(con, room)
        assert [v.version for v in versions] == [1]
        signed = versions[0].content
        assert signed.subjective == "Ho 3 ngày, sốt nhẹ"
        assert signed.vitals == {"systolic": 150, "diastolic": 95, "pulse": 88}
        assert signed.diagnoses == ("I10",)
        assert [m.body for m in chat] == ["Chào bác sĩ, tôi bị ho", "Chào anh, anh ho mấy ngày rồi?"]

        # The patient reloads mid-call: the page comes back in the call, and video flows again both ways.
        before = await doctor.evaluate(FRAMES_DECODED)
        await patient.reload()
        await expect(patient.locator("#step-call")).to_be_visible()
        assert await wait_for_decoded_video(patient) > 0
        # The doctor's side restarted its connection for the new page: its frame count starts again.
        await wait_for_frames(doctor, lambda frames: frames > 0 and frames != before)
        await expect(patient.locator("#chat-log")).to_contain_text("Chào bác sĩ, tôi bị ho")

        doctor.once("dialog", lambda dialog: dialog.accept())
        await doctor.click("#btn-hangup")
        await expect(patient.locator("#step-ended")).to_be_visible()
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
