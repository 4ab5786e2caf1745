"""Three Chromium pages in one call (issue 9 point 4): a patient and their doctor, then a specialist added to the
live room; each page decodes video from both others (one peer connection per pair); the specialist leaves and
the patient and the doctor go on."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from db import staff as staff_db
from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for, patient_reaches_waiting_room

# Video frames decoded per remote peer (one peer connection each), keyed by the name on its tile.
FRAMES_PER_PEER = """async () => {
  const call = window.dhCall;
  if (!call || !call.links) return {};
  const out = {};
  for (const link of call.links.values()) {
    if (!link.pc) continue;
    const report = await link.pc.getStats();
    let frames = 0;
    report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0; });
    out[link.name || link.peerSession] = frames;
  }
  return out;
}"""


async def wait_for_peers(page: Page, done: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """Poll getStats per peer connection until `done(frames by peer name)`."""
    async with asyncio.timeout(45):
        while True:
            frames: dict[str, int] = await page.evaluate(FRAMES_PER_PEER)
            if done(frames):
                return frames
            await asyncio.sleep(0.25)


def decoding_from(*names: str) -> Callable[[dict[str, int]], bool]:
    return lambda frames: set(frames) == set(names) and all(frames[n] > 0 for n in names)


async def test_patient_doctor_and_specialist_each_decode_video_from_both_others(
        running_app: RunningApp, browser: Browser) -> None:
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    specialist_ctx, specialist = await new_page(browser, running_app.url)
    await patient.set_viewport_size({"width": 400, "height": 800})  # the patient's phone
    async with running_app.pool.acquire() as con:
        invited = await staff_db.by_username(con, "bs.timmach")
    assert invited is not None
    doctor_name, patient_name, specialist_name = "BS. Nguyễn Thị Lan", "Giàng A Páo", invited.name
    try:
        await patient_reaches_waiting_room(patient, await link_for(running_app, 1))
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#queue-body tr").first).to_contain_text(patient_name)
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        room = uuid.UUID(doctor.url.rsplit("/", 1)[1])
        await wait_for_peers(patient, decoding_from(doctor_name))
        await wait_for_peers(doctor, decoding_from(patient_name))

        # What escalation's accept does: the hub adds the specialist to the live room and tells its members.
        await running_app.hub.add_participant(room, invited.id)
        await expect(doctor.locator("#call-status")).to_contain_text(specialist_name)
        await doctor_signs_in(specialist, "bs.timmach")
        await specialist.goto(f"/staff/c/{room}")

        for page, others in ((patient, (doctor_name, specialist_name)), (doctor, (patient_name, specialist_name)),
                             (specialist, (patient_name, doctor_name))):
            await wait_for_peers(page, decoding_from(*others))
            for name in others:  # names on the tiles
                await expect(page.locator(".tile-name", has_text=name)).to_have_count(1)
        await expect(doctor.locator("#call-members")).to_contain_text(specialist_name)
        # The patient's grid of two remote videos fits the 400 px phone.
        box = await patient.locator(".videos").bounding_box()
        assert box is not None and box["width"] <= 400
        assert await patient.locator(".videos").get_attribute("data-count") == "2"
        if shots := os.environ.get("DONGHANH_SCREENSHOTS"):
            await asyncio.to_thread(Path(shots).mkdir, parents=True, exist_ok=True)
            await patient.screenshot(path=f"{shots}/patient-three-way.png")
            await doctor.screenshot(path=f"{shots}/doctor-three-way.png")

        await specialist.fill("#chat-text", "Tôi là bác sĩ tim mạch")
        await specialist.press("#chat-text", "Enter")
        for page in (patient, doctor):
            await expect(page.locator("#chat-log")).to_contain_text("Tôi là bác sĩ tim mạch")
        await expect(doctor.locator("#chat-log li.theirs .who")).to_have_text(specialist_name)

        # The specialist leaves; the patient and the doctor keep decoding each other's video.
        await specialist.click("#btn-hangup")
        await expect(specialist.locator("#after-call")).to_be_visible()
        for page, other in ((patient, doctor_name), (doctor, patient_name)):
            before = (await wait_for_peers(page, decoding_from(other)))[other]
            await wait_for_peers(page, lambda frames, o=other, b=before: frames.get(o, 0) > b)  # type: ignore[misc]
            await expect(page.locator("#call-status")).to_contain_text(specialist_name)
        await expect(doctor.locator("#call-members")).not_to_contain_text(specialist_name)
        assert await patient.locator(".videos").get_attribute("data-count") == "1"
    finally:
        for ctx in (patient_ctx, doctor_ctx, specialist_ctx):
            await ctx.close()
