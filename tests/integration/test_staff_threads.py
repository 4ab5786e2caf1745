"""Staff messages about a patient over real HTTP and real sockets: a district specialist writes to a commune
station about its patient; the station's doctor and nurse get `thread_message` live, a doctor of another
station does not; the doctor's reply reaches the specialist; unread counts and mark-as-read; the patient's
record shows the thread. Bad input and refusals each have their code, and store nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import RunningApp
from tests.integration.conftest import STAFF_PASSWORD, Factory
from tests.integration.test_http import csrf_cookie, jar_session, sign_in
from tests.integration.wsclient import WsClient

INSTRUCTIONS = "HA 184/112 tại nhà: tăng amlodipin lên 10 mg, đo lại tại trạm sau 1 tuần, báo tôi kết quả."


@dataclass
class Actor:
    id: int
    http: aiohttp.ClientSession
    csrf: str
    url: str

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        headers = {"X-CSRF-Token": self.csrf}
        async with self.http.post(f"{self.url}{path}", json=body, headers=headers, **kwargs) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.url}{path}") as r:
            return r.status, await r.json()

    async def socket(self) -> WsClient:
        ws = WsClient(await self.http.ws_connect(f"{self.url}/ws"))
        await ws.send(type="hello")
        await ws.expect("welcome")
        return ws


@dataclass
class World:
    patient: int
    specialist: Actor   # district: the patient's station is below
    doctor: Actor       # the patient's station (commune)
    nurse: Actor        # the patient's station
    elsewhere: Actor    # a doctor of the sibling commune: another station
    coordinator: Actor  # district


@pytest.fixture
async def world(running_app: RunningApp, make: Factory) -> AsyncIterator[World]:
    actors: list[Actor] = []

    async def actor(facility: int, role: str) -> Actor:
        staff_id = await make.staff(facility, role=role)
        async with running_app.pool.acquire() as con:
            username = await con.fetchval("SELECT username FROM staff WHERE id = $1", staff_id)
        http = jar_session()
        assert (await sign_in(http, running_app, username, STAFF_PASSWORD)).status == 303
        actors.append(Actor(staff_id, http, csrf_cookie(http, running_app), running_app.url))
        return actors[-1]

    net = make.network
    found = World(await make.patient(net.commune), await actor(net.district, "specialist"),
                  await actor(net.commune, "doctor"), await actor(net.commune, "nurse"),
                  await actor(net.sibling, "doctor"), await actor(net.district, "coordinator"))
    yield found
    for a in actors:
        await a.http.close()


async def _nothing_more(ws: WsClient, kind: str) -> None:
    """Nothing of `kind` is waiting for this socket: a ping's pong comes after everything queued before it
    (one socket's messages keep their order, and pushes are queued before the HTTP answer is sent)."""
    ping = await ws.send(type="ping")
    await ws.expect("pong", id=ping)
    assert [m for m in ws.inbox if m["type"] == kind] == []


async def test_specialist_writes_station_staff_get_it_live_and_the_reply_reaches_the_specialist(
        running_app: RunningApp, world: World) -> None:
    specialist_ws, doctor_ws, nurse_ws, elsewhere_ws = [
        await a.socket() for a in (world.specialist, world.doctor, world.nurse, world.elsewhere)]
    try:
        status, sent = await world.specialist.post(f"/api/patients/{world.patient}/threads", {
            "text": INSTRUCTIONS, "context": "htn", "reason": "urgent"})
        assert status == 201, sent
        thread = sent["thread"]["id"]
        assert sent["thread"]["context"] == "htn" and sent["thread"]["reason"] == "urgent"
        assert sent["recipients"] == 2 and sent["pages"] == 2  # the commune's doctor and nurse, one page each
        for ws in (doctor_ws, nurse_ws):
            pushed = await ws.expect("thread_message", thread=thread)
            assert pushed == {"type": "thread_message", "thread": thread, "patient_id": world.patient,
                              "message": sent["message"], "context": "htn"}  # no text on the socket
        await _nothing_more(elsewhere_ws, "thread_message")
        await _nothing_more(specialist_ws, "thread_message")  # the writer is not told about their own message

        status, inbox = await world.doctor.get("/api/threads")
        assert status == 200 and inbox["unread"] == 1
        [row] = inbox["threads"]
        assert (row["id"], row["unread"], row["last_body"]) == (thread, 1, INSTRUCTIONS[:140])
        assert (row["context_text"], row["reason_text"]) == (
            "Tăng huyết áp", "Huyết áp gần nhất ≥ 180/110: xem trong ngày")
        status, detail = await world.doctor.get(f"/api/threads/{thread}")
        assert status == 200 and [m["body"] for m in detail["messages"]] == [INSTRUCTIONS]
        assert detail["messages"][0]["author_id"] == world.specialist.id and not detail["messages"][0]["mine"]
        assert (await world.elsewhere.get("/api/threads"))[1]["threads"] == []  # not their station's patient

        status, replied = await world.doctor.post(f"/api/threads/{thread}/messages",
                                                  {"text": "Đã tăng liều; hẹn đo lại thứ Hai."})
        assert status == 201 and replied["recipients"] == 2  # the specialist (a writer) and the nurse
        assert (await specialist_ws.expect("thread_message", thread=thread))["message"] == replied["message"]
        await nurse_ws.expect("thread_message", thread=thread, message=replied["message"])
        await _nothing_more(elsewhere_ws, "thread_message")

        status, mine = await world.specialist.get("/api/threads")
        assert [(r["id"], r["unread"]) for r in mine["threads"]] == [(thread, 1)] and mine["unread"] == 1
        assert (await world.specialist.post(f"/api/threads/{thread}/read")) == (200, {"thread": thread, "unread": 0})
        assert (await world.specialist.get("/api/threads"))[1]["unread"] == 0
        assert (await world.doctor.get("/api/threads"))[1]["unread"] == 0  # replying reads what came before
        assert (await world.doctor.post(f"/api/threads/{thread}/read"))[1]["unread"] == 0
        assert (await world.nurse.get("/api/threads"))[1]["unread"] == 2  # both messages, unread by her

        async with world.nurse.http.get(f"{running_app.url}/staff/patients/{world.patient}") as r:
            record = await r.text()
        assert r.status == 200 and INSTRUCTIONS in record and f'data-thread="{thread}"' in record
        async with world.doctor.http.get(f"{running_app.url}/staff/threads/{thread}") as r:
            page = await r.text()
        assert r.status == 200 and INSTRUCTIONS in page and 'id="reply-form"' in page

        async with running_app.pool.acquire() as con:
            actions = [(e["action"], e["actor_id"]) for e in await con.fetch(
                "SELECT action, actor_id FROM audit_event WHERE object_kind = 'staff_thread' AND object_id = $1 "
                "ORDER BY id", thread)]
        assert actions[:2] == [("thread.start", str(world.specialist.id)), ("thread.read", str(world.doctor.id))]
        assert ("thread.message", str(world.doctor.id)) in actions
    finally:
        for ws in (specialist_ws, doctor_ws, nurse_ws, elsewhere_ws):
            await ws.close()


async def test_outside_the_scope_and_roles_without_clinical_reading_are_refused(
        running_app: RunningApp, world: World) -> None:
    status, sent = await world.specialist.post(f"/api/patients/{world.patient}/threads", {"text": "Xin chào"})
    assert status == 201
    thread = sent["thread"]["id"]
    # Another station's doctor: the patient is a sibling's; the thread is hidden as if it did not exist.
    status, refused = await world.elsewhere.post(f"/api/patients/{world.patient}/threads", {"text": "x"})
    assert status == 403 and refused["error"]["code"] == "forbidden" and "sibling" in refused["error"]["message"]
    assert (await world.elsewhere.get(f"/api/threads/{thread}"))[0] == 404
    assert (await world.elsewhere.post(f"/api/threads/{thread}/messages", {"text": "x"}))[0] == 404
    assert (await world.elsewhere.post(f"/api/threads/{thread}/read"))[0] == 404
    # Coordinators see counts, not clinical text.
    for request in (world.coordinator.get("/api/threads"), world.coordinator.get(f"/api/threads/{thread}"),
                    world.coordinator.post(f"/api/patients/{world.patient}/threads", {"text": "x"})):
        status, refused = await request
        assert status == 403 and refused["error"]["code"] == "forbidden"
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM staff_thread_message") == 1


@pytest.mark.parametrize(("path", "body", "status", "code", "field"), [
    ("/api/patients/{patient}/threads", {"text": ""}, 400, "message_required", "text"),
    ("/api/patients/{patient}/threads", {"text": " \n "}, 400, "message_required", "text"),
    ("/api/patients/{patient}/threads", {"text": "x" * 2001}, 400, "message_too_long", "text"),
    ("/api/patients/{patient}/threads", {"text": "x", "context": "diabetes"}, 400, "unknown_context", "context"),
    ("/api/patients/{patient}/threads", {"text": "x", "context": "tb", "reason": "urgent"}, 400, "unknown_reason",
     "reason"),
    ("/api/patients/{patient}/threads", {"text": "x", "urgent": True}, 400, "invalid", None),
    ("/api/patients/{patient}/threads", {"text": 5}, 400, "invalid", "text"),
    ("/api/patients/{patient}/threads", {"text": "a\u0000b"}, 400, "invalid", "text"),
    ("/api/patients/999999999/threads", {"text": "x"}, 404, "not_found", None),
    ("/api/patients/99999999999999999999/threads", {"text": "x"}, 404, "not_found", None),
    ("/api/threads/{thread}/messages", {"text": ""}, 400, "message_required", "text"),
    ("/api/threads/{thread}/messages", {"text": "x" * 2001}, 400, "message_too_long", "text"),
    ("/api/threads/not-a-uuid/messages", {"text": "x"}, 404, "not_found", None),
    ("/api/threads/{unknown}/messages", {"text": "x"}, 404, "not_found", None),
])
async def test_bad_input_gets_its_code_and_stores_nothing(
        running_app: RunningApp, world: World, path: str, body: dict[str, Any], status: int, code: str,
        field: str | None) -> None:
    _, sent = await world.specialist.post(f"/api/patients/{world.patient}/threads", {"text": "Bắt đầu"})
    got, answer = await world.specialist.post(path.format(patient=world.patient, thread=sent["thread"]["id"],
                                                          unknown=uuid.uuid4()), body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"].get("field") == field or field is None
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM staff_thread") == 1
        assert await con.fetchval("SELECT count(*) FROM staff_thread_message") == 1


async def test_writes_need_the_csrf_token_and_a_json_body(running_app: RunningApp, world: World) -> None:
    async with world.specialist.http.post(f"{running_app.url}/api/patients/{world.patient}/threads",
                                          json={"text": "x"}) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
    async with world.specialist.http.post(f"{running_app.url}/api/patients/{world.patient}/threads",
                                          data=b"{not json", headers={"X-CSRF-Token": world.specialist.csrf}) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_json"


async def test_messages_are_append_only(running_app: RunningApp, world: World) -> None:
    status, sent = await world.specialist.post(f"/api/patients/{world.patient}/threads", {"text": "Bản gốc"})
    assert status == 201
    async with running_app.pool.acquire() as con:
        for statement in ("UPDATE staff_thread_message SET body = 'sửa'", "DELETE FROM staff_thread_message"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await con.execute(statement)
        assert await con.fetchval("SELECT body FROM staff_thread_message WHERE id = $1", sent["message"]) == "Bản gốc"


async def test_both_worklists_offer_message_the_station_on_each_row(running_app: RunningApp) -> None:
    """The demo's specialists: each row carries the patient, its register and the row's first reason."""
    for username, path, context, reason in (("bs.timmach", "/staff/htn/worklist", "htn", "urgent"),
                                            ("bs.lao", "/staff/tb", "tb", "missed_doses")):
        http = jar_session()
        try:
            assert (await sign_in(http, running_app, username)).status == 303
            async with http.get(f"{running_app.url}{path}") as r:
                page = await r.text()
            assert r.status == 200 and 'id="thread-dialog"' in page
            assert f'data-thread-context="{context}" data-thread-reason="{reason}"' in page
        finally:
            await http.close()
