"""The doctor's day around the call, in Chromium: arrival alerts (chime, notification, tab title; louder for
danger signs), the patient's check-in answers with the values that raised the level, the next patient after
ending a call, the doctor's name and facility on the patient's page, and every page at 360 px."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Dialog, Page, expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for

# Hooks installed before the queue page's scripts run: a Notification that records what was shown (and is
# "granted"), page visibility the test can switch, and a record of every oscillator started with the
# loudest gain scheduled around it. The page's own code runs unchanged on real WebAudio nodes.
HOOKS = """(() => {
  const dh = window.__dh = { hidden: false, notes: [], tones: [], gains: [] };
  Object.defineProperty(Document.prototype, "visibilityState",
    { configurable: true, get() { return dh.hidden ? "hidden" : "visible"; } });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get() { return dh.hidden; } });
  class RecordingNotification {
    constructor(title, options) { dh.notes.push({ title, ...options }); }
    close() {}
  }
  RecordingNotification.permission = "granted";
  RecordingNotification.requestPermission = () => Promise.resolve("granted");
  window.Notification = RecordingNotification;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (when) {
    dh.tones.push({ wave: this.type, frequency: this.frequency.value });
    return start.call(this, when);
  };
  const ramp = AudioParam.prototype.exponentialRampToValueAtTime;
  AudioParam.prototype.exponentialRampToValueAtTime = function (value, time) {
    dh.gains.push(value);
    return ramp.call(this, value, time);
  };
})();"""

OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"


async def take(page: Page) -> dict[str, Any]:
    """What the hooks recorded since the last call (then cleared)."""
    recorded: dict[str, Any] = await page.evaluate(
        "() => { const d = window.__dh; const out = { notes: d.notes, tones: d.tones, gains: d.gains };"
        " d.notes = []; d.tones = []; d.gains = []; return out; }")
    return recorded


async def wait_for_tones(page: Page) -> dict[str, Any]:
    await page.wait_for_function("() => window.__dh.tones.length > 0")
    return await take(page)


async def screenshot(page: Page, name: str) -> None:
    shots = os.environ.get("DONGHANH_SCREENSHOTS")
    if shots:
        await asyncio.to_thread(Path(shots).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=f"{shots}/{name}.png", full_page=True)


async def consent(page: Page, link: str, *, run_connection_test: bool = False) -> None:
    """From the link to the check-in form (optionally running the device check's connection test)."""
    await page.goto(link)
    await expect(page.locator("#device-ok")).to_be_enabled()
    if run_connection_test:
        await page.click("#device-test")
        await expect(page.locator("#device-test-result")).to_have_attribute("data-result", "good", timeout=30_000)
    await page.click("#device-ok")
    await page.check("#consent-box")
    await page.click("#consent-ok")
    await expect(page.locator("#step-checkin")).to_be_visible()


async def check_in_over_http(app: RunningApp, patient_id: int, body: dict[str, Any]) -> str:
    """Consent and check in as the patient's page would; returns the patient's link."""
    link = await link_for(app, patient_id)
    token = link.removeprefix("/j/")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{app.url}/api/p/consent", json={"version": "2026-11-v1"}, headers=headers)
        assert r.status == 200, await r.text()
        r = await http.post(f"{app.url}/api/p/checkin", json=body, headers=headers)
        assert r.status == 200, await r.text()
    return link


async def test_arrivals_alert_the_doctor_answers_are_shown_and_the_next_patient_is_one_click_away(
        running_app: RunningApp, browser: Browser) -> None:
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    a_ctx, patient_a = await new_page(browser, running_app.url)
    b_ctx, patient_b = await new_page(browser, running_app.url)
    try:
        await doctor.add_init_script(HOOKS)
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#empty")).to_be_visible()
        await expect(doctor.locator("#arrival-alerts")).to_be_checked()  # on by default
        await expect(doctor.locator("#notify-state")).to_have_text("Thông báo đang bật.")
        title = await doctor.title()
        await doctor.evaluate("window.__dh.hidden = true")  # the doctor is working in another tab

        # Patient A (68, fever for 4 days) ran the connection test before checking in.
        await consent(patient_a, await link_for(running_app, 1), run_connection_test=True)
        await patient_a.fill("#reason", "Sốt và ho")
        await patient_a.check("input[name=symptoms][value=fever]")
        await patient_a.check("input[name=symptoms][value=cough]")
        await patient_a.fill("#days_ill", "4")
        await patient_a.click("#checkin-ok")
        await expect(patient_a.locator("#step-waiting")).to_be_visible()

        arrival = await wait_for_tones(doctor)
        assert {t["wave"] for t in arrival["tones"]} == {"sine"} and len(arrival["tones"]) == 2
        assert [n["title"] for n in arrival["notes"]] == ["Có người bệnh mới đang chờ (NC2)"]
        assert "Giàng" not in str(arrival["notes"])  # no patient name on a lock screen
        await expect(doctor).to_have_title(f"(1) {title}")

        # Patient B: chest pain and SpO2 92 %, danger signs: a louder, longer, harsher chime.
        await consent(patient_b, await link_for(running_app, 7))
        await patient_b.fill("#reason", "Đau ngực")
        await patient_b.check("input[name=symptoms][value=chest_pain]")
        await patient_b.fill("#spo2", "92")
        await patient_b.click("#checkin-ok")
        await expect(patient_b.locator("#emergency")).to_be_visible()
        danger = await wait_for_tones(doctor)
        assert {t["wave"] for t in danger["tones"]} == {"square"} and len(danger["tones"]) == 6
        assert max(danger["gains"]) > 3 * max(arrival["gains"])
        assert [(n["title"], n["requireInteraction"]) for n in danger["notes"]] == [
            ("DẤU HIỆU NGUY HIỂM: có người bệnh đang chờ (NC4)", True)]
        await expect(doctor).to_have_title(f"(2 !) {title}")

        # Answers in the queue rows, with what raised the level marked.
        rows = doctor.locator("#queue-body tr")
        await expect(rows).to_have_count(2)
        b_row, a_row = rows.nth(0), rows.nth(1)
        await expect(b_row.locator(".answers mark.hl-danger")).to_have_text(["Đau hoặc tức ngực", "SpO2 92%"])
        await expect(a_row.locator(".answers")).to_contain_text("Ho, Sốt · bệnh 4 ngày · đường truyền: tốt")
        await expect(a_row.locator(".answers mark.hl-raised")).to_have_text(["Sốt", "bệnh 4 ngày"])

        # Switched off: a third arrival updates the title but makes no sound and no notification.
        await doctor.click("#arrival-alerts")
        await expect(doctor.locator("#notify-state")).to_have_text("Đã tắt báo.")
        assert await doctor.evaluate("localStorage.getItem('dh_arrival_alerts')") == "off"
        await check_in_over_http(running_app, 5, {"reason": "ho", "symptoms": ["cough"]})
        await expect(doctor).to_have_title(f"(3 !) {title}")
        assert await take(doctor) == {"notes": [], "tones": [], "gains": []}
        await doctor.click("#arrival-alerts")
        await doctor.evaluate("window.__dh.hidden = false")
        await screenshot(doctor, "queue-answers")

        # The most urgent patient first; the call page shows every answer, the raising ones marked.
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        answers = doctor.locator(".checkin-answers")
        await expect(answers.locator("[data-answer=symptoms] mark.hl-danger")).to_have_text("Đau hoặc tức ngực")
        await expect(answers.locator("[data-answer=spo2] mark.hl-danger")).to_have_text("92 %")
        await expect(answers.locator("[data-answer=bp]")).to_have_text("không đo")
        await expect(answers.locator("[data-answer=connection_test]")).to_have_text("chưa kiểm tra")
        await expect(answers.locator("[data-answer=reasons]")).to_contain_text("NC4")
        await expect(answers.locator("[data-answer=reasons]")).to_contain_text("SpO2 dưới 94%")

        # The patient knows who they talk to.
        await expect(patient_b.locator("#step-call")).to_be_visible()
        await expect(patient_b.locator("#doctor-call")).to_have_text(
            "Bạn đang nói chuyện với BS. Nguyễn Thị Lan, Trạm Y tế xã Mù Cang Chải.")
        await screenshot(patient_b, "patient-call-doctor-name")

        # Ending the call closes media and controls; the note stays open; the next patient is one click away.
        await doctor.fill("#subjective", "Đau ngực trái 1 giờ, SpO2 92 %")
        doctor.once("dialog", lambda dialog: dialog.accept())
        await doctor.click("#btn-hangup")
        await expect(patient_b.locator("#step-ended")).to_be_visible()
        await expect(doctor.locator("#after-call")).to_be_visible()
        for closed in ("#btn-hangup", "#btn-mute", ".videos", "#chat-form"):
            await expect(doctor.locator(closed)).to_be_hidden()
        await expect(doctor.locator("#next-waiting")).to_contain_text("2")
        await expect(doctor.locator("#note-sign")).to_be_enabled()
        await screenshot(doctor, "after-call")
        # Not signed yet: the doctor is asked first, and staying keeps the page.
        first_room = doctor.url
        asked: list[str] = []

        async def stay(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.dismiss()

        doctor.once("dialog", stay)
        await doctor.click("#next-patient")  # returns once the question is answered
        assert len(asked) == 1 and "chưa được ký" in asked[0]
        # A reload of the ended call comes back closed, with the draft kept.
        await expect(doctor.locator("#note-status")).to_contain_text("Đã lưu bản nháp")
        await doctor.reload()
        await expect(doctor.locator("#after-call")).to_be_visible()
        await expect(doctor.locator(".videos")).to_be_hidden()
        await expect(doctor.locator("#subjective")).to_have_value("Đau ngực trái 1 giờ, SpO2 92 %")
        await expect(doctor.locator("#next-waiting")).to_contain_text("2")
        await doctor.fill("#plan", "Chuyển viện cấp cứu")
        await doctor.click("#note-sign")
        await expect(doctor.locator("#note-versions li")).to_have_count(1)
        assert doctor.url == first_room
        await doctor.click("#next-patient")  # signed: no question asked
        await doctor.wait_for_url(lambda url: url != first_room and "/staff/c/" in url)
        uuid.UUID(doctor.url.rsplit("/", 1)[1])
        await expect(doctor.locator("#patient-h")).to_contain_text("Giàng A Páo")
        answers = doctor.locator(".checkin-answers")
        await expect(answers.locator("[data-answer=connection_test]")).to_contain_text("tốt")
        await expect(answers.locator("[data-answer=connection_test]")).to_contain_text("ms")
        await expect(answers.locator("[data-answer=days_ill] mark.hl-raised")).to_have_text("4 ngày")
        await expect(patient_a.locator("#doctor-waiting")).to_contain_text("BS. Nguyễn Thị Lan")
        await expect(patient_a.locator("#doctor-call")).to_be_visible()
    finally:
        for ctx in (doctor_ctx, a_ctx, b_ctx):
            await ctx.close()


async def fits(page: Page, path: str) -> None:
    scroll_width, inner_width = await page.evaluate(OVERFLOW)
    assert scroll_width <= inner_width, f"{path}: {scroll_width} px wide on a {inner_width} px screen"


async def test_staff_and_patient_pages_fit_a_360_px_phone(running_app: RunningApp, browser: Browser) -> None:
    waiting_link = await check_in_over_http(running_app, 3, {
        "reason": "Ho kéo dài, sốt về chiều, đau đầu nhiều", "symptoms": ["cough", "fever", "headache"],
        "days_ill": 4, "spo2": 95, "systolic": 185, "diastolic": 115,
        "connection_test": {"verdict": "weak", "rtt_ms": 640, "loss_pct": 7.5, "kbps_up": 120}})
    staff_ctx, staff = await new_page(browser, running_app.url)
    patient_ctx, patient = await new_page(browser, running_app.url)
    try:
        await staff.set_viewport_size({"width": 360, "height": 740})
        await patient.set_viewport_size({"width": 360, "height": 740})
        await staff.goto("/staff/login")
        await fits(staff, "/staff/login")
        await doctor_signs_in(staff)
        # An invitation with an SMS: the invitation page's and the outbox's message tables have rows.
        await staff.goto("/staff/patients/2/invite")
        await fits(staff, "/staff/patients/2/invite")
        await staff.fill("#phone", "0912345602")
        await staff.check("input[name=send]")
        await staff.click("button.big")
        await staff.wait_for_url("**/staff/invitations/*")
        await expect(staff.locator("table tbody tr")).to_have_count(1)
        await fits(staff, staff.url)
        await screenshot(staff, "phone-invitation")

        await staff.goto("/staff")
        await expect(staff.locator("#queue-body tr")).to_have_count(1)
        await fits(staff, "/staff")
        claim = staff.locator("#queue-body button.claim")
        box = await claim.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 360  # the claim button is on the screen
        await screenshot(staff, "phone-queue")
        for path in ("/staff/patients", "/staff/patients?q=nguyen", "/staff/patients/new", "/staff/patients/1",
                     "/staff/patients/1/edit", "/staff/schedule", "/staff/outbox"):
            await staff.goto(path)
            await fits(staff, path)
        await expect(staff.locator("table.outbox tbody tr")).not_to_have_count(0)
        await screenshot(staff, "phone-outbox")

        # The patient's pages and the doctor's call page.
        for step in ("device", "consent", "checkin"):
            if step == "device":
                await patient.goto(await link_for(running_app, 1))
            else:
                await patient.click("#device-ok" if step == "consent" else "#consent-ok")
                if step == "consent":
                    await patient.check("#consent-box")
            await expect(patient.locator(f"#step-{step}")).to_be_visible()
            await fits(patient, f"patient {step}")
        await patient.goto(waiting_link)
        await expect(patient.locator("#step-waiting")).to_be_visible()
        await fits(patient, "patient waiting room")
        await staff.goto("/staff")
        await staff.click("#claim-next")
        await staff.wait_for_url("**/staff/c/*")
        await expect(staff.locator(".checkin-answers")).to_be_visible()
        await fits(staff, "call page")
        await screenshot(staff, "phone-call")
        await expect(patient.locator("#doctor-call")).to_be_visible()
        await fits(patient, "patient call")
        await screenshot(patient, "phone-patient-call")
        staff.once("dialog", lambda dialog: dialog.accept())
        await staff.click("#btn-hangup")
        await expect(staff.locator("#after-call")).to_be_visible()
        await fits(staff, "call page after the call")
        await expect(patient.locator("#step-ended")).to_be_visible()
        await fits(patient, "patient ended")
        await patient.goto("/j/not-a-token")
        await fits(patient, "link error page")
    finally:
        await staff_ctx.close()
        await patient_ctx.close()
