"""The written path of a specialist escalation in three Chromium pages: the commune doctor asks; the
district cardiologist gets the offer live and declines; the province cardiologist gets it, accepts,
attaches a photo and signs the opinion; the commune doctor's page shows the answer and opens the photo."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from playwright.async_api import expect

from tests.conftest import RunningApp
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in


async def test_decline_then_second_specialist_answers_with_an_attachment_the_requester_opens_it(
        running_app: RunningApp, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with running_app.pool.acquire() as con:
        patient = await con.fetchval("SELECT id FROM patient WHERE name = 'Vàng A Dế'")
    photo = tmp_path / "ton-thuong-da.png"
    cv2.imwrite(str(photo), np.full((120, 160, 3), 90, np.uint8))
    pages = {}
    contexts = []
    for who in ("bacsi.lan", "bs.timmach", "bs.timmach.tinh"):
        context, page = await new_page(browser, running_app.url)
        contexts.append(context)
        await doctor_signs_in(page, who)
        pages[who] = page
    try:
        lan, district, province = pages["bacsi.lan"], pages["bs.timmach"], pages["bs.timmach.tinh"]
        for p in (district, province):
            await p.goto("/staff/escalations")
            await expect(p.locator("#conn")).to_have_text(re.compile("Đã kết nối|Connected"))

        await lan.goto(f"/staff/patients/{patient}/ask")
        await lan.select_option("#specialty", "cardiology")
        await lan.fill("#question", "Mạch nhanh 130 lần/phút khi nghỉ, cần làm gì thêm?")
        await lan.check("#consent")
        await lan.click("#ask-form button[type=submit]")
        await lan.wait_for_url(re.compile(r"/staff/escalations/[0-9a-f-]{36}$"))
        eid = lan.url.rsplit("/", 1)[-1]

        # The district cardiologist's inbox shows the offer live; they decline with a reason.
        await district.locator(f"#offered a[href='/staff/escalations/{eid}']").click()
        await expect(district.locator("#offer-actions")).to_be_visible()
        await district.fill("#decline-reason", "Đang trực phòng mổ")
        await district.click("#decline")
        await expect(district.locator("#offer-actions")).to_be_hidden()

        # The province cardiologist gets it next, accepts, attaches a photo, signs.
        await province.locator(f"#offered a[href='/staff/escalations/{eid}']").click()
        await province.click("#accept")
        await expect(province.locator("#opinion-form")).to_be_visible()
        await province.set_input_files("#attach", str(photo))
        await expect(province.locator("#attachments li")).to_have_count(1)
        await province.fill("#assessment", "Nhịp nhanh xoang, nghĩ do sốt và mất nước")
        await province.fill("#recommendation", "Bù dịch, hạ sốt, làm điện tim lại sau 2 giờ")
        await province.check("#avoided-visit")
        await province.click("#sign-opinion")
        await expect(province.locator("#opinion-signed")).to_be_visible()

        # The commune doctor's page, open all along, shows the answer and the timeline; they open the photo.
        await expect(lan.locator("#status")).to_have_attribute("data-status", "answered")
        await expect(lan.locator("#opinion-signed")).to_contain_text("Bù dịch")
        kinds = await lan.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.kind)")
        assert kinds == ["requested", "offered", "declined", "rerouted", "accepted", "answered"]
        await lan.reload()
        link = lan.locator("#attachments li a")
        await expect(link).to_have_text("ton-thuong-da.png")
        async with lan.expect_popup() as popup_info:
            await link.click()
        popup = await popup_info.value
        await popup.wait_for_load_state()
        width = await popup.evaluate("() => document.images.length ? document.images[0].naturalWidth : 0")
        assert width == 160  # the original photo, decoded by the browser
    finally:
        for context in contexts:
            await context.close()
