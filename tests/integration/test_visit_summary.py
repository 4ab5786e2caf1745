"""Leaving with a plan, on the real app: the doctor previews and signs a note that shares a summary; the
patient's open page gets it at once (`visit_summary`), the SMS is scheduled in the outbox, and the link
(long or short) shows the summary on reload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest

from care.appointments import FACILITY_TZ
from db import short_links
from tests.conftest import RunningApp
from tests.integration.test_http import (
    PATIENT,
    Staff,
    bearer,
    error_of,
    jar_session,
    new_link,
    post_checkin,
    signed_in,
)
from tests.integration.wsclient import WsClient
from web.keys import clock_key, signer_key
from web.localtime import localtime
from web.patient_routes import CONSENT_VERSION

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

SUMMARY = {"advice": "Ăn nhạt, bớt muối.", "medicines": True, "follow_up": True,
           "warning_signs": ["chest_pain", "severe_headache"], "other_warning": "", "sms": True}


@pytest.fixture
async def lan(running_app: RunningApp) -> AsyncIterator[Staff]:
    staff = await signed_in(running_app, "bacsi.lan")
    yield staff
    await staff.http.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar_session() as session:
        yield session


def note(running_app: RunningApp, **overrides: Any) -> dict[str, Any]:
    # The doctor picks a day in four weeks by the facility's calendar (after 17:00 UTC it is already
    # tomorrow in Vietnam: the UTC date would be a day early).
    follow_up = running_app.app[clock_key].now().astimezone(FACILITY_TZ).date() + timedelta(days=28)
    body: dict[str, Any] = {
        "subjective": "Đau đầu", "assessment": "Tăng huyết áp", "plan": "Amlodipin", "diagnoses": ["I10"],
        "follow_up_on": follow_up.isoformat(),
        "medicines": [{"drug": "Amlodipin", "dose": "5 mg", "how": "1 viên buổi sáng"}], "summary": SUMMARY}
    body.update(overrides)
    return body


async def visit(running_app: RunningApp, http: aiohttp.ClientSession, lan: Staff,
                lang: str = "vi", end: bool = True, patient_id: int = PATIENT) -> tuple[str, WsClient, str]:
    """Patient 1 consents (in `lang`), checks in with their page's socket open, and bacsi.lan takes them and
    ends the call: (token, the patient's socket, the consultation id)."""
    token = await new_link(running_app, patient_id)
    r = await http.post(f"{running_app.url}/api/p/consent?lang={lang}", headers=bearer(token),
                        json={"version": CONSENT_VERSION})
    assert r.status == 200
    assert (await post_checkin(http, running_app, token, {"symptoms": ["headache"]})).status == 200
    patient = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    await patient.send(type="hello", token=token)
    await patient.expect("welcome")
    doctor = WsClient(await lan.http.ws_connect(f"{running_app.url}/ws"))
    await doctor.send(type="hello")
    await doctor.expect("welcome")
    await doctor.send(type="claim_next")
    room = (await doctor.expect("paired"))["room"]
    await patient.expect("paired", room=room)
    if end:
        await doctor.send(type="end", room=room)
        await patient.expect("ended", room=room)
    await doctor.close()
    return token, patient, room


async def test_signing_with_a_summary_reaches_the_open_page_the_outbox_and_the_link(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: Staff) -> None:
    token, patient, room = await visit(running_app, http, lan)
    preview = await lan.post(f"{running_app.url}/api/c/{room}/summary/preview", note(running_app))
    assert preview.status == 200
    shown = await preview.json()
    assert shown["lang"] == "vi" and shown["sms_to"] == "0••• ••• 601"
    assert [s["key"] for s in shown["summary"]["sections"]] == ["advice", "medicines", "follow_up", "warning",
                                                                 "contact"]
    assert shown["sms"]["segments"] <= 3 and shown["sms"]["encoding"] == "gsm7"

    signed = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                            {"expected_version": 0, "note": note(running_app)})
    assert signed.status == 201, await signed.text()
    body = await signed.json()
    assert body["summary_sms"] is True and body["note"]["medicines"][0]["drug"] == "Amlodipin"

    live = await patient.expect("visit_summary", room=room)
    assert live["version"] == 1 and live["doctor"] == "BS. Nguyễn Thị Lan"
    assert live["summary"]["vi"] == shown["summary"]  # exactly what the doctor previewed
    assert live["summary"]["en"]["sections"][1]["lines"] == ["Amlodipin 5 mg: 1 viên buổi sáng"]
    await patient.close()

    async with running_app.pool.acquire() as con:
        sms = await con.fetchrow("SELECT * FROM outbound_message WHERE kind = 'visit_summary'")
        code = await short_links.code_for(con, running_app.app[signer_key].verify(token))
    assert sms is not None and sms["to_phone"] == "+84912345601" and sms["body"] == shown["sms"]["text"]
    assert sms["dedupe_key"] == f"visit_summary:{room}:1"

    for path in (f"/j/{token}", f"/s/{code}"):
        r = await http.get(f"{running_app.url}{path}")
        page = await r.text()
        assert r.status == 200, path
        assert "Tóm tắt buổi khám" in page and "Amlodipin 5 mg: 1 viên buổi sáng" in page
        assert "Đau ngực" in page and "Ăn nhạt, bớt muối." in page
        assert localtime(date.fromisoformat(note(running_app)["follow_up_on"]), "date") in page
    outbox = await (await lan.http.get(f"{running_app.url}/staff/outbox")).text()
    assert "Tóm tắt buổi khám" in outbox  # the message kind, labelled
    history = await (await lan.http.get(f"{running_app.url}/staff/patients/1")).text()
    assert "Amlodipin 5 mg: 1 viên buổi sáng" in history and "đã gửi cho người bệnh: Ăn nhạt" in history


