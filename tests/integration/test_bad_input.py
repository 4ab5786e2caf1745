"""Bad input gets a precise 4xx with the usual page or JSON error, never a 500: the cases found by hand
(ids beyond bigint, dates at the calendar's ends, NUL bytes, junk cookies and headers). The property test
over every route is tests/integration/test_no_500.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from db import staff as staff_db
from tests.conftest import RunningApp
from tests.integration.conftest import Factory
from tests.integration.wsclient import WsClient
from web.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, issue_link
from web.keys import signer_key
from web.patient_routes import CONSENT_VERSION

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

HUGE = "99999999999999999999"  # beyond PostgreSQL's bigint


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def staff_headers(app: RunningApp, username: str = "bacsi.lan") -> dict[str, str]:
    """A signed-in staff member's cookies and CSRF header, opened straight in the database (no scrypt)."""
    async with app.pool.acquire() as con:
        staff_id = await con.fetchval("SELECT id FROM staff WHERE username = $1", username)
        token, csrf = await staff_db.open_session(con, staff_id, timedelta(hours=1))
    return {"Cookie": f"{SESSION_COOKIE}={token}; {CSRF_COOKIE}={csrf}", CSRF_HEADER: csrf}


async def patient_headers(app: RunningApp, patient_id: int = 1) -> dict[str, str]:
    async with app.pool.acquire() as con:
        token, _ = await issue_link(con, app.app[signer_key], patient_id, 3600)
    return {"Authorization": f"Bearer {token}"}


async def claimed_by_lan(app: RunningApp, make: Factory) -> Any:
    """An active consultation of the demo doctor bacsi.lan with a new patient of her station."""
    async with app.pool.acquire() as con:
        doctor, facility = await con.fetchrow("SELECT id, facility_id FROM staff WHERE username = 'bacsi.lan'")
    return await make.claimed(doctor, facility)


def url(app: RunningApp, path_and_query: str) -> URL:
    return URL(app.url + path_and_query, encoded=True)


async def assert_refused_page(r: aiohttp.ClientResponse, status: int) -> str:
    body = await r.text()
    assert r.status == status, body[:500]
    assert r.content_type == "text/html"
    assert "Traceback" not in body and "internal error" not in body
    return body


async def assert_refused_json(r: aiohttp.ClientResponse, status: int, code: str,
                              field: str | None = None) -> dict[str, Any]:
    body = await r.text()
    assert r.status == status, body[:500]
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["code"] == code
    if field is not None:
        assert error.get("field") == field
    return error


@pytest.mark.parametrize("path", [
    f"/staff/patients/{HUGE}", f"/staff/patients/{HUGE}/invite", f"/staff/patients/{HUGE}/edit",
    "/staff/patients/9223372036854775808", "/staff/patients/0", "/staff/patients/-1/invite",
    "/staff/patients/1_0/invite", "/staff/patients/%D9%A1/invite",
])
async def test_patient_ids_beyond_bigint_or_malformed_are_not_found(running_app: RunningApp,
                                                                    http: aiohttp.ClientSession, path: str) -> None:
    headers = await staff_headers(running_app)
    r = await http.get(url(running_app, path), headers=headers, allow_redirects=False)
    await assert_refused_page(r, 404)


async def test_posting_to_a_patient_id_beyond_bigint_is_not_found(running_app: RunningApp,
                                                                  http: aiohttp.ClientSession) -> None:
    headers = await staff_headers(running_app)
    for action in ("invite", "edit", "merge"):
        r = await http.post(url(running_app, f"/staff/patients/{HUGE}/{action}"), headers=headers,
                            data={"other": "2"}, allow_redirects=False)
        await assert_refused_page(r, 404)


async def test_merging_with_an_id_beyond_bigint_says_no_such_record(running_app: RunningApp,
                                                                   http: aiohttp.ClientSession) -> None:
    headers = await staff_headers(running_app)
    for other in (HUGE, "١٢", "-3"):
        r = await http.post(url(running_app, "/staff/patients/1/merge"), headers=headers, data={"other": other},
                            allow_redirects=False)
        await assert_refused_page(r, 404)


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2026-02-30", "tomorrow", "%00"])
async def test_schedule_day_out_of_range_or_malformed_is_refused(running_app: RunningApp,
                                                                 http: aiohttp.ClientSession, day: str) -> None:
    headers = await staff_headers(running_app)
    r = await http.get(url(running_app, f"/staff/schedule?day={day}"), headers=headers, allow_redirects=False)
    await assert_refused_page(r, 400)


