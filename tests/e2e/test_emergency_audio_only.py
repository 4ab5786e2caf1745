"""Danger signs show 115 advice at once and alert the doctor; an audio-only patient talks without video."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for

INBOUND = """async (kind) => {
  const call = window.dhCall;
  if (!call || !call.pc) return { packets: 0, frames: 0 };
  const report = await call.pc.getStats();
  let packets = 0, frames = 0;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === kind) {
      packets += s.packetsReceived || 0;
      frames += s.framesDecoded || 0;
    }
  });
  return { packets, frames };
}"""


async def inbound(page: Page, kind: str) -> dict[str, int]:
    result: dict[str, int] = await page.evaluate(INBOUND, kind)
    return result


async def wait_for_audio(page: Page) -> None:
    """Poll getStats until audio packets arrive (the browser has no event for it)."""
    async with asyncio.timeout(30):
        while True:
            if (await inbound(page, "audio"))["packets"] > 0:
                return
            await asyncio.sleep(0.25)


async def test_danger_signs_alert_the_doctor_and_an_audio_only_call_carries_no_video(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    try:
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#empty")).to_be_visible()

        await patient.goto(await link_for(running_app, 7))
        await expect(patient.locator("#device-audio")).to_be_enabled()
        await patient.click("#device-audio")
        await patient.check("#consent-box")
        await patient.click("#consent-ok")
        await patient.check("input[name=symptoms][value=chest_pain]")
        await patient.click("#checkin-ok")
        # 115 advice at once, in Vietnamese, with a tel: link; the patient still waits at the front.
        await expect(patient.locator("#emergency")).to_be_visible()
        await expect(patient.locator("#emergency a[href='tel:115']")).to_be_visible()
        await expect(patient.locator("#step-waiting")).to_be_visible()

        await expect(doctor.locator("#alerts")).to_contain_text("Vàng A Dế")
        row = doctor.locator("#queue-body tr").first
        await expect(row.locator(".triage")).to_have_text("NC4")
        await expect(row).to_contain_text("chỉ tiếng")  # audio only, shown to the doctor
        await row.locator("button.claim").click()
        await doctor.wait_for_url("**/staff/c/*")

        await expect(patient.locator("#step-call")).to_be_visible()
        await wait_for_audio(patient)
        await wait_for_audio(doctor)
        await asyncio.sleep(1.5)  # give video, if it were (wrongly) flowing, time to be decoded
        assert (await inbound(doctor, "video"))["frames"] == 0
        assert (await inbound(patient, "video"))["frames"] == 0
        assert await patient.locator("#btn-audio-only").get_attribute("aria-pressed") == "true"
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
