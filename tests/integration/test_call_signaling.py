"""The whole signaling path over real websockets and a real PostgreSQL: check-in, claim, call, chat, end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from yarl import URL

from db import chat as chat_db
from db import consultations as consultations_db
from tests.conftest import RunningApp
from tests.integration.wsclient import WsClient
from web.auth import issue_link
from web.keys import signer_key


async def patient_link(app: RunningApp, patient_id: int, ttl_s: int = 3600) -> str:
    async with app.pool.acquire() as con:
        token, _ = await issue_link(con, app.app[signer_key], patient_id, ttl_s)
    return token


async def check_in(http: aiohttp.ClientSession, app: RunningApp, token: str,
                   **body: object) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    r = await http.post(f"{app.url}/api/p/consent", json={"version": "2026-11-v1"}, headers=headers)
    assert r.status == 200, await r.text()
    r = await http.post(f"{app.url}/api/p/checkin", json={"reason": "ho", "symptoms": ["cough"], **body},
                        headers=headers)
    assert r.status == 200, await r.text()
    result: dict[str, object] = await r.json()
    return result


async def staff_session(app: RunningApp, username: str = "bacsi.lan") -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await http.get(f"{app.url}/staff/login")
    csrf = http.cookie_jar.filter_cookies(URL(app.url))["dh_csrf"].value
    r = await http.post(f"{app.url}/staff/login",
                        data={"username": username, "password": "demo1234", "_csrf": csrf},
                        allow_redirects=False)
    assert r.status == 303, await r.text()
    return http


async def connect(http: aiohttp.ClientSession, app: RunningApp, token: str | None = None) -> WsClient:
    ws = WsClient(await http.ws_connect(f"{app.url}/ws"))
    await ws.send(type="hello", **({"token": token} if token else {}))
    await ws.expect("welcome")
    return ws


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_patient_and_doctor_are_paired_and_relay_signaling(running_app: RunningApp,
                                                                 http: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 1)
    await check_in(http, running_app, token)
    patient = await connect(http, running_app, token)
    queue = await patient.expect("queue")
    assert queue["position"] == 1

    doctor_http = await staff_session(running_app)
    try:
        doctor = await connect(doctor_http, running_app)
        listing = await doctor.expect("queue_list")
        assert [e["patient"]["id"] for e in listing["entries"]] == [1]
        assert listing["entries"][0]["online"] is True

        ref = await doctor.send(type="claim_next")
        paired = await doctor.expect("paired", id=ref)
        room = paired["room"]
        assert (await patient.expect("paired"))["room"] == room

        await patient.send(type="join", room=room)
        joined_p = await patient.expect("joined")
        assert joined_p["polite"] is True and joined_p["peer_present"] is False
        await doctor.send(type="join", room=room)
        peer_joined = await patient.expect("peer_joined")
        assert peer_joined["room"] == room
        joined_d = await doctor.expect("joined")
        assert joined_d["polite"] is False and joined_d["peer_present"] is True
        assert joined_d["peer_session"] != peer_joined["peer_session"]

        await doctor.send(type="offer", room=room, sdp="v=0 offer")
        offer = await patient.expect("offer")
        assert offer["sdp"] == "v=0 offer" and offer["from"] == peer_joined["peer_session"]
        await patient.send(type="answer", room=room, sdp="v=0 answer")
        assert (await doctor.expect("answer"))["sdp"] == "v=0 answer"
        await patient.send(type="ice", room=room,
                           candidate={"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                      "sdpMid": "0", "sdpMLineIndex": 0})
        ice = await doctor.expect("ice")
        assert ice["candidate"]["sdpMid"] == "0"

        await patient.send(type="chat", room=room, text="Chào bác sĩ")
        for side in (patient, doctor):
            assert (await side.expect("chat"))["message"]["text"] == "Chào bác sĩ"
        async with running_app.pool.acquire() as con:
            stored = await chat_db.history(con, __import__("uuid").UUID(room))
            c = await consultations_db.get(con, __import__("uuid").UUID(room))
        assert [m.body for m in stored] == ["Chào bác sĩ"]
        assert c is not None and c.active

        await doctor.send(type="end", room=room)
        assert (await patient.expect("ended"))["by"] == "doctor"
        await doctor.expect("ended")
        r = await http.get(f"{running_app.url}/j/{token}")
        assert r.status == 410  # the link is finished
        await doctor.close()
    finally:
        await doctor_http.close()
    await patient.close()


async def test_patient_whose_doctor_drops_goes_back_to_the_head_of_the_queue(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    running_app.hub.requeue_grace_s = 1
    first = await patient_link(running_app, 1)
    second = await patient_link(running_app, 2)
    await check_in(http, running_app, first)
    await check_in(http, running_app, second)
    patient = await connect(http, running_app, first)
    doctor_http = await staff_session(running_app)
    doctor = await connect(doctor_http, running_app)
    ref = await doctor.send(type="claim_next")
    room = (await doctor.expect("paired", id=ref))["room"]
    await doctor.close()
    await doctor_http.close()
    await asyncio.sleep(1.2)  # past the grace period (the sweeper runs on its own timer; we call it directly)
    requeued = await running_app.hub.sweep()
    assert [str(r) for r in requeued] == [room]
    assert (await patient.expect("requeued"))["room"] == room
    queue = await patient.expect("queue", timeout=5)
    assert queue["position"] == 1  # back in front of patient 2, who arrived later anyway
    await patient.close()


@pytest.mark.parametrize("raw, code", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_message"),
    ('{"id": "x1"}', "bad_message"),
    ('{"type": "teleport", "id": "x2"}', "unknown_type"),
    ('{"type": "join", "id": "x3", "room": "not-a-uuid"}', "invalid"),
    ('{"type": "chat", "id": "x4", "room": "00000000-0000-0000-0000-000000000001", "text": ""}', "invalid"),
])
async def test_malformed_messages_get_an_error_and_the_socket_stays_up(
        running_app: RunningApp, http: aiohttp.ClientSession, raw: str, code: str) -> None:
    ws = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    await ws.send_raw(raw)
    error = await ws.expect("error")
    assert error["code"] == code
    if '"id": "x' in raw:
        assert error["id"] == raw.split('"id": "')[1].split('"')[0]
    ref = await ws.send(type="ping")
    assert (await ws.expect("pong"))["id"] == ref
    await ws.close()


async def test_bad_tokens_and_foreign_rooms_are_refused(running_app: RunningApp,
                                                        http: aiohttp.ClientSession) -> None:
    ws = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    ref = await ws.send(type="hello", token="not.a.jwt")
    assert (await ws.expect("error", id=ref))["code"] == "link_invalid"
    ref = await ws.send(type="join", room="00000000-0000-0000-0000-000000000001")
    assert (await ws.expect("error", id=ref))["code"] == "not_authenticated"
    token = await patient_link(running_app, 3)
    await ws.send(type="hello", token=token)
    await ws.expect("welcome")
    ref = await ws.send(type="offer", room="00000000-0000-0000-0000-000000000001", sdp="x")
    assert (await ws.expect("error", id=ref))["code"] == "not_in_room"
    ref = await ws.send(type="join", room="00000000-0000-0000-0000-000000000001")
    assert (await ws.expect("error", id=ref))["code"] == "forbidden"
    ref = await ws.send(type="claim_next")
    assert (await ws.expect("error", id=ref))["code"] == "forbidden"
    await ws.close()


async def test_oversized_message_is_refused_and_huge_frames_close_the_socket(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    limit = running_app.hub.max_message_bytes
    ws = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    await ws.send(type="ping", pad="x" * (limit + 10))
    assert (await ws.expect("error"))["code"] == "too_large"
    await ws.send(type="ping")
    await ws.expect("pong")
    await ws.ws.send_str("x" * (limit * 4 + 100))
    msg = await ws.ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert ws.ws.close_code == 1009


async def test_abusive_client_is_disconnected_with_policy_violation(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    ws = await http.ws_connect(f"{running_app.url}/ws")
    for _ in range(25):
        await ws.send_str("{broken")
    codes = []
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            codes.append(msg.json()["code"])
    assert codes[:21] == ["bad_json"] * 21
    assert ws.close_code == 1008


async def test_expired_link_is_refused_on_the_socket(running_app: RunningApp,
                                                     http: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 4)
    async with running_app.pool.acquire() as con:
        await con.execute("UPDATE join_link SET expires_at = now() - $1::interval", timedelta(minutes=1))
    ws = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    ref = await ws.send(type="hello", token=token)
    assert (await ws.expect("error", id=ref))["code"] == "link_expired"
    await ws.close()
