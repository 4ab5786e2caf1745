"""A socket that stops reading holds up nobody: broadcasts reach everyone else, and the slow socket's
outgoing queue overflows and closes it with 1013 (try again later)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from db import patients as patients_db
from db import queue as queue_db
from signaling.rooms import Client, CloseCode
from tests.conftest import RunningApp, make_settings
from tests.integration.test_call_signaling import staff_session
from tests.integration.wsclient import WsClient
from web.settings import Settings

QUEUE_LIMIT = 8
PATIENTS = 150  # with long reasons: each queue_list is about 100 KB, so transport buffers fill quickly


@pytest.fixture
def app_settings(dsn: str, tmp_path: Path) -> Settings:
    return make_settings(dsn, tmp_path, socket_queue=QUEUE_LIMIT)


@pytest.fixture
async def long_queue(running_app: RunningApp) -> list[queue_db.QueueEntry]:
    async with running_app.pool.acquire() as con:
        facility = await con.fetchval("SELECT facility_id FROM staff WHERE username = 'bacsi.lan'")
        entries = []
        for n in range(PATIENTS):
            patient = await patients_db.create(con, facility_id=facility, name=f"Bệnh nhân chờ {n}",
                                               phone=f"0977{n:06d}")
            entry, _ = await queue_db.enqueue(con, patient_id=patient, link_jti=None, facility_id=facility,
                                              level=1, danger_signs=(), reason="ho kéo dài, sốt về chiều " * 20,
                                              checkin={}, audio_only=False)
            entries.append(entry)
    return entries


@pytest.fixture
async def two_doctor_sessions(running_app: RunningApp) -> AsyncIterator[tuple[aiohttp.ClientSession, ...]]:
    sessions = (await staff_session(running_app), await staff_session(running_app))
    yield sessions
    for s in sessions:
        await s.close()


async def greeted_staff(app: RunningApp, count: int) -> list[Client]:
    async with asyncio.timeout(10):
        while True:
            clients = [c for c in app.hub.clients if c.staff is not None and c.greeted]
            if len(clients) >= count:
                return clients
            await asyncio.sleep(0.02)


async def test_a_socket_that_stops_reading_does_not_hold_up_broadcasts_and_is_closed_with_1013(
        running_app: RunningApp, long_queue: list[queue_db.QueueEntry],
        two_doctor_sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession]) -> None:
    reader_http, stalled_http = two_doctor_sessions
    reader = WsClient(await reader_http.ws_connect(f"{running_app.url}/ws"))
    await reader.send(type="hello")
    reader_session = (await reader.expect("welcome"))["session"]
    await reader.expect("queue_list")
    # The stalled socket says hello and then never reads again (aiohttp stops reading from the network
    # once its own small buffer is full, so the server's transport buffer fills up behind it).
    stalled = await stalled_http.ws_connect(f"{running_app.url}/ws")
    await stalled.send_json({"type": "hello", "id": "h"})
    clients = await greeted_staff(running_app, 2)
    stalled_client = next(c for c in clients if c.session != reader_session)

    first = long_queue[0]
    broadcasts = 0
    for round_ in range(300):
        level = 2 if round_ % 2 == 0 else 1
        async with running_app.pool.acquire() as con:
            await queue_db.change_level(con, first.id, level, staff_id=1)
        async with asyncio.timeout(10):  # a broadcast that waited for the stalled socket would hang here
            await running_app.hub.broadcast_queue()
            listing = await reader.expect("queue_list")
        broadcasts += 1
        assert any(e["entry"] == str(first.id) and e["level"] == f"NC{level}" for e in listing["entries"])
        if stalled_client.ending:
            break
    assert stalled_client.close_code == CloseCode.TRY_AGAIN_LATER, f"still open after {broadcasts} broadcasts"

    # The reader keeps getting broadcasts after the slow socket is gone.
    async with running_app.pool.acquire() as con:
        await queue_db.change_level(con, first.id, 3, staff_id=1)
    await running_app.hub.broadcast_queue()
    listing = await reader.expect("queue_list")
    assert any(e["entry"] == str(first.id) and e["level"] == "NC3" for e in listing["entries"])

    # When the stalled client reads again it gets what was already written, then the close frame with 1013.
    async with asyncio.timeout(10):
        while True:
            msg = await stalled.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.TRY_AGAIN_LATER
    await reader.close()