async def test_schedule_refusal_is_translated(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    headers = await staff_headers(running_app)
    vi = await assert_refused_page(await http.get(url(running_app, "/staff/schedule?day=9999-12-31"),
                                                  headers=headers), 400)
    en = await assert_refused_page(await http.get(url(running_app, "/staff/schedule?day=9999-12-31&lang=en"),
                                                  headers=headers), 400)
    assert "The date is not valid" in en
    assert "The date is not valid" not in vi and "Ngày" in vi


@pytest.mark.parametrize("query", ["%00", "ab%00c", "%01%02", "%FF%FE", "%ED%A0%80"])
async def test_patient_search_with_control_bytes_answers(running_app: RunningApp, http: aiohttp.ClientSession,
                                                         query: str) -> None:
    headers = await staff_headers(running_app)
    r = await http.get(url(running_app, f"/staff/patients?q={query}"), headers=headers)
    assert r.status == 200, (await r.text())[:300]
    r = await http.get(url(running_app, f"/api/patients?q={query}"), headers=headers)
    assert r.status == 200, (await r.text())[:300]


async def test_search_still_finds_a_patient_around_a_nul_byte(running_app: RunningApp,
                                                              http: aiohttp.ClientSession) -> None:
    headers = await staff_headers(running_app)
    r = await http.get(url(running_app, "/api/patients?q=Gi%00%C3%A0ng"), headers=headers)
    names = [p["name"] for p in (await r.json())["results"]]
    assert "Giàng A Páo" in names


async def test_nul_in_a_checkin_reason_is_refused_naming_the_field(running_app: RunningApp,
                                                                  http: aiohttp.ClientSession) -> None:
    headers = await patient_headers(running_app)
    r = await http.post(f"{running_app.url}/api/p/consent", json={"version": CONSENT_VERSION}, headers=headers)
    assert r.status == 200
    r = await http.post(f"{running_app.url}/api/p/checkin", json={"reason": "ho\u0000", "symptoms": ["cough"]},
                        headers=headers)
    await assert_refused_json(r, 400, "invalid", "reason")


async def test_nul_in_a_note_draft_is_refused_naming_the_field(running_app: RunningApp, make: Factory,
                                                              http: aiohttp.ClientSession) -> None:
    claim = await claimed_by_lan(running_app, make)
    headers = await staff_headers(running_app)
    note = {"subjective": "ok", "plan": "uống thuốc\u0000"}
    r = await http.put(f"{running_app.url}/api/c/{claim.consultation_id}/note/draft",
                       json={"base_version": 0, "note": note}, headers=headers)
    await assert_refused_json(r, 400, "invalid", "note.plan")
    r = await http.post(f"{running_app.url}/api/c/{claim.consultation_id}/note/sign",
                        json={"expected_version": 0, "note": note}, headers=headers)
    await assert_refused_json(r, 400, "invalid", "note.plan")


async def test_note_versions_beyond_the_database_integer_are_refused(running_app: RunningApp, make: Factory,
                                                                     http: aiohttp.ClientSession) -> None:
    claim = await claimed_by_lan(running_app, make)
    headers = await staff_headers(running_app)
    for body, kind in (({"base_version": 2**40, "note": {}}, "draft"),
                       ({"expected_version": 2**63 + 1, "note": {}}, "sign")):
        method = http.put if kind == "draft" else http.post
        r = await method(f"{running_app.url}/api/c/{claim.consultation_id}/note/{kind}", json=body, headers=headers)
        assert r.status in (400, 409), await r.text()


async def test_nul_in_registration_form_is_refused_naming_the_field(running_app: RunningApp,
                                                                   http: aiohttp.ClientSession) -> None:
    headers = await staff_headers(running_app)
    r = await http.post(f"{running_app.url}/staff/patients/new", headers=headers, allow_redirects=False,
                        data={"name": "Thào Mí\u0000 Sử", "sex": "male", "birth_year": "1980",
                              "commune_code": "04456"})
    body = await assert_refused_page(r, 400)
    assert "“name”" in body
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM patient WHERE name LIKE 'Thào Mí%'") == 0


async def test_nul_in_sign_in_form_is_refused(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/staff/login")
    csrf = r.cookies[CSRF_COOKIE].value
    r = await http.post(f"{running_app.url}/staff/login", allow_redirects=False,
                        headers={"Cookie": f"{CSRF_COOKIE}={csrf}"},
                        data={"username": "bacsi\u0000lan", "password": "x", "_csrf": csrf})
    assert r.status in (400, 401), await r.text()


@pytest.mark.parametrize("content_type,body", [
    ("application/x-www-form-urlencoded", b"name=%FF%FE&_csrf=x"),
    ("application/x-www-form-urlencoded", b"\xff\xfe=\x00"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"a=b"),
    ("multipart/form-data", b"--x\r\n"),
    ("multipart/form-data; boundary=zz", b"garbage"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="a"\r\nContent-Transfer-Encoding: junk\r\n\r\nx\r\n--b--\r\n'),
    ("multipart/form-data; boundary=b", b"--b\r\nnot a header\r\n\r\nx\r\n--b--\r\n"),
])
async def test_malformed_form_bodies_are_refused(running_app: RunningApp, http: aiohttp.ClientSession,
                                                 content_type: str, body: bytes) -> None:
    headers = await staff_headers(running_app)
    for path in ("/staff/patients/new", "/staff/login", "/staff/patients/1/invite", "/staff/logout"):
        r = await http.post(f"{running_app.url}{path}", data=body, allow_redirects=False,
                            headers={**headers, "Content-Type": content_type})
        text = await r.text()
        assert r.status < 500, (path, text[:300])


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer junk"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer ÿÿÿ"},
    {"Authorization": "Basic Zm9vOmJhcg=="}, {"Accept-Language": "xx;q=abc, ,;;"},
    {"Cookie": "dh_session=junk; dh_csrf=ÿÿ; dh_lang=zz"}, {"Cookie": "dh_session=\"unterminated"},
])
async def test_junk_headers_and_cookies_are_refused_not_crashed(running_app: RunningApp,
                                                                http: aiohttp.ClientSession,
                                                                headers: dict[str, str]) -> None:
    for method, path in (("POST", "/api/p/checkin"), ("POST", "/api/p/consent"), ("GET", "/staff"),
                         ("GET", "/api/patients?q=a"), ("POST", "/staff/logout"), ("GET", "/")):
        r = await http.request(method, f"{running_app.url}{path}", allow_redirects=False,
                               headers={**headers, "X-CSRF-Token": "ÿÿ"}, json={})
        text = await r.text()
        assert r.status < 500, (method, path, text[:300])


