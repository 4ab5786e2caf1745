"""The load generator's websocket clients: connect, hello, join, and timestamp relayed frames on arrival."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from bench.relay_setup import PairSpec
from bench.sdp import sent_at_ns

encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclass
class Stats:
    """What the receiving sides saw during one measurement."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"offer": [], "ice": []})
    samples: list[tuple[int, float]] = field(default_factory=list)  # (send time ns, latency ms)
    received: int = 0
    other: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    last_queue_list_ns: int = 0


class Peer:
    """One websocket client; a reader task timestamps relayed frames the moment they arrive."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, room: str, stats: Stats) -> None:
        self.ws = ws
        self.room = room
        self.stats = stats
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    def expect(self, kind: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[kind] = future
        return future

    async def request(self, message: dict[str, Any], reply: str, limit_s: float) -> dict[str, Any]:
        """Send `message` and wait for the first `reply`-typed message (an `error` fails it)."""
        future = self.expect(reply)
        await self.ws.send_str(encode(message).decode())
        async with asyncio.timeout(limit_s):
            return await future

    async def _read(self) -> None:
        stats = self.stats
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            arrived = time.perf_counter_ns()
            data = _decode(msg.data)
            kind = data.get("type", "")
            if kind in ("offer", "ice"):
                sent = sent_at_ns(data)
                stats.latencies_ms[kind].append((arrived - sent) / 1e6)
                stats.samples.append((sent, (arrived - sent) / 1e6))
                stats.received += 1
                continue
            stats.other[kind] += 1
            if kind == "queue_list":
                stats.last_queue_list_ns = arrived
            elif kind == "error":
                stats.errors.append(data)
                for future in self._waiters.values():
                    if not future.done():
                        future.set_exception(RuntimeError(f"server error: {data}"))
                self._waiters.clear()
            waiter = self._waiters.pop(kind, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)


async def open_peer(session: aiohttp.ClientSession, url: str, room: str, stats: Stats, *, token: str = "",
                    cookie: str = "", hello: bool, deflate: bool) -> Peer:
    """Connect, say hello (real app only), join the room; returns when `joined` has arrived."""
    headers = {"Cookie": f"dh_session={cookie}"} if cookie else None
    ws = await session.ws_connect(f"{url}/ws", headers=headers, compress=15 if deflate else 0,
                                  max_msg_size=1024 * 1024, autoping=True)
    peer = Peer(ws, room, stats)
    if hello:
        await peer.request({"type": "hello", "id": "h", **({"token": token} if token else {})}, "welcome", 60)
    await peer.request({"type": "join", "id": "j", "room": room}, "joined", 60)
    return peer


async def connect_all(session: aiohttp.ClientSession, url: str, pairs: list[PairSpec], stats: Stats, *,
                      hello: bool, concurrency: int, deflate: bool) -> list[tuple[Peer, Peer]]:
    """Open and join both sides of every pair, at most `concurrency` handshakes at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: PairSpec, doctor: bool) -> Peer:
        async with gate:
            return await open_peer(session, url, spec.room, stats, hello=hello, deflate=deflate,
                                   token="" if doctor else spec.patient_token,
                                   cookie=spec.doctor_cookie if doctor else "")

    peers = await asyncio.gather(*(one(spec, doctor) for spec in pairs for doctor in (False, True)))
    return [(peers[i], peers[i + 1]) for i in range(0, len(peers), 2)]


async def settle(stats: Stats, quiet_s: float = 0.5, limit_s: float = 30.0) -> float:
    """Wait until no queue broadcast arrived for `quiet_s` (bounded by `limit_s`); returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        await asyncio.sleep(0.1)
        if time.perf_counter_ns() - stats.last_queue_list_ns > quiet_s * 1e9:
            break
    return time.perf_counter() - start
