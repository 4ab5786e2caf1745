"""The real application over HTTP (and /ws where the behaviour is a push): pages, patient API, staff API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any

import aiohttp
import pytest
from babel.messages.pofile import read_po
from yarl import URL

from care import icd10
from db import audit
from db import links as links_db
from db import notes as notes_db
from db import queue as queue_db
from db.migrate import available_migrations
from tests.conftest import RunningApp
from tests.integration.wsclient import WsClient
from web import texts
from web.auth import issue_link
from web.keys import signer_key
from web.middleware import CSP
from web.patient_routes import CONSENT_VERSION

pytestmark = pytest.mark.usefixtures("fast_password_hashing")  # demo seeding per test; see conftest

DEMO_PASSWORD = "demo1234"
PATIENT = 1  # Giàng A Páo, commune station, hypertension history
PATIENT_PHONE = "0912345601"


def vietnamese(msgid: str) -> str:
    """The Vietnamese text of a message, straight from the catalog the translators edit."""
    po = resources.files("web").joinpath("translations", "vi", "LC_MESSAGES", "messages.po")
    with po.open("rb") as fh:
        catalog = read_po(fh, locale="vi")
    message = catalog.get(msgid)
    assert message is not None and message.string, f"no Vietnamese translation for {msgid!r}"
    return str(message.string)


def jar_session() -> aiohttp.ClientSession:
    # The app runs on 127.0.0.1: aiohttp's default jar ignores cookies from IP addresses.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar_session() as session:
        yield session


async def new_link(app: RunningApp, patient_id: int = PATIENT) -> str:
    async with app.pool.acquire() as con:
        token, _ = await issue_link(con, app.app[signer_key], patient_id, 3600)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def consent(http: aiohttp.ClientSession, app: RunningApp, token: str) -> None:
    r = await http.post(f"{app.url}/api/p/consent", json={"version": CONSENT_VERSION}, headers=bearer(token))
    assert r.status == 200, await r.text()


async def post_checkin(http: aiohttp.ClientSession, app: RunningApp, token: str,
                       body: dict[str, Any]) -> aiohttp.ClientResponse:
    return await http.post(f"{app.url}/api/p/checkin", json=body, headers=bearer(token))


async def checked_in(http: aiohttp.ClientSession, app: RunningApp,
                     symptoms: tuple[str, ...] = ("cough",)) -> str:
    """Patient 1, with a new link, consented and checked in; the queue entry id."""
    token = await new_link(app)
    await consent(http, app, token)
    r = await post_checkin(http, app, token, {"symptoms": list(symptoms)})
    assert r.status == 200, await r.text()
    entry: str = (await r.json())["entry"]
    return entry


async def queued(app: RunningApp, patient_id: int = PATIENT) -> int:
    async with app.pool.acquire() as con:
        count: int = await con.fetchval("SELECT count(*) FROM queue_entry WHERE patient_id = $1 "
                                        "AND status = 'waiting'", patient_id)
    return count


async def error_of(r: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await r.json()
    error: dict[str, Any] = body["error"]
    return error


# ---- health, link pages, headers ---------------------------------------------------------------------

async def test_healthz_reports_ok_with_the_latest_migration(running_app: RunningApp,
                                                            http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/healthz")
    assert r.status == 200 and r.content_type == "application/json"
    body = await r.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["database"]["migration"] == available_migrations()[-1].version


async def test_unknown_link_is_a_404_page_in_vietnamese(running_app: RunningApp,
                                                        http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/j/not-a-real-token")
    page = await r.text()
    assert r.status == 404
    assert '<html lang="vi">' in page
    assert vietnamese(texts.LINK_ERRORS["link_invalid"]) in page
    assert texts.LINK_ERRORS["link_invalid"] not in page
    assert 'data-code="link_invalid"' in page


async def test_unknown_link_page_in_english_when_asked_and_the_choice_is_remembered(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/j/not-a-real-token?lang=en")
    page = await r.text()
    assert r.status == 404
    assert texts.LINK_ERRORS["link_invalid"] in page and '<html lang="en">' in page
    assert r.cookies["dh_lang"].value == "en"
    r = await http.get(f"{running_app.url}/j/not-a-real-token")  # the cookie, no query
    assert texts.LINK_ERRORS["link_invalid"] in await r.text()
    r = await http.get(f"{running_app.url}/j/not-a-real-token?lang=xx")  # unknown language: ignored
    assert texts.LINK_ERRORS["link_invalid"] in await r.text()


@pytest.mark.parametrize("code", ["link_expired", "link_revoked", "link_finished"])
async def test_unusable_link_is_a_410_page_saying_why(running_app: RunningApp, http: aiohttp.ClientSession,
                                                      code: str) -> None:
    token = await new_link(running_app)
    jti = running_app.app[signer_key].verify(token)
    async with running_app.pool.acquire() as con:
        if code == "link_expired":
            await con.execute("UPDATE join_link SET expires_at = now() - interval '1 second' "
                              "WHERE jti = $1", jti)
        elif code == "link_revoked":
            await links_db.revoke(con, jti)
        else:
            await links_db.mark_finished(con, jti)
    r = await http.get(f"{running_app.url}/j/{token}")
    page = await r.text()
    assert r.status == 410
    assert vietnamese(texts.LINK_ERRORS[code]) in page
    assert f'data-code="{code}"' in page


async def test_valid_link_opens_the_device_check_without_the_patients_phone(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    r = await http.get(f"{running_app.url}/j/{token}")
    page = await r.text()
    assert r.status == 200
    assert 'data-step="device"' in page and 'data-consented="false"' in page
    assert f'data-consent-version="{CONSENT_VERSION}"' in page
    assert PATIENT_PHONE not in page


async def test_link_page_after_check_in_opens_the_waiting_room(running_app: RunningApp,
                                                               http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    await consent(http, running_app, token)
    r = await post_checkin(http, running_app, token, {"symptoms": ["cough"]})
    assert r.status == 200
    page = await (await http.get(f"{running_app.url}/j/{token}")).text()
    assert 'data-step="waiting"' in page and 'data-consented="true"' in page


async def test_every_response_carries_the_security_headers(running_app: RunningApp,
                                                           http: aiohttp.ClientSession,
                                                           subtests: pytest.Subtests) -> None:
    assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
    expected_csp = CSP.format(connect=f"'self' {running_app.url.replace('http://', 'ws://')}")
    token = await new_link(running_app)
    paths = (f"/j/{token}", "/j/not-a-real-token", "/staff/login", "/staff", "/healthz", "/api/icd10?q=I10")
    for path in paths:
        with subtests.test(path=path):
            r = await http.get(f"{running_app.url}{path}", allow_redirects=False)
            assert r.headers["Content-Security-Policy"] == expected_csp
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Cache-Control"] == "no-store"


# ---- patient API ---------------------------------------------------------------------------------------

async def test_check_in_before_consent_is_refused(running_app: RunningApp,
                                                  http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    r = await post_checkin(http, running_app, token, {"symptoms": ["cough"]})
    assert r.status == 409
    assert (await error_of(r))["code"] == "consent_required"
    assert await queued(running_app) == 0


async def test_consent_to_an_old_text_version_is_refused(running_app: RunningApp,
                                                         http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    r = await http.post(f"{running_app.url}/api/p/consent", json={"version": "2020-01-v0"},
                        headers=bearer(token))
    assert r.status == 400
    assert (await error_of(r))["field"] == "version"
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM consent") == 0


async def test_consent_is_recorded_with_language_and_audited(running_app: RunningApp,
                                                             http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    r = await http.post(f"{running_app.url}/api/p/consent?lang=en", json={"version": CONSENT_VERSION},
                        headers=bearer(token))
    assert r.status == 200 and (await r.json())["consented"] is True
    jti = running_app.app[signer_key].verify(token)
    async with running_app.pool.acquire() as con:
        row = await con.fetchrow("SELECT patient_id, text_version, lang FROM consent WHERE link_jti = $1",
                                 jti)
        events = await audit.events_for(con, "join_link", jti)
    assert tuple(row) == (PATIENT, CONSENT_VERSION, "en")
    assert [e["action"] for e in events] == ["consent.give"]


async def test_patient_api_without_a_valid_link_is_refused(running_app: RunningApp,
                                                           http: aiohttp.ClientSession,
                                                           subtests: pytest.Subtests) -> None:
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "not_authenticated"),
        ({"Authorization": "Basic abc"}, 401, "not_authenticated"),
        ({"Authorization": "Bearer not.a.jwt"}, 404, "link_invalid"),
        ({"Authorization": "Bearer " + "x" * 2100}, 401, "not_authenticated"),
    ]
    for headers, status, code in cases:
        with subtests.test(headers=headers):
            for path in ("/api/p/consent", "/api/p/checkin"):
                r = await http.post(f"{running_app.url}{path}", json={"version": CONSENT_VERSION},
                                    headers=headers)
                assert r.status == status
                assert (await error_of(r))["code"] == code


INVALID_CHECK_INS: list[tuple[str, dict[str, Any], str | None]] = [
    ("spo2 too high", {"spo2": 120}, "spo2"),
    ("spo2 too low", {"spo2": 20}, "spo2"),
    ("unknown symptom", {"symptoms": ["cough", "levitation"]}, "symptoms"),
    ("systolic without diastolic", {"systolic": 150}, "diastolic"),
    ("diastolic without systolic", {"diastolic": 90}, "systolic"),
    ("blood pressure swapped", {"systolic": 80, "diastolic": 120}, "systolic"),
    ("negative days ill", {"days_ill": -1}, "days_ill"),
    ("spo2 as text", {"spo2": "97"}, "spo2"),
    ("spo2 as boolean", {"spo2": True}, "spo2"),
    ("symptoms not a list", {"symptoms": "cough"}, "symptoms"),
    ("reason too long", {"reason": "x" * 501}, "reason"),
    ("unknown field", {"symptoms": ["cough"], "favourite_colour": "blue"}, None),
]


async def test_invalid_check_ins_are_refused_naming_the_field_and_nothing_is_queued(
        running_app: RunningApp, http: aiohttp.ClientSession, subtests: pytest.Subtests) -> None:
    token = await new_link(running_app)
    await consent(http, running_app, token)
    for case, body, field in INVALID_CHECK_INS:
        with subtests.test(case):
            r = await post_checkin(http, running_app, token, body)
            assert r.status == 400, await r.text()
            error = await error_of(r)
            assert error["code"] == "invalid"
            assert error.get("field") == field
    assert await queued(running_app) == 0


async def test_malformed_check_in_bodies_are_refused(running_app: RunningApp, http: aiohttp.ClientSession,
                                                     subtests: pytest.Subtests) -> None:
    token = await new_link(running_app)
    await consent(http, running_app, token)
    cases = [(b"{not json", "bad_json"), (b"", "bad_json"), (b'{"symptoms": ["cough"]', "bad_json"),
             (b"[1, 2]", "invalid"), (b"[" * 5000 + b"]" * 5000, "invalid")]
    for raw, code in cases:
        with subtests.test(raw=raw[:20]):
            r = await http.post(f"{running_app.url}/api/p/checkin", data=raw,
                                headers={**bearer(token), "Content-Type": "application/json"})
            assert r.status == 400
            assert (await error_of(r))["code"] == code
    assert await queued(running_app) == 0


async def test_checking_in_twice_keeps_one_entry(running_app: RunningApp,
                                                 http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    await consent(http, running_app, token)
    first = await (await post_checkin(http, running_app, token, {"symptoms": ["cough"]})).json()
    second = await (await post_checkin(http, running_app, token, {"symptoms": ["fever"]})).json()
    assert (first["created"], second["created"]) == (True, False)
    assert first["entry"] == second["entry"]
    assert await queued(running_app) == 1


# ---- staff sign-in -------------------------------------------------------------------------------------

def csrf_cookie(http: aiohttp.ClientSession, app: RunningApp) -> str:
    return http.cookie_jar.filter_cookies(URL(app.url))["dh_csrf"].value


async def sign_in(http: aiohttp.ClientSession, app: RunningApp, username: str = "bacsi.lan",
                  password: str = DEMO_PASSWORD) -> aiohttp.ClientResponse:
    await http.get(f"{app.url}/staff/login")
    return await http.post(f"{app.url}/staff/login", allow_redirects=False, data={
        "username": username, "password": password, "_csrf": csrf_cookie(http, app)})


async def session_count(app: RunningApp) -> int:
    async with app.pool.acquire() as con:
        count: int = await con.fetchval("SELECT count(*) FROM staff_session WHERE revoked_at IS NULL")
    return count


async def test_sign_in_without_csrf_token_is_refused_and_opens_no_session(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await http.post(f"{running_app.url}/staff/login", allow_redirects=False,
                        data={"username": "bacsi.lan", "password": DEMO_PASSWORD})
    assert r.status == 403
    assert "dh_session" not in r.cookies
    await http.get(f"{running_app.url}/staff/login")  # a cookie, but a different token in the form
    r = await http.post(f"{running_app.url}/staff/login", allow_redirects=False,
                        data={"username": "bacsi.lan", "password": DEMO_PASSWORD, "_csrf": "forged"})
    assert r.status == 403 and "dh_session" not in r.cookies
    assert await session_count(running_app) == 0


async def test_wrong_password_shows_the_sign_in_page_again(running_app: RunningApp,
                                                           http: aiohttp.ClientSession) -> None:
    for username, password in (("bacsi.lan", "wrong"), ("nobody.here", DEMO_PASSWORD)):
        r = await sign_in(http, running_app, username, password)
        page = await r.text()
        assert r.status == 401
        assert vietnamese("Wrong username or password.") in page
        assert "dh_session" not in r.cookies
    assert await session_count(running_app) == 0


async def test_good_sign_in_redirects_and_the_session_opens_staff_pages(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await sign_in(http, running_app)
    assert r.status == 303 and r.headers["Location"] == "/staff"
    cookie = r.cookies["dh_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    r = await http.get(f"{running_app.url}/staff", allow_redirects=False)
    assert r.status == 200
    assert "BS. Nguyễn Thị Lan" in await r.text()


async def test_staff_page_without_a_session_redirects_to_sign_in(running_app: RunningApp,
                                                                 http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/staff", allow_redirects=False)
    assert r.status == 303
    assert r.headers["Location"] == "/staff/login?next=/staff"


async def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    await http.get(f"{running_app.url}/staff/login")
    for asked, landed in (("/staff/patients/1", "/staff/patients/1"), ("//evil.example/staff", "/staff"),
                          ("https://evil.example", "/staff")):
        r = await http.post(f"{running_app.url}/staff/login", allow_redirects=False, data={
            "username": "bacsi.lan", "password": DEMO_PASSWORD, "next": asked,
            "_csrf": csrf_cookie(http, running_app)})
        assert r.status == 303 and r.headers["Location"] == landed


async def test_sign_out_ends_the_session(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await sign_in(http, running_app)
    token = r.cookies["dh_session"].value
    r = await http.post(f"{running_app.url}/staff/logout", allow_redirects=False)  # no CSRF token: refused
    assert r.status == 403
    assert (await http.get(f"{running_app.url}/staff", allow_redirects=False)).status == 200

    r = await http.post(f"{running_app.url}/staff/logout", allow_redirects=False,
                        data={"_csrf": csrf_cookie(http, running_app)})
    assert r.status == 303 and r.headers["Location"] == "/staff/login"
    r = await http.get(f"{running_app.url}/staff", allow_redirects=False)
    assert r.status == 303
    # The old cookie is dead on the server, not only forgotten by the browser.
    async with jar_session() as replay:
        r = await replay.get(f"{running_app.url}/staff", allow_redirects=False, cookies={"dh_session": token})
        assert r.status == 303
    assert await session_count(running_app) == 0


# ---- danger signs reach the doctors --------------------------------------------------------------------

@dataclass
class Staff:
    http: aiohttp.ClientSession
    csrf: str
    id: int
    facility_id: int

    def write_headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}

    async def put(self, url: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        return await self.http.put(url, json=body, headers=self.write_headers())

    async def post(self, url: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        return await self.http.post(url, json=body, headers=self.write_headers())


async def signed_in(app: RunningApp, username: str) -> Staff:
    http = jar_session()
    r = await sign_in(http, app, username)
    assert r.status == 303
    async with app.pool.acquire() as con:
        row = await con.fetchrow("SELECT id, facility_id FROM staff WHERE username = $1", username)
    return Staff(http, csrf_cookie(http, app), row["id"], row["facility_id"])


@pytest.fixture
async def lan(running_app: RunningApp) -> AsyncIterator[Staff]:
    staff = await signed_in(running_app, "bacsi.lan")
    yield staff
    await staff.http.close()


@pytest.fixture
async def minh(running_app: RunningApp) -> AsyncIterator[Staff]:
    staff = await signed_in(running_app, "bacsi.minh")
    yield staff
    await staff.http.close()


async def test_danger_sign_check_in_is_an_emergency_and_alerts_doctors_online(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: Staff) -> None:
    doctor = WsClient(await lan.http.ws_connect(f"{running_app.url}/ws"))
    await doctor.send(type="hello")
    await doctor.expect("welcome")
    token = await new_link(running_app)
    await consent(http, running_app, token)

    r = await post_checkin(http, running_app, token, {"reason": "đau ngực", "symptoms": ["chest_pain"]})
    result = await r.json()
    assert r.status == 200
    assert result["emergency"] is True and result["level"] == "NC4" and result["colour"] == "red"
    assert result["danger_signs"] == ["chest_pain"]

    alert = await doctor.expect("alert")
    assert alert["entry"] == result["entry"]
    assert alert["level"] == "NC4" and alert["danger_signs"] == ["chest_pain"]
    assert alert["patient_name"] == "Giàng A Páo"
    listing = await doctor.expect("queue_list", total=1)
    assert listing["entries"][0]["danger_signs"] == ["chest_pain"]
    await doctor.close()


async def test_ordinary_check_in_is_not_an_emergency(running_app: RunningApp,
                                                     http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    await consent(http, running_app, token)
    r = await post_checkin(http, running_app, token,
                           {"symptoms": ["cough"], "spo2": 98, "systolic": 128, "diastolic": 80})
    result = await r.json()
    assert result["emergency"] is False and result["danger_signs"] == []
    assert result["level"] == "NC2"  # patient 1 is 65+ with a symptom


# ---- consult note API ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Consult:
    id: uuid.UUID
    entry_id: uuid.UUID


@pytest.fixture
async def consult(running_app: RunningApp, http: aiohttp.ClientSession, lan: Staff) -> Consult:
    """Patient 1 checked in over HTTP and claimed by bacsi.lan."""
    token = await new_link(running_app)
    await consent(http, running_app, token)
    r = await post_checkin(http, running_app, token, {"symptoms": ["headache"]})
    assert r.status == 200
    async with running_app.pool.acquire() as con:
        claim = await queue_db.claim_next(con, lan.id, lan.facility_id)
    assert claim is not None and claim.patient_id == PATIENT
    return Consult(claim.consultation_id, claim.entry_id)


def note(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subjective": "Đau đầu 2 ngày", "objective": "Tỉnh, tiếp xúc tốt", "assessment": "Tăng huyết áp",
        "plan": "Amlodipin 5 mg", "vitals": {"systolic": 158, "diastolic": 94, "pulse": 80},
        "diagnoses": ["i10"], "follow_up_on": (date.today() + timedelta(days=30)).isoformat()}
    body.update(overrides)
    return body


async def test_draft_saved_is_read_back(running_app: RunningApp, lan: Staff, consult: Consult) -> None:
    url = f"{running_app.url}/api/c/{consult.id}/note"
    r = await lan.put(f"{url}/draft", {"base_version": 0, "note": note()})
    assert r.status == 200, await r.text()
    r = await lan.http.get(url)
    body = await r.json()
    assert body["versions"] == []
    assert body["draft"]["base_version"] == 0
    assert body["draft"]["note"]["subjective"] == "Đau đầu 2 ngày"
    assert body["draft"]["note"]["vitals"]["systolic"] == 158


async def test_signing_an_implausible_note_is_refused_naming_the_field(
        running_app: RunningApp, lan: Staff, consult: Consult, subtests: pytest.Subtests) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("systolic 400", {"vitals": {"systolic": 400, "diastolic": 90}}, "vitals.systolic"),
        ("half a blood pressure", {"vitals": {"systolic": 140}}, "vitals.systolic"),
        ("temperature 47", {"vitals": {"temperature": 47.0}}, "vitals.temperature"),
        ("unknown ICD-10 code", {"diagnoses": ["I10", "ZZ9.9"]}, "diagnoses"),
        ("follow-up in the past", {"follow_up_on": (date.today() - timedelta(days=1)).isoformat()},
         "follow_up_on"),
    ]
    for case, change, field in cases:
        with subtests.test(case):
            r = await lan.post(f"{running_app.url}/api/c/{consult.id}/note/sign",
                               {"expected_version": 0, "note": note(**change)})
            assert r.status == 400
            error = await error_of(r)
            assert (error["code"], error["field"]) == ("invalid", field)
    async with running_app.pool.acquire() as con:
        assert await notes_db.versions(con, consult.id) == []


async def test_signed_note_is_stored_as_version_one(running_app: RunningApp, lan: Staff,
                                                     consult: Consult) -> None:
    url = f"{running_app.url}/api/c/{consult.id}/note"
    await lan.put(f"{url}/draft", {"base_version": 0, "note": note()})
    r = await lan.post(f"{url}/sign", {"expected_version": 0, "note": note()})
    assert r.status == 201, await r.text()
    signed = await r.json()
    assert signed["version"] == 1 and signed["author"] == "BS. Nguyễn Thị Lan"

    async with running_app.pool.acquire() as con:
        stored = await notes_db.versions(con, consult.id)
    assert len(stored) == 1
    content = stored[0].content
    assert (content.subjective, content.objective, content.assessment, content.plan) == (
        "Đau đầu 2 ngày", "Tỉnh, tiếp xúc tốt", "Tăng huyết áp", "Amlodipin 5 mg")
    assert content.vitals == {"systolic": 158, "diastolic": 94, "pulse": 80}
    assert content.diagnoses == ("I10",)  # typed in lower case, stored as the code
    assert content.follow_up_on == date.today() + timedelta(days=30)
    assert stored[0].author_id == lan.id and stored[0].content_sha256 == signed["sha256"]
    assert signed["note"]["diagnoses"] == ["I10"]

    body = await (await lan.http.get(url)).json()
    assert body["draft"] is None and [v["version"] for v in body["versions"]] == [1]


async def test_signing_over_a_newer_version_is_a_conflict(running_app: RunningApp, lan: Staff,
                                                          consult: Consult) -> None:
    url = f"{running_app.url}/api/c/{consult.id}/note/sign"
    r = await lan.post(url, {"expected_version": 0, "note": note()})
    assert r.status == 201
    r = await lan.post(url, {"expected_version": 0, "note": note(plan="khác")})
    assert r.status == 409
    assert (await error_of(r))["code"] == "stale_version"
    r = await lan.post(url, {"expected_version": 1, "note": note(plan="khác")})
    assert r.status == 201 and (await r.json())["version"] == 2


async def test_another_doctor_cannot_read_or_write_the_note(running_app: RunningApp, minh: Staff,
                                                            consult: Consult) -> None:
    url = f"{running_app.url}/api/c/{consult.id}/note"
    responses = [
        await minh.http.get(url),
        await minh.put(f"{url}/draft", {"base_version": 0, "note": note()}),
        await minh.http.post(f"{url}/sign", json={"expected_version": 0, "note": note()},
                             headers=minh.write_headers()),
    ]
    for r in responses:
        assert r.status == 403
        assert (await error_of(r))["code"] == "forbidden"
    async with running_app.pool.acquire() as con:
        assert await notes_db.versions(con, consult.id) == []
        assert await con.fetchval("SELECT count(*) FROM note_draft") == 0


async def test_note_writes_without_the_csrf_token_are_refused(running_app: RunningApp, lan: Staff,
                                                              consult: Consult,
                                                              subtests: pytest.Subtests) -> None:
    url = f"{running_app.url}/api/c/{consult.id}/note"
    for csrf in (None, "", "forged-token"):
        with subtests.test(csrf=csrf):
            headers = {} if csrf is None else {"X-CSRF-Token": csrf}
            draft = {"base_version": 0, "note": note()}
            signed = {"expected_version": 0, "note": note()}
            for r in (await lan.http.put(f"{url}/draft", json=draft, headers=headers),
                      await lan.http.post(f"{url}/sign", json=signed, headers=headers)):
                assert r.status == 403
                assert (await error_of(r))["code"] == "csrf"
    async with running_app.pool.acquire() as con:
        assert await notes_db.versions(con, consult.id) == []
        assert await con.fetchval("SELECT count(*) FROM note_draft") == 0


async def test_note_api_needs_a_signed_in_doctor(running_app: RunningApp, http: aiohttp.ClientSession,
                                                 consult: Consult) -> None:
    r = await http.get(f"{running_app.url}/api/c/{consult.id}/note")
    assert r.status == 401 and (await error_of(r))["code"] == "not_authenticated"


async def test_note_of_an_unknown_consultation_is_not_found(running_app: RunningApp, lan: Staff) -> None:
    for cid in ("not-a-uuid", str(uuid.UUID(int=1))):
        r = await lan.http.get(f"{running_app.url}/api/c/{cid}/note")
        assert r.status == 404 and (await error_of(r))["code"] == "not_found", cid


# ---- ICD-10, history, triage level ---------------------------------------------------------------------

async def test_icd10_search_finds_hypertension_with_its_vietnamese_name(running_app: RunningApp,
                                                                        lan: Staff) -> None:
    r = await lan.http.get(f"{running_app.url}/api/icd10", params={"q": "tang huyet ap"})
    assert r.status == 200
    results = (await r.json())["results"]
    codes = [c["code"] for c in results]
    assert "I10" in codes[:3]
    i10 = results[codes.index("I10")]
    expected = icd10.lookup("I10")
    assert expected is not None and expected.name_vi
    assert i10["name"] == expected.name_vi and i10["name"].startswith("Tăng huyết áp")
    assert i10["name_en"] == expected.name_en


async def test_icd10_search_needs_a_session(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/api/icd10", params={"q": "I10"})
    assert r.status == 401


async def test_patient_history_shows_past_notes_and_the_read_is_audited(running_app: RunningApp,
                                                                        lan: Staff) -> None:
    r = await lan.http.get(f"{running_app.url}/staff/patients/{PATIENT}")
    page = await r.text()
    assert r.status == 200
    assert "Giàng A Páo" in page
    assert page.count("Amlodipin 5 mg/ngày") == 3  # the three demo visits, newest first
    assert page.index("138/86") < page.index("152/92") < page.index("168/98")
    assert "I10 Tăng huyết áp" in page
    async with running_app.pool.acquire() as con:
        reads = [e for e in await audit.events_for(con, "patient", PATIENT)
                 if e["action"] == "patient.read_history"]
    assert [(e["actor_kind"], e["actor_id"]) for e in reads] == [("staff", str(lan.id))]


async def test_every_demo_patients_history_opens(running_app: RunningApp, lan: Staff) -> None:
    for patient_id in range(1, 11):  # hypertension, TB (weight only) and no-history patients
        r = await lan.http.get(f"{running_app.url}/staff/patients/{patient_id}")
        assert r.status == 200, (patient_id, await r.text())


async def test_call_page_opens_for_the_consultations_doctor_only(running_app: RunningApp, lan: Staff,
                                                                 minh: Staff, consult: Consult) -> None:
    r = await lan.http.get(f"{running_app.url}/staff/c/{consult.id}")
    assert r.status == 200
    assert "Giàng A Páo" in await r.text()
    assert (await lan.http.get(f"{running_app.url}/staff", allow_redirects=False)).status == 200
    r = await minh.http.get(f"{running_app.url}/staff/c/{consult.id}")
    assert r.status == 403


async def test_history_of_an_unknown_patient_is_not_found(running_app: RunningApp, lan: Staff) -> None:
    for pid in ("99999", "abc"):
        r = await lan.http.get(f"{running_app.url}/staff/patients/{pid}")
        assert r.status == 404, pid


async def test_doctor_changes_the_triage_level_and_it_is_audited(running_app: RunningApp,
                                                                 http: aiohttp.ClientSession,
                                                                 lan: Staff) -> None:
    entry = await checked_in(http, running_app)
    url = f"{running_app.url}/api/queue/{entry}/level"

    assert (await lan.http.post(url, json={"level": "NC3"})).status == 403  # no CSRF token
    r = await lan.post(url, {"level": "NC9"})
    assert r.status == 400
    r = await lan.post(url, {"level": "NC3"})
    assert r.status == 200 and await r.json() == {"entry": entry, "level": "NC3"}

    async with running_app.pool.acquire() as con:
        level = await con.fetchval("SELECT triage_level FROM queue_entry WHERE id = $1", uuid.UUID(entry))
        changes = [e for e in await audit.events_for(con, "queue_entry", entry)
                   if e["action"] == "queue.change_level"]
    assert level == 3
    assert len(changes) == 1 and changes[0]["details"] == {"from": 2, "to": 3}
    assert changes[0]["actor_id"] == str(lan.id)


async def test_coordinator_cannot_change_a_triage_level(running_app: RunningApp,
                                                        http: aiohttp.ClientSession) -> None:
    entry = await checked_in(http, running_app)
    coordinator = await signed_in(running_app, "dieuphoi")
    try:
        r = await coordinator.post(f"{running_app.url}/api/queue/{entry}/level", {"level": "NC4"})
        assert r.status == 403
        assert (await error_of(r))["code"] == "forbidden"
    finally:
        await coordinator.http.close()
