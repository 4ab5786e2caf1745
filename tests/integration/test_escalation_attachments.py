"""Attachments over real HTTP: type by content, size and count limits, unsafe names, only people on the
case, PDFs downloaded as attachments, thumbnails and an enhanced copy beside the original."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from care.attachments import MAX_BYTES
from tests.conftest import RunningApp
from tests.integration.test_escalation_http import _json, _patient, people, province_cardiologist
from tests.integration.test_http import Staff
from web.keys import settings_key

__all__ = ["people", "province_cardiologist"]  # fixtures


def _jpeg(dim: bool = True) -> bytes:
    rng = np.random.default_rng(7)
    image = (rng.integers(0, 60 if dim else 255, (240, 320, 3))).astype(np.uint8)
    ok, out = cv2.imencode(".jpg", image)
    assert ok
    return bytes(out)


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def _upload(staff: Staff, url: str, data: bytes, name: str, status: int = 201) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=name, content_type="application/octet-stream")
    async with staff.http.post(url, data=form, headers=staff.write_headers()) as r:
        body: dict[str, Any] = await r.json()
        assert r.status == status, body
        return body


@pytest.fixture
async def request_id(running_app: RunningApp, people: dict[str, Staff]) -> str:
    asked = await _json(people["bacsi.lan"], "POST", f"{running_app.url}/api/escalations", {
        "patient_id": await _patient(running_app), "specialty": "cardiology", "urgency": "routine",
        "question": "Tổn thương da?", "consent": True}, status=201)
    return str(asked["id"])


async def test_photo_and_pdf_are_stored_hashed_and_served_only_to_people_on_the_case(
        running_app: RunningApp, people: dict[str, Staff], request_id: str) -> None:
    url = f"{running_app.url}/api/escalations/{request_id}/attachments"
    lan = people["bacsi.lan"]
    photo = _jpeg()
    saved = await _upload(lan, url, photo, "da-tay.jpg")
    assert saved["kind"] == "jpeg" and saved["sha256"] == hashlib.sha256(photo).hexdigest()
    pdf = await _upload(lan, url, PDF, "ECG tối qua.pdf")
    async with lan.http.get(f"{running_app.url}{pdf['url']}") as r:
        assert r.status == 200 and await r.read() == PDF
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["Content-Type"] == "application/pdf"
    # The specialist it is offered to sees it; another specialist and a nurse do not.
    async with people["bs.timmach"].http.get(f"{running_app.url}{saved['url']}") as r:
        assert r.status == 200 and await r.read() == photo
    async with people["bs.lao"].http.get(f"{running_app.url}{saved['url']}") as r:
        assert r.status == 404
    async with people["yta.hoa"].http.get(f"{running_app.url}{saved['url']}") as r:
        assert r.status == 403
    async with lan.http.get(f"{running_app.url}{saved['thumbnail_url']}") as r:
        thumb = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert r.status == 200 and max(thumb.shape[:2]) <= 320
    enhanced = await _json(lan, "POST", f"{running_app.url}{saved['url']}/enhance", status=201)
    assert enhanced["enhanced_of"] == saved["id"]
    listed = await _json(lan, "GET", url)
    assert {a["id"] for a in listed["attachments"]} == {saved["id"], pdf["id"], enhanced["id"]}
    async with lan.http.get(f"{running_app.url}{saved['url']}") as r:
        assert await r.read() == photo  # the original is unchanged
    # Nothing stored under anything served statically: the data directory only.
    root = running_app.app[settings_key].data_dir / "escalations"
    assert len(list((root / request_id).glob("*.jpg"))) >= 2


BAD_FILES: dict[str, tuple[Callable[[], bytes], str, str, int]] = {
    "empty": (lambda: b"", "trong.jpg", "empty_file", 400),
    "executable_named_jpg": (lambda: b"MZ\x90\x00" + b"\x00" * 100, "anh.jpg", "unsupported_type", 400),
    "oversize": (lambda: b"\xff\xd8\xff" + b"\x00" * MAX_BYTES, "to.jpg", "file_too_large", 413),
    "path_in_name": (lambda: PDF, "../../etc/passwd.pdf", "bad_file_name", 400),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_bad_files_get_a_precise_error_and_leave_nothing(running_app: RunningApp, people: dict[str, Staff],
                                                               request_id: str, case: str) -> None:
    make_data, name, code, status = BAD_FILES[case]
    url = f"{running_app.url}/api/escalations/{request_id}/attachments"
    refused = await _upload(people["bacsi.lan"], url, make_data(), name, status=status)
    assert refused["error"]["code"] == code
    assert (await _json(people["bacsi.lan"], "GET", url))["attachments"] == []
    root = running_app.app[settings_key].data_dir / "escalations" / request_id
    assert not root.exists() or list(root.iterdir()) == []


async def test_at_most_ten_files_per_request(running_app: RunningApp, people: dict[str, Staff],
                                             request_id: str) -> None:
    url = f"{running_app.url}/api/escalations/{request_id}/attachments"
    for i in range(10):
        await _upload(people["bacsi.lan"], url, PDF, f"trang-{i}.pdf")
    refused = await _upload(people["bacsi.lan"], url, PDF, "trang-11.pdf", status=409)
    assert refused["error"]["code"] == "too_many_files"
