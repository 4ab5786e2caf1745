"""Invitation pages over HTTP on the real app: invite, link windows in the patient flow, the outbox and
the doctor's day with "Start call"."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import aiohttp
import pytest
from yarl import URL

from care.appointments import FACILITY_TZ
from db import invitations as invitations_db
from tests.conftest import RunningApp
from tests.integration.test_http import consent, csrf_cookie, jar_session, post_checkin, sign_in
from web.auth import join_url
from web.keys import clock_key, settings_key, signer_key
from web.scheduler import scheduler_key

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

PATIENT, OTHER_PATIENT = 1, 2  # demo patients of the commune station, with phones 0912345601/02


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar_session() as session:
        yield session


async def staff_id(app: RunningApp, username: str) -> int:
    async with app.pool.acquire() as con:
        value: int = await con.fetchval("SELECT id FROM staff WHERE username = $1", username)
    return value


def local_form(at: datetime) -> tuple[str, str]:
    local = at.astimezone(FACILITY_TZ)
    return local.date().isoformat(), local.strftime("%H:%M")


def slot_in(app: RunningApp, delta: timedelta) -> datetime:
    return (app.app[clock_key].now() + delta).replace(second=0, microsecond=0)


async def invite(http: aiohttp.ClientSession, app: RunningApp, patient_id: int = PATIENT,
                 **fields: str) -> aiohttp.ClientResponse:
    data = {"_csrf": csrf_cookie(http, app), "kind": "walk_in", "lang": "vi", "phone": "0912 345 601",
            "send": "1", **fields}
    return await http.post(f"{app.url}/staff/patients/{patient_id}/invite", data=data, allow_redirects=False)


async def appointment(http: aiohttp.ClientSession, app: RunningApp, slot: datetime, patient_id: int = PATIENT,
                      doctor: int | None = None) -> uuid.UUID:
    day, at = local_form(slot)
    r = await invite(http, app, patient_id, kind="appointment", date=day, time=at,
                     doctor=str(doctor or await staff_id(app, "bacsi.lan")))
    assert r.status == 303, await r.text()
    return uuid.UUID(r.headers["Location"].rsplit("/", 1)[1])


async def token_of(app: RunningApp, invitation_id: uuid.UUID) -> str:
    async with app.pool.acquire() as con:
        inv = await invitations_db.get(con, invitation_id)
    assert inv is not None
    url = join_url(app.app[signer_key], app.app[settings_key].base_url)(inv.link_jti, inv.link_expires_at)
    return url.rsplit("/j/", 1)[1]


async def invitation_count(app: RunningApp) -> int:
    async with app.pool.acquire() as con:
        count: int = await con.fetchval("SELECT count(*) FROM invitation")
    return count


async def test_invite_form_lists_the_doctors_and_the_patients_phone(running_app: RunningApp,
                                                                    http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app, "yta.hoa")
    r = await http.get(f"{running_app.url}/staff/patients/{PATIENT}/invite")
    page = await r.text()
    assert r.status == 200
    assert "Mời Giàng A Páo khám từ xa" in page
    assert "BS. Nguyễn Thị Lan" in page and "BS.CKI Trần Quốc Hùng" in page  # the commune's and above
    assert 'value="0912 345 601"' in page and 'name="_csrf"' in page


async def test_a_walk_in_invitation_shows_link_qr_and_ready_sms(running_app: RunningApp,
                                                                http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    r = await invite(http, running_app)
    assert r.status == 303 and r.headers["Location"].startswith("/staff/invitations/")
    r = await http.get(running_app.url + r.headers["Location"])
    page = await r.text()
    assert r.status == 200
    invitation_id = uuid.UUID(r.url.path.rsplit("/", 1)[1])
    async with running_app.pool.acquire() as con:
        code = await con.fetchval("SELECT s.code FROM short_link s JOIN invitation i ON i.link_jti = s.link_jti "
                                  "WHERE i.id = $1", invitation_id)
    base = running_app.app[settings_key].base_url
    assert f'value="{base}/s/{code}"' in page  # the short link, as the SMS carries it
    assert '<svg' in page and 'class="segno"' in page  # the QR code, inline
    assert (f"TYT xa Mu Cang Chai: moi kham benh qua video. Link: {base}/s/{code} "
            "Hoi: 0216 3878 210") in page
    assert "1 tin SMS" in page and "GSM-7" in page  # one segment, with the station's number
    assert "Sao chép link" in page and "Gửi lại qua SMS" in page  # sent once already
    assert "0••• ••• 601" in page and "912345601" not in page


async def test_bad_input_shows_errors_next_to_the_fields_and_saves_nothing(running_app: RunningApp,
                                                                           http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    yesterday, at = local_form(running_app.app[clock_key].now() - timedelta(days=1))
    r = await invite(http, running_app, kind="appointment", phone="12345", date=yesterday, time=at)
    page = await r.text()
    assert r.status == 400
    assert "Hãy nhập số di động Việt Nam" in page and "Thời gian này đã qua" in page
    assert "Hãy chọn bác sĩ hoặc dịch vụ." in page
    assert 'aria-invalid="true"' in page and 'value="12345"' in page  # what was typed stays in the form
    r = await invite(http, running_app, kind="appointment", date="25/11/2026", time="14:30",
                     service="general")
    assert r.status == 400 and "Hãy nhập ngày và giờ." in await r.text()
    r = await invite(http, running_app, kind="appointment", date=yesterday, time=at, service="surgery")
    assert r.status == 400 and "Hãy chọn dịch vụ trong danh sách." in await r.text()
    assert await invitation_count(running_app) == 0


async def test_posting_without_the_csrf_token_is_refused(running_app: RunningApp,
                                                         http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    r = await http.post(f"{running_app.url}/staff/patients/{PATIENT}/invite", data={"kind": "walk_in"},
                        allow_redirects=False)
    assert r.status == 403
    assert await invitation_count(running_app) == 0


async def test_double_booking_over_http_is_refused(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    slot = slot_in(running_app, timedelta(days=2))
    await appointment(http, running_app, slot)
    day, at = local_form(slot)
    r = await invite(http, running_app, OTHER_PATIENT, kind="appointment", date=day, time=at,
                     doctor=str(await staff_id(running_app, "bacsi.lan")))
    assert r.status == 409
    assert "Bác sĩ hoặc dịch vụ này đã có lịch hẹn vào giờ này." in await r.text()
    assert await invitation_count(running_app) == 1


async def test_too_early_then_open_then_check_in_marks_the_invitation_used(running_app: RunningApp,
                                                                            http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    slot = slot_in(running_app, timedelta(days=1))
    invitation_id = await appointment(http, running_app, slot)
    token = await token_of(running_app, invitation_id)
    async with jar_session() as patient:
        r = await patient.get(f"{running_app.url}/j/{token}")
        page = await r.text()
        assert r.status == 200 and 'data-code="too_early"' in page
        assert "Chưa đến giờ hẹn khám của bạn" in page
        opens = (slot - timedelta(minutes=30)).astimezone(FACILITY_TZ)
        assert f"lúc {slot.astimezone(FACILITY_TZ):%H:%M} ngày {slot.astimezone(FACILITY_TZ):%d/%m/%Y}" in page
        assert f"mở từ {opens:%H:%M}" in page and "BS. Nguyễn Thị Lan" in page
        r = await patient.get(f"{running_app.url}/j/{token}?lang=en")
        assert "It is not time for your appointment yet" in await r.text()
        await consent(patient, running_app, token)  # consent may be given early; check-in may not
        r = await post_checkin(patient, running_app, token, {"symptoms": ["cough"]})
        assert r.status == 409 and (await r.json())["error"]["code"] == "too_early"

        clock = running_app.app[clock_key]
        clock.advance(slot - timedelta(minutes=30) - clock.now() - timedelta(seconds=1))
        r = await patient.get(f"{running_app.url}/j/{token}")
        assert 'data-code="too_early"' in await r.text()  # one second before it opens
        clock.advance(timedelta(seconds=1))
        r = await patient.get(f"{running_app.url}/j/{token}")
        page = await r.text()
        assert r.status == 200 and 'data-step="device"' in page and "too_early" not in page
        r = await post_checkin(patient, running_app, token, {"symptoms": ["cough"]})
        assert r.status == 200, await r.text()
    async with running_app.pool.acquire() as con:
        inv = await invitations_db.get(con, invitation_id)
    assert inv is not None and inv.status == "used" and inv.used_at is not None
    # Once checked in, the patient stays in the waiting room even if the doctor runs late.
    running_app.app[clock_key].advance(timedelta(hours=3))
    async with jar_session() as patient:
        r = await patient.get(f"{running_app.url}/j/{token}")
        assert r.status == 200 and 'data-step="waiting"' in await r.text()


async def test_too_late_page_and_check_in_refused(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    slot = slot_in(running_app, timedelta(hours=2))
    token = await token_of(running_app, await appointment(http, running_app, slot, OTHER_PATIENT))
    clock = running_app.app[clock_key]
    clock.advance(slot + timedelta(minutes=60) - clock.now() - timedelta(seconds=1))
    async with jar_session() as patient:
        r = await patient.get(f"{running_app.url}/j/{token}")
        assert r.status == 200 and 'data-step="device"' in await r.text()  # the last second of the window
        await consent(patient, running_app, token)
        clock.advance(timedelta(seconds=1))
        r = await patient.get(f"{running_app.url}/j/{token}")
        page = await r.text()
        assert r.status == 410 and 'data-code="too_late"' in page
        assert "Đã quá giờ hẹn khám này" in page and "Trạm Y tế xã Mù Cang Chải" in page
        r = await post_checkin(patient, running_app, token, {"symptoms": ["cough"]})
        assert r.status == 410 and (await r.json())["error"]["code"] == "too_late"


async def test_revoke_and_reschedule_over_http(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    slot = slot_in(running_app, timedelta(days=2))
    first = await appointment(http, running_app, slot)
    old_token = await token_of(running_app, first)
    day, at = local_form(slot + timedelta(hours=1))
    r = await http.post(f"{running_app.url}/staff/invitations/{first}/reschedule", allow_redirects=False,
                        data={"_csrf": csrf_cookie(http, running_app), "date": day, "time": at,
                              "doctor": str(await staff_id(running_app, "bacsi.lan"))})
    assert r.status == 303
    moved = uuid.UUID(r.headers["Location"].rsplit("/", 1)[1])
    assert moved != first
    r = await http.get(f"{running_app.url}/j/{old_token}")
    assert r.status == 410 and 'data-code="link_revoked"' in await r.text()
    page = await (await http.get(f"{running_app.url}/staff/invitations/{moved}")).text()
    assert "Giờ hẹn mới" in page and "doi hen sang" in page
    page = await (await http.get(f"{running_app.url}/staff/invitations/{first}")).text()
    assert "đã dời sang giờ khác" in page and f"/staff/invitations/{moved}" in page

    new_token = await token_of(running_app, moved)
    r = await http.post(f"{running_app.url}/staff/invitations/{moved}/revoke", allow_redirects=False,
                        data={"_csrf": csrf_cookie(http, running_app)})
    assert r.status == 303
    r = await http.get(f"{running_app.url}/j/{new_token}")
    assert r.status == 410 and 'data-code="link_revoked"' in await r.text()
    r = await http.post(f"{running_app.url}/staff/invitations/{moved}/revoke", allow_redirects=False,
                        data={"_csrf": csrf_cookie(http, running_app)})
    assert r.status == 409 and "Lời mời này không còn hiệu lực." in await r.text()


async def test_outbox_lists_what_was_sent_and_filters_by_status(running_app: RunningApp,
                                                                http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    r = await http.get(f"{running_app.url}/staff/outbox")
    assert "Chưa có tin nhắn nào." in await r.text()
    await invite(http, running_app)
    await running_app.app[scheduler_key].tick()
    r = await http.get(f"{running_app.url}/staff/outbox")
    page = await r.text()
    assert r.status == 200
    assert "Chế độ trình diễn" in page
    assert 'data-kind="invitation" data-status="sent"' in page and "đã gửi" in page
    assert "0••• ••• 601" in page and "moi kham benh qua video. Link: http" in page
    r = await http.get(f"{running_app.url}/staff/outbox?status=failed")
    assert "Không có tin nhắn nào ở trạng thái này." in await r.text()


async def test_schedule_marks_the_day_and_start_call_claims_the_patient(running_app: RunningApp,
                                                                         http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    slot = slot_in(running_app, timedelta(hours=3))
    invitation_id = await appointment(http, running_app, slot)
    late_slot = slot_in(running_app, timedelta(hours=2, minutes=30))
    await appointment(http, running_app, late_slot, OTHER_PATIENT)
    day = slot.astimezone(FACILITY_TZ).date().isoformat()
    page = await (await http.get(f"{running_app.url}/staff/schedule?day={day}")).text()
    assert page.count('data-mark="upcoming"') >= 1 and "Bắt đầu cuộc gọi" not in page

    clock = running_app.app[clock_key]
    clock.advance(slot - clock.now())  # the slot: the other patient is 30 min late, ours checks in
    token = await token_of(running_app, invitation_id)
    async with jar_session() as patient:
        await consent(patient, running_app, token)
        r = await post_checkin(patient, running_app, token, {"symptoms": ["cough"]})
        assert r.status == 200
        entry = (await r.json())["entry"]
    late_day = late_slot.astimezone(FACILITY_TZ).date().isoformat()
    page = await (await http.get(f"{running_app.url}/staff/schedule?day={day}")).text()
    assert f'data-invitation="{invitation_id}" data-mark="waiting"' in page
    assert "đang ở phòng chờ" in page and "Bắt đầu cuộc gọi" in page and f'value="{entry}"' in page
    if late_day == day:
        assert 'data-mark="late"' in page and "đến muộn" in page

    r = await http.post(f"{running_app.url}/staff/schedule/start", allow_redirects=False,
                        data={"_csrf": csrf_cookie(http, running_app), "entry": entry})
    assert r.status == 303
    consultation = r.headers["Location"].rsplit("/", 1)[1]
    assert r.headers["Location"] == f"/staff/c/{consultation}"
    async with running_app.pool.acquire() as con:
        row = await con.fetchrow("SELECT doctor_id, status FROM consultation WHERE id = $1", uuid.UUID(consultation))
    assert row["status"] == "active" and row["doctor_id"] == await staff_id(running_app, "bacsi.lan")
    page = await (await http.get(f"{running_app.url}/staff/schedule?day={day}")).text()
    assert f'data-invitation="{invitation_id}" data-mark="in_call"' in page
    # The same entry again: already taken, said plainly.
    r = await http.post(f"{running_app.url}/staff/schedule/start", allow_redirects=False,
                        data={"_csrf": csrf_cookie(http, running_app), "entry": entry})
    assert r.status == 409


async def test_staff_pages_need_a_session(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    for path in ("/staff/outbox", "/staff/schedule", f"/staff/patients/{PATIENT}/invite",
                 f"/staff/invitations/{uuid.uuid4()}"):
        r = await http.get(running_app.url + path, allow_redirects=False)
        assert r.status == 303 and URL(r.headers["Location"]).path == "/staff/login", path

