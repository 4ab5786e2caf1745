"""Staff messages about a patient in Chromium: the district specialist sends instructions from a row of the
hypertension worklist; the commune doctor's care-messages page shows them live (no reload), with the unread
count, and so does the menu's count on her queue page; she opens the thread and replies; the specialist's
open thread page shows the reply live."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in

INSTRUCTIONS = "HA 184/112 tại nhà: tăng amlodipin lên 10 mg, đo lại tại trạm sau 1 tuần."
REPLY = "Đã gọi bệnh nhân, hẹn đo lại thứ Hai."


async def test_specialist_sends_from_the_worklist_and_the_commune_doctor_sees_it_live(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    app = running_app
    shots = os.environ.get("DONGHANH_SCREENSHOTS")
    if shots:
        await asyncio.to_thread(Path(shots).mkdir, parents=True, exist_ok=True)
    async with app.pool.acquire() as con:
        pao = await con.fetchval("SELECT id FROM patient WHERE name = 'Giàng A Páo'")
    doctor_ctx, doctor = await new_page(browser, app.url)
    specialist_ctx, specialist = await new_page(browser, app.url)
    try:
        await doctor_signs_in(doctor, "bacsi.lan")
        queue = await doctor_ctx.new_page()  # her queue page, open in another tab
        await queue.goto("/staff")
        await expect(queue.locator("body")).to_have_attribute("data-conn", "open")
        await expect(queue.locator("#nav-threads")).to_have_text("")
        await doctor.goto("/staff/threads")
        await expect(doctor.locator("body")).to_have_attribute("data-conn", "open")
        await expect(doctor.locator("#threads")).to_contain_text("Chưa có tin nhắn nào")

        await doctor_signs_in(specialist, "bs.timmach")
        await specialist.goto("/staff/htn/worklist")
        row = specialist.locator(f"#worklist tr[data-patient='{pao}']")
        button = row.locator("button.message-station")
        await expect(button).to_have_attribute("data-thread-reason", "urgent")
        await button.click()
        dialog = specialist.locator("#thread-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator("#thread-dialog-title")).to_contain_text("Giàng A Páo")
        await specialist.fill("#thread-text", INSTRUCTIONS)
        await specialist.click("#thread-send")
        await expect(specialist.locator("#thread-status")).to_contain_text("Đã gửi tới nhân viên của trạm")
        thread = await specialist.locator("#thread-status").get_attribute("data-thread")
        assert thread
        if shots:
            await specialist.screenshot(path=f"{shots}/thread-dialog.png")

        item = doctor.locator(f"#threads li[data-thread='{thread}']")  # arrived live: no reload
        await expect(item).to_contain_text("Giàng A Páo")
        await expect(item).to_contain_text(INSTRUCTIONS[:40])
        await expect(item).to_have_attribute("data-unread", "1")
        await expect(doctor.locator("#unread")).to_have_text("1 chưa đọc")
        await expect(queue.locator("#nav-threads")).to_have_text("1")
        if shots:
            await doctor.screenshot(path=f"{shots}/threads-inbox.png")

        await specialist.goto(f"/staff/threads/{thread}")
        await expect(specialist.locator("body")).to_have_attribute("data-conn", "open")
        await item.locator("a.thread-link").click()
        await doctor.wait_for_url(f"**/staff/threads/{thread}")
        await expect(doctor.locator("#messages")).to_contain_text(INSTRUCTIONS)
        await doctor.fill("#reply", REPLY)
        await doctor.click("#reply-form button[type=submit]")
        await expect(doctor.locator("#messages li")).to_have_count(2)

        await expect(specialist.locator("#messages li")).to_have_count(2)  # the reply, live
        await expect(specialist.locator("#messages")).to_contain_text(REPLY)
        if shots:
            await specialist.screenshot(path=f"{shots}/thread.png")
        await doctor.goto("/staff/threads")
        await expect(doctor.locator(f"#threads li[data-thread='{thread}']")).to_have_attribute("data-unread", "0")
    finally:
        await doctor_ctx.close()
        await specialist_ctx.close()


async def test_tb_specialist_messages_the_station_and_signs_a_review_from_the_worklist(
        running_app: RunningApp, browser) -> None:  # type: ignore[no-untyped-def]
    app = running_app
    async with app.pool.acquire() as con:
        chu = await con.fetchval("SELECT id FROM patient WHERE name = 'Lý A Chư'")
        case = await con.fetchval("SELECT id FROM tb_case WHERE patient_id = $1", chu)
    doctor_ctx, doctor = await new_page(browser, app.url)
    specialist_ctx, specialist = await new_page(browser, app.url)
    try:
        await doctor_signs_in(doctor, "bacsi.lan")
        await doctor.goto("/staff/threads")
        await expect(doctor.locator("body")).to_have_attribute("data-conn", "open")

        await doctor_signs_in(specialist, "bs.lao")
        await specialist.goto("/staff/tb")
        row = specialist.locator(f"tr[data-case='{case}']")
        await row.locator("button.message-station").click()
        await specialist.fill("#thread-text", "Bỏ 3 liều liên tiếp: trạm gọi bệnh nhân hôm nay, chuyển sang DOT video.")
        await specialist.click("#thread-send")
        await expect(specialist.locator("#thread-status")).to_contain_text("Đã gửi")
        item = doctor.locator("#threads li.thread-item").first
        await expect(item).to_contain_text("Lao")
        await expect(item).to_contain_text("chuyển sang DOT video")
        await specialist.click("#thread-close")

        await row.get_by_role("link", name="Xem xét").click()
        await specialist.wait_for_url(f"**/staff/tb/cases/{case}#review-card")
        await specialist.fill("#review", "Tuần 7: nhắc tuân thủ; xét nghiệm đờm cuối tháng 2 đúng hẹn.")
        await specialist.click("#review-form button[type=submit]")
        await expect(specialist.locator("#done")).to_be_visible()
        await specialist.goto(f"/staff/patients/{chu}")
        await expect(specialist.locator("body")).to_contain_text("Tuần 7: nhắc tuân thủ")
        await expect(specialist.locator("#care-messages")).to_contain_text("chuyển sang DOT video")
    finally:
        await doctor_ctx.close()
        await specialist_ctx.close()
