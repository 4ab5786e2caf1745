"""A small websocket client for tests: send typed messages, wait for a given message type."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self._seq = 0

    async def send(self, **message: Any) -> str:
        self._seq += 1
        message.setdefault("id", f"m{self._seq}")
        await self.ws.send_str(json.dumps(message))
        return str(message["id"])

    async def send_raw(self, raw: str) -> None:
        await self.ws.send_str(raw)

    async def expect(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:  # noqa: ASYNC109
        """The next message of type `kind` (and matching fields); earlier other messages are kept."""
        for i, m in enumerate(self.inbox):
            if m["type"] == kind and all(m.get(k) == v for k, v in match.items()):
                return self.inbox.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                data = await self._receive(f"while waiting for {kind}")
                if data["type"] == kind and all(data.get(k) == v for k, v in match.items()):
                    return data
                self.inbox.append(data)

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next message this socket received, whatever its type (kept ones first, in order)."""
        if self.inbox:
            return self.inbox.pop(0)
        async with asyncio.timeout(timeout):
            return await self._receive("while waiting for a message")

    async def _receive(self, waiting: str) -> dict[str, Any]:
        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"socket closed {waiting}: {msg.type} {msg.data!r}")
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def close(self) -> None:
        await self.ws.close()
