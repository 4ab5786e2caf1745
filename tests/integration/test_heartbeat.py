"""Heartbeats: a socket whose other end stops answering pings is detected, closed and forgotten."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import RunningApp, make_settings
from web.settings import Settings


@pytest.fixture
def app_settings(dsn: str, tmp_path: Path) -> Settings:
    # A hello deadline far away: these sockets say no valid hello, and only the pings may close them here.
    return make_settings(dsn, tmp_path, heartbeat_s=1, hello_timeout_s=300)


async def test_a_socket_that_stops_answering_pings_is_closed(running_app: RunningApp) -> None:
    async with aiohttp.ClientSession() as http:
        # autoping=False: this client sees the server's pings and, like a phone that lost its network,
        # never answers them.
        ws = await http.ws_connect(f"{running_app.url}/ws", autoping=False)
        await ws.send_json({"type": "hello", "id": "h"})
        kinds: list[aiohttp.WSMsgType] = []
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                kinds.append(msg.type)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
        assert aiohttp.WSMsgType.PING in kinds
        assert ws.closed or kinds[-1] is not aiohttp.WSMsgType.TEXT
    async with asyncio.timeout(5):  # the server's receive loop ends and the hub drops the client
        while True:
            if not running_app.hub.clients:
                break
            await asyncio.sleep(0.05)
    assert running_app.hub.clients == set()


async def test_a_socket_that_answers_pings_stays_open_and_the_server_answers_its_pings(
        running_app: RunningApp) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{running_app.url}/ws", autoping=False)
        await ws.send_json({"type": "hello", "id": "h"})  # staff-less and token-less: refused, socket kept
        pings = 0
        async with asyncio.timeout(20):
            while pings < 3:  # three rounds of "silent → pinged → answered" (heartbeat 1 s)
                msg = await ws.receive()
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING), msg
                if msg.type is aiohttp.WSMsgType.PING:
                    pings += 1
                    await ws.pong(msg.data)
            await ws.ping(b"still there?")
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.PONG and msg.data == b"still there?"
        assert not ws.closed and len(running_app.hub.clients) == 1
        await ws.close()
