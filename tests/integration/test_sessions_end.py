"""A session ends everywhere: sign-out, expiry, deactivation and a password change close the staff member's
sockets with 4401 and nothing more is done for them; a revoked link closes the patient's sockets with 4410,
also after check-in and in a call, and the record is kept."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from yarl import URL

from db import staff as staff_db
from signaling.rooms import CloseCode
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import check_in, connect, staff_session
from tests.integration.wsclient import WsClient
from web.keys import signer_key


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def doctor_http(running_app: RunningApp) -> AsyncIterator[aiohttp.ClientSession]:
    session = await staff_session(running_app, "bacsi.lan")
    yield session
    await session.close()


async def close_code(ws: WsClient) -> tuple[int | None, list[str]]:
    """Read until the server closes the socket: (the code in its close frame, types of the messages before).

    The code is read from the close frame itself: the server may drop the connection before aiohttp's client
    has written its own close reply, which leaves `ws.close_code` at 1006 although 4401 arrived."""
    seen = [m["type"] for m in ws.inbox]
    async with asyncio.timeout(10):
        while True:
            msg = await ws.ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data), seen
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return ws.ws.close_code, seen
            seen.append(msg.json()["type"])


async def waiting_patient(app: RunningApp, http: aiohttp.ClientSession, patient_id: int = 1) -> tuple[str, str]:
    """Patient `patient_id`, invited (walk-in) by the nurse, has checked in: (invitation id, link token)."""
    nurse = await staff_session(app, "yta.hoa")
    try:
        csrf = nurse.cookie_jar.filter_cookies(URL(app.url))["dh_csrf"].value
        r = await nurse.post(f"{app.url}/staff/patients/{patient_id}/invite", allow_redirects=False,
                             data={"_csrf": csrf, "kind": "walk_in", "lang": "vi"})
        assert r.status == 303, await r.text()
        invitation = r.headers["Location"].rsplit("/", 1)[1]
    finally:
        await nurse.close()
    async with app.pool.acquire() as con:
        link = await con.fetchrow("SELECT l.jti, l.expires_at FROM invitation i JOIN join_link l ON l.jti = i.link_jti "
                                  "WHERE i.id = $1", uuid.UUID(invitation))
    token = app.app[signer_key].sign(link["jti"], link["expires_at"])  # the same token the SMS carries
    await check_in(http, app, token)
    return invitation, token


async def nothing_claimed(app: RunningApp) -> bool:
    """The checked-in patient is still waiting and nobody is in a consultation (demo history aside)."""
    async with app.pool.acquire() as con:
        active: int = await con.fetchval("SELECT count(*) FROM consultation WHERE status = 'active'")
        status = await con.fetchval("SELECT status FROM queue_entry WHERE link_jti IS NOT NULL")
    return active == 0 and status == "waiting"


async def test_sign_out_closes_the_sessions_sockets_with_4401_and_a_later_claim_does_nothing(
        running_app: RunningApp, http: aiohttp.ClientSession, doctor_http: aiohttp.ClientSession) -> None:
    await waiting_patient(running_app, http)
    doctor = await connect(doctor_http, running_app)
    await doctor.expect("queue_list")
    other_tab = await connect(doctor_http, running_app)

    csrf = doctor_http.cookie_jar.filter_cookies(URL(running_app.url))["dh_csrf"].value
    r = await doctor_http.post(f"{running_app.url}/staff/logout", data={"_csrf": csrf}, allow_redirects=False)
    assert r.status == 303
    with contextlib.suppress(ConnectionError):  # the socket may already be closing
        await doctor.send(type="claim_next")
    code, seen = await close_code(doctor)
    assert code == CloseCode.SESSION_ENDED and "paired" not in seen
    assert (await close_code(other_tab))[0] == CloseCode.SESSION_ENDED
    assert await nothing_claimed(running_app)
    assert not [c for c in running_app.hub.clients if c.staff is not None and not c.ending]


async def _deactivate(con: asyncpg.Connection, staff_id: int) -> None:
    await staff_db.deactivate(con, staff_id)


async def _change_password(con: asyncpg.Connection, staff_id: int) -> None:
    await staff_db.set_password(con, staff_id, "mat-khau-moi-2026")


async def _expire(con: asyncpg.Connection, staff_id: int) -> None:
    await con.execute("UPDATE staff_session SET expires_at = now() - interval '1 second' WHERE staff_id = $1",
                      staff_id)


ENDINGS: dict[str, Callable[[asyncpg.Connection, int], Awaitable[None]]] = {
    "deactivated": _deactivate, "password_changed": _change_password, "expired": _expire}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_a_session_ended_in_the_database_cannot_claim_and_its_sockets_close_with_4401(
        running_app: RunningApp, http: aiohttp.ClientSession, doctor_http: aiohttp.ClientSession,
        ending: str) -> None:
    await waiting_patient(running_app, http)
    acting = await connect(doctor_http, running_app)
    idle = await connect(doctor_http, running_app)
    async with running_app.pool.acquire() as con:
        staff_id = await con.fetchval("SELECT id FROM staff WHERE username = 'bacsi.lan'")
        await ENDINGS[ending](con, staff_id)  # as the CLI or another server process would

    # The next message that acts is checked against the database first: refused, socket closed.
    await acting.send(type="claim_next")
    code, seen = await close_code(acting)
    assert code == CloseCode.SESSION_ENDED and "paired" not in seen
    assert await nothing_claimed(running_app)
    # A socket that sends nothing is closed by the periodic revalidation (one query for all sockets).
    assert await running_app.hub.revalidate() == 1
    assert (await close_code(idle))[0] == CloseCode.SESSION_ENDED
    # And the page cannot open a new one with that cookie.
    again = WsClient(await doctor_http.ws_connect(f"{running_app.url}/ws"))
    await again.send(type="hello")
    assert (await again.expect("error"))["code"] == "not_authenticated"
    await again.close()


async def test_periodic_revalidation_closes_a_socket_whose_session_was_signed_out_elsewhere(
        running_app: RunningApp, doctor_http: aiohttp.ClientSession) -> None:
    running_app.hub.session_check_s = 0.05  # the background loop reads it on each turn
    doctor = await connect(doctor_http, running_app)
    async with running_app.pool.acquire() as con:
        await con.execute("UPDATE staff_session SET revoked_at = now()")  # e.g. signed out via another process
    assert (await close_code(doctor))[0] == CloseCode.SESSION_ENDED


async def revoke(app: RunningApp, invitation: str) -> aiohttp.ClientResponse:
    nurse = await staff_session(app, "yta.hoa")
    try:
        csrf = nurse.cookie_jar.filter_cookies(URL(app.url))["dh_csrf"].value
        return await nurse.post(f"{app.url}/staff/invitations/{invitation}/revoke", data={"_csrf": csrf},
                                allow_redirects=False)
    finally:
        await nurse.close()


async def entry_and_consultation(app: RunningApp) -> tuple[dict[str, Any], dict[str, Any] | None]:
    async with app.pool.acquire() as con:
        entry = await con.fetchrow("SELECT id, status, cancel_reason FROM queue_entry WHERE link_jti IS NOT NULL")
        consultation = await con.fetchrow("SELECT status, ended_by, outcome FROM consultation "
                                          "WHERE queue_entry_id = $1", entry["id"])
    return dict(entry), dict(consultation) if consultation else None


async def test_revoking_a_checked_in_patients_link_closes_their_sockets_and_keeps_the_record(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    invitation, token = await waiting_patient(running_app, http)
    patient = await connect(http, running_app, token)
    second_tab = await connect(http, running_app, token)
    await patient.expect("queue")

    r = await revoke(running_app, invitation)
    assert r.status == 303  # was 409 once the patient had checked in
    assert (await close_code(patient))[0] == CloseCode.LINK_REVOKED
    assert (await close_code(second_tab))[0] == CloseCode.LINK_REVOKED
    entry, consultation = await entry_and_consultation(running_app)
    assert entry["status"] == "cancelled" and entry["cancel_reason"] == "link_revoked" and consultation is None
    assert (await http.get(f"{running_app.url}/j/{token}")).status == 410
    again = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    await again.send(type="hello", token=token)
    assert (await again.expect("error"))["code"] == "link_revoked"
    await again.close()


async def test_revoking_a_link_during_a_call_ends_the_call_for_the_doctor_and_keeps_the_history(
        running_app: RunningApp, http: aiohttp.ClientSession, doctor_http: aiohttp.ClientSession) -> None:
    invitation, token = await waiting_patient(running_app, http)
    patient = await connect(http, running_app, token)
    doctor = await connect(doctor_http, running_app)
    ref = await doctor.send(type="claim_next")
    room = (await doctor.expect("paired", id=ref))["room"]
    await patient.expect("paired")
    for side in (patient, doctor):
        await side.send(type="join", room=room)
        await side.expect("joined")
    await patient.send(type="chat", room=room, text="Tôi vẫn ho")
    await doctor.expect("chat")

    assert (await revoke(running_app, invitation)).status == 303
    assert (await close_code(patient))[0] == CloseCode.LINK_REVOKED
    ended = await doctor.expect("ended")
    assert ended == {"type": "ended", "room": room, "by": "station"}
    entry, consultation = await entry_and_consultation(running_app)
    assert entry["status"] == "cancelled"
    assert consultation == {"status": "ended", "ended_by": "system", "outcome": "link_revoked"}
    async with running_app.pool.acquire() as con:
        chat = await con.fetchval("SELECT count(*) FROM chat_message")
        actions = [r["action"] for r in await con.fetch("SELECT action FROM audit_event ORDER BY id")]
    assert chat == 1
    assert "queue.cancel" in actions and "invitation.revoke" in actions
    await doctor.close()


async def test_revoked_link_of_another_process_is_caught_by_revalidation(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    _, token = await waiting_patient(running_app, http)
    patient = await connect(http, running_app, token)
    async with running_app.pool.acquire() as con:
        await con.execute("UPDATE join_link SET revoked_at = now()")
    assert await running_app.hub.revalidate() == 1
    assert (await close_code(patient))[0] == CloseCode.LINK_REVOKED


async def test_deactivate_and_set_password_are_audited_and_refuse_unknown_accounts(
        running_app: RunningApp) -> None:
    from db.errors import NotFound

    async with running_app.pool.acquire() as con:
        staff_id = await con.fetchval("SELECT id FROM staff WHERE username = 'bacsi.lan'")
        await staff_db.open_session(con, staff_id, timedelta(hours=1))
        assert await staff_db.set_password(con, staff_id, "mot-mat-khau-moi") == 1
        assert await staff_db.authenticate(con, "bacsi.lan", "mot-mat-khau-moi") is not None
        assert await staff_db.authenticate(con, "bacsi.lan", "demo1234") is None
        assert await staff_db.deactivate(con, staff_id) == 0
        assert await staff_db.authenticate(con, "bacsi.lan", "mot-mat-khau-moi") is None
        actions = [r["action"] for r in await con.fetch(
            "SELECT action FROM audit_event WHERE object_kind = 'staff' ORDER BY id")]
        assert actions[-2:] == ["staff.set_password", "staff.deactivate"]
        with pytest.raises(NotFound):
            await staff_db.deactivate(con, 999_999)
