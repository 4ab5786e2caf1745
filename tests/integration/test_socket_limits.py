"""Sockets that never say hello are closed (4408); one client address cannot open more than the cap (429)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from signaling.rooms import CloseCode
from tests.conftest import RunningApp, make_settings
from tests.integration.wsclient import WsClient
from web.keys import hub_key
from web.settings import Settings

CAP = 3


@pytest.fixture
def app_settings(dsn: str, tmp_path: Path) -> Settings:
    return make_settings(dsn, tmp_path, hello_timeout_s=0.3, max_sockets_per_address=CAP)


async def test_a_socket_that_never_says_hello_is_closed_with_4408_and_one_that_did_stays(
        running_app: RunningApp) -> None:
    async with aiohttp.ClientSession() as http:
        greeted = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
        await greeted.send(type="hello", token="not.a.jwt")  # a refused hello does not count
        assert (await greeted.expect("error"))["code"] == "link_invalid"
        await greeted.send(type="hello")  # a staff-less hello without token is refused too…
        assert (await greeted.expect("error"))["code"] == "not_authenticated"

        silent = await http.ws_connect(f"{running_app.url}/ws")
        async with asyncio.timeout(10):
            msg = await silent.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.HELLO_TIMEOUT
        # …so the first socket, opened earlier, was closed too: its deadline came before the silent one's.
        async with asyncio.timeout(10):
            first = await greeted.ws.receive()
        assert first.type is aiohttp.WSMsgType.CLOSE and first.data == CloseCode.HELLO_TIMEOUT


async def test_a_socket_that_said_hello_outlives_the_hello_deadline(running_app: RunningApp) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _patient_token(running_app)
        patient = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
        await patient.send(type="hello", token=token)
        await patient.expect("welcome")
        # Greeted: its deadline is dropped at once rather than left to fire and find it greeted.
        assert running_app.app[hub_key]._hello_timers == {}
        silent = await http.ws_connect(f"{running_app.url}/ws")  # opened later: its deadline comes later
        async with asyncio.timeout(10):
            msg = await silent.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.HELLO_TIMEOUT
        ref = await patient.send(type="ping")
        assert (await patient.expect("pong"))["id"] == ref
        await patient.close()


async def test_a_hello_still_waiting_for_the_database_at_the_deadline_is_answered_not_closed(
        running_app: RunningApp) -> None:
    """After a restart every page says hello at once and hellos queue for the database; a socket that said
    hello in time is answered when its turn comes, not closed under it (which would only add a reconnect)."""
    token = await _patient_token(running_app)
    pool = running_app.pool
    held = [await pool.acquire() for _ in range(pool.get_max_size())]  # every connection busy: the hello waits
    async with aiohttp.ClientSession() as http:
        try:
            patient = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
            await patient.send(type="hello", token=token)
            silent = await http.ws_connect(f"{running_app.url}/ws")  # opened later: its deadline comes later
            async with asyncio.timeout(10):
                msg = await silent.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.HELLO_TIMEOUT
        finally:
            for con in held:
                await pool.release(con)
        assert (await patient.expect("welcome"))["state"] in ("checkin", "waiting", "paired")
        ref = await patient.send(type="ping")
        assert (await patient.expect("pong"))["id"] == ref
        await patient.close()


async def _patient_token(app: RunningApp) -> str:
    from tests.integration.test_call_signaling import patient_link

    return await patient_link(app, 1)


async def test_one_address_cannot_open_more_sockets_than_the_cap(running_app: RunningApp) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _patient_token(running_app)
        open_ = []
        for _ in range(CAP):
            ws = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
            await ws.send(type="hello", token=token)
            await ws.expect("welcome")
            open_.append(ws)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{running_app.url}/ws")
        assert refused.value.status == 429
        r = await http.get(f"{running_app.url}/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                            "Sec-WebSocket-Version": "13",
                                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert r.status == 429 and r.headers["Retry-After"] == "30"
        assert "too many open websockets" in await r.text()
        # Through a reverse proxy on this host, X-Forwarded-For is the client: another address has room.
        proxied = await http.ws_connect(f"{running_app.url}/ws", headers={"X-Forwarded-For": "198.51.100.4"})
        await proxied.close()

        await open_.pop().close()
        async with asyncio.timeout(10):  # the server forgets the closed socket, then there is room again
            while True:  # as in test_heartbeat: the hub has no event for "a socket was forgotten"
                if len(running_app.hub.clients) < CAP:
                    break
                await asyncio.sleep(0.02)
        again = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
        await again.send(type="hello", token=token)
        await again.expect("welcome")
        for ws in (*open_, again):
            await ws.close()