async def test_chat_with_a_nul_byte_is_an_invalid_message_not_an_internal_error(
        running_app: RunningApp, make: Factory, http: aiohttp.ClientSession) -> None:
    claim = await claimed_by_lan(running_app, make)
    headers = await staff_headers(running_app)
    ws = WsClient(await http.ws_connect(f"{running_app.url}/ws", headers={"Cookie": headers["Cookie"]}))
    try:
        await ws.send(type="hello")
        await ws.expect("welcome")
        await ws.send(type="join", room=str(claim.consultation_id))
        await ws.expect("joined")
        ref = await ws.send(type="chat", room=str(claim.consultation_id), text="xin\u0000chào")
        error = await ws.expect("error", id=ref)
        assert error["code"] == "invalid"
        room = str(claim.consultation_id)
        for bad in ({"type": "hello", "token": "a\u0000b"}, {"type": "ice", "room": room, "candidate": {
                "candidate": "x\u0000"}}, {"type": "chat", "id": "a\u0000", "room": room, "text": "ok"}):
            await ws.send_raw(json.dumps(bad))
            await ws.send(type="ping", id="after")
            await ws.expect("pong", id="after")
            assert not any(m["type"] == "error" and m["code"] == "internal" for m in ws.inbox), ws.inbox
    finally:
        await ws.close()


async def test_a_socket_with_a_junk_session_cookie_is_treated_as_signed_out(running_app: RunningApp,
                                                                           http: aiohttp.ClientSession) -> None:
    for cookie in (f"{SESSION_COOKIE}=ÿÿÿ", f"{SESSION_COOKIE}=\"x", f"{SESSION_COOKIE}={'a' * 5000}"):
        ws = WsClient(await http.ws_connect(f"{running_app.url}/ws", headers={"Cookie": cookie}))
        try:
            ref = await ws.send(type="hello")
            error = await ws.expect("error", id=ref)
            assert error["code"] == "not_authenticated"
        finally:
            await ws.close()
