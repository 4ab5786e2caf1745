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
    return make_settings(dsn, tmp_path, heartbeat_s=1)


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
