"""The TB pages say every refusal in the reader's language: a staff form's bad choice, the review's bad
decision, and the patient's page carries each upload error code's text (Vietnamese by default, English on
request), never the server's English message."""

from __future__ import annotations

import json
import re

import aiohttp

from tests.conftest import RunningApp
from tests.integration.conftest import Factory
from tests.integration.test_tb_case_pages import _signed_in
from tests.integration.test_tb_clips import _patient_case


async def test_staff_tb_errors_are_in_vietnamese_and_english(running_app: RunningApp, make: Factory) -> None:
    case_id, _ = await _patient_case(running_app, make)
    patient = await make.patient()
    url = running_app.url
    nurse, csrf = await _signed_in(running_app, make, "nurse")
    try:
        async with nurse.get(f"{url}/staff/patients/{patient}/tb") as r:
            page = await r.text()
        assert r.status == 200 and ">Lao phổi</option>" in page and ">Tái phát</option>" in page
        async with nurse.post(f"{url}/staff/patients/{patient}/tb", data={
                "_csrf": csrf, "regimen": "2HRZE/4HR", "site": "lungs"}) as r:
            assert r.status == 400 and "Hãy chọn trong danh sách." in await r.text()
        case_page = f"{url}/staff/tb/cases/{case_id}"
        async with nurse.get(case_page) as r:
            assert "Giai đoạn tấn công" in await r.text()
        async with nurse.post(f"{case_page}/record/dose", data={"_csrf": csrf, "status": "maybe"}) as r:
            page = await r.text()
        assert r.status == 400 and "Hãy chọn cách uống liều thuốc." in page
        assert "choose how the dose was taken" not in page
        async with nurse.post(f"{case_page}/record/dose?lang=en", data={"_csrf": csrf, "status": "maybe"}) as r:
            assert r.status == 400 and "Choose how the dose was taken." in await r.text()
        async with nurse.post(f"{url}/staff/tb/clips/999999/review?lang=vi",
                              data={"_csrf": csrf, "decision": "confirm"}) as r:
            assert r.status == 404
    finally:
        await nurse.close()


async def test_patient_page_carries_each_upload_error_in_its_language(running_app: RunningApp,
                                                                      make: Factory) -> None:
    _, token = await _patient_case(running_app, make)
    async with aiohttp.ClientSession() as http:
        for lang, expected in (("vi", "Video dài hơn 60 giây. Hãy quay video ngắn hơn."),
                               ("en", "The video is longer than 60 seconds. Record a shorter one.")):
            async with http.get(f"{running_app.url}/tb/{token}?lang={lang}") as r:
                page = await r.text()
            assert r.status == 200
            found = re.search(r'<script type="application/json" id="strings">(.*?)</script>', page, re.S)
            assert found is not None
            strings = json.loads(found.group(1))
            assert strings["error:clip_too_long"] == expected
            assert "error:link_expired" in strings and "error:internal" in strings