async def test_a_summary_in_english_for_a_patient_who_read_the_page_in_english(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: Staff) -> None:
    token, patient, room = await visit(running_app, http, lan, lang="en")
    signed = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                            {"expected_version": 0, "note": note(running_app)})
    assert signed.status == 201
    await patient.expect("visit_summary", room=room)
    await patient.close()
    async with running_app.pool.acquire() as con:
        body = await con.fetchval("SELECT body FROM outbound_message WHERE kind = 'visit_summary'")
    assert body.startswith("TYT xa Mu Cang Chai: visit summary") and "Chest pain" not in body
    assert "chest pain" in body


async def test_a_note_that_shares_nothing_sends_nothing(running_app: RunningApp, http: aiohttp.ClientSession,
                                                        lan: Staff) -> None:
    token, patient, room = await visit(running_app, http, lan)
    r = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                       {"expected_version": 0, "note": note(running_app, summary=None)})
    assert r.status == 201 and (await r.json())["summary_sms"] is False
    no_sms = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                            {"expected_version": 1, "note": note(running_app, summary={**SUMMARY, "sms": False})})
    assert no_sms.status == 201 and (await no_sms.json())["summary_sms"] is False
    live = await patient.expect("visit_summary", room=room)
    assert live["version"] == 2  # version 1 shared nothing: no message for it
    await patient.close()
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM outbound_message WHERE kind = 'visit_summary'") == 0


async def test_bad_summaries_are_refused_naming_the_field(running_app: RunningApp, http: aiohttp.ClientSession,
                                                          lan: Staff) -> None:
    _, patient, room = await visit(running_app, http, lan)
    await patient.close()
    cases = [
        ({"summary": {**SUMMARY, "warning_signs": ["itchy_feet"]}}, None),
        ({"summary": {**SUMMARY, "advice": "x" * 1001}}, None),
        ({"medicines": [{"drug": "  ", "dose": "5 mg"}]}, "medicines"),
        ({"medicines": [{"drug": "A", "colour": "red"}]}, None),
    ]
    for change, field in cases:
        for path in ("summary/preview", "note/sign"):
            payload = note(running_app, **change)
            r = await lan.post(f"{running_app.url}/api/c/{room}/{path}",
                               payload if path == "summary/preview" else {"expected_version": 0, "note": payload})
            assert r.status == 400, (change, path)
            error = await error_of(r)
            assert error["code"] == "invalid" and (field is None or error["field"] == field), error
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM note_version WHERE consultation_id = $1::uuid", room) == 0


async def test_a_summary_signed_during_the_call_is_on_the_page_after_a_reload(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: Staff) -> None:
    token, patient, room = await visit(running_app, http, lan, end=False)
    await patient.close()
    before = await (await http.get(f"{running_app.url}/j/{token}")).text()
    assert 'data-step="call"' in before and "Amlodipin" not in before
    r = await lan.post(f"{running_app.url}/api/c/{room}/note/sign", {"expected_version": 0, "note": note(running_app)})
    assert r.status == 201
    page = await (await http.get(f"{running_app.url}/j/{token}")).text()
    assert 'data-step="call"' in page  # still in the call
    assert 'aria-live="polite" data-version="1"' in page  # the summary section, shown
    assert "Amlodipin 5 mg: 1 viên buổi sáng" in page and "BS. Nguyễn Thị Lan" in page
