"""`/ws`: one websocket per page. Thin: authenticate the staff cookie, then hand frames to the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.web_request import BaseRequest

from db import staff as staff_db
from signaling.errors import SignalingError
from signaling.hub import Hub
from signaling.rooms import Client, StaffIdentity
from web.auth import SESSION_COOKIE
from web.client import client_address
from web.keys import hub_key, settings_key, sockets_key

log = logging.getLogger(__name__)

# A socket the server closed whose peer stopped reading never takes the close frame: drop the connection.
ABORT_AFTER_S = 10.0


# `_Socket` replaces one private step of aiohttp's (`WebSocketResponse._post_start`, as of 3.14): with another
# aiohttp the plain response is used, and every frame wakes the socket's task as before (tests/unit/test_ws_frames.py
# fails, to say so). pyproject.toml pins aiohttp to 3.14.x.
FRAMES_ON_ARRIVAL = aiohttp.__version__.startswith("3.14.")


class _Frames(WebSocketDataQueue):
    """aiohttp's queue of a socket's parsed frames, with a first look at each text frame: an offer, answer or
    candidate on the socket's remembered route is relayed right there (Hub.relay_now), without waking the
    socket's receive task, when no earlier frame of the socket's is waiting or being handled. The relay's CPU
    per message fell from ~1.45× the bare aiohttp relay's to ~1.07× (BENCHMARKS.md, decision 61)."""

    __slots__ = ("client", "hub")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: Client | None = None
        self.hub: Hub | None = None

    def feed_data(self, data: Any, size: int) -> None:
        client, hub = self.client, self.hub
        if client is not None and hub is not None and data[0] is WSMsgType.TEXT and not self._buffer:
            try:
                relayed = hub.relay_now(client, data[1])
            except Exception:  # inside aiohttp's parser: never let it break the connection
                log.exception("error relaying a frame on arrival", extra={"session": client.session})
                relayed = False
            if relayed:
                client.heard = True
                return
        super().feed_data(data, size)


class _Socket(web.WebSocketResponse):
    """A websocket response whose received frames go through `_Frames`."""

    def _post_start(self, request: BaseRequest, protocol: str | None, writer: WebSocketWriter) -> None:
        if not FRAMES_ON_ARRIVAL:
            super()._post_start(request, protocol, writer)
            return
        # aiohttp 3.14's own steps, with `_Frames` for its queue.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        assert self._loop is not None
        self._reader = _Frames(request._protocol, DEFAULT_CHUNK_SIZE, loop=self._loop)
        self._parser = WebSocketReader(self._reader, self._max_msg_size, compress=bool(self._compress),
                                       decode_text=self._decode_text)
        request.protocol.set_parser(self._parser,
                                    data_received_cb=None if self._heartbeat is None else self._on_data_received)
        request.protocol.keep_alive(False)

    def watch(self, client: Client | None, hub: Hub | None) -> None:
        """Let the frames of `client` be looked at as they arrive (None, None: no longer)."""
        if isinstance(self._reader, _Frames):
            self._reader.client, self._reader.hub = client, hub


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin on websocket upgrades; refuse other sites (cross-site websocket hijacking)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser (CLI tools, load tests): cookies are not sent implicitly either
    allowed = {f"{request.scheme}://{request.host}", request.app[settings_key].base_url}
    return origin in allowed


async def websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[settings_key]
    hub = request.app[hub_key]
    if not _same_origin(request):
        raise web.HTTPForbidden(reason="cross-origin websocket refused")
    address = client_address(request, settings.trusted_proxies)
    if not hub.admits(address):
        log.warning("refused a websocket: too many open from one address")
        raise web.HTTPTooManyRequests(reason="too many open websockets from this address",
                                      headers={"Retry-After": "30"})
    staff: StaffIdentity | None = None
    session_hash: bytes | None = None
    token = request.cookies.get(SESSION_COOKIE)
    if token and token.isascii():  # patients have none: no database for them; ours are ASCII
        # Batched with other upgrades' checks (after a restart every staff page reconnects at once).
        session = await hub.staff_session(staff_db.token_hash(token))
        if session is not None:
            s = session.staff
            staff = StaffIdentity(s.id, s.facility_id, s.name, s.role)
            session_hash = staff_db.token_hash(token)
    # Frames up to 4× the message limit are read and answered with `too_large`; beyond that aiohttp
    # closes the socket with 1009 (a client sending megabytes is not making a mistake).
    # No permessage-deflate: signaling messages are small and deflate state costs ~100 KiB per socket.
    # No per-socket heartbeat: aiohttp's re-arms a timer on every frame received; signaling/liveness.py pings
    # silent sockets from one sweep instead, and needs to see their pongs (autoping=False: pings answered below).
    ws = _Socket(heartbeat=None, autoping=False, max_msg_size=settings.max_message_bytes * 4, compress=False)
    try:
        await ws.prepare(request)
    except ConnectionResetError:  # the client gave up during the handshake (a reconnect storm's backoff)
        return ws
    request.app[sockets_key].add(ws)
    client = hub.connect(ws, staff, staff_session=session_hash, address=address, transport=request.transport)
    ws.watch(client, hub)
    # The frames are read by a task of its own: each one then resumes that one coroutine, not this handler's
    # chain of middlewares (error, security, language, aiohttp's) it would otherwise run under.
    receiving = asyncio.create_task(_receive(ws, hub, client), name=f"ws-receive-{client.session}")
    try:
        await receiving
    finally:
        if not receiving.done():  # this handler was cancelled (shutdown): so is its receive loop
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
        ws.watch(None, None)
        await hub.disconnect(client)
        request.app[sockets_key].discard(ws)
        if not ws.closed:
            await ws.close(code=WSCloseCode.OK)
        if request.transport is not None:
            asyncio.get_running_loop().call_later(ABORT_AFTER_S, request.transport.abort)
    return ws


async def _receive(ws: web.WebSocketResponse, hub: Hub, client: Client) -> None:
    """Hand each frame to the hub until the socket closes."""
    async for msg in ws:
        client.heard = True
        if msg.type is WSMsgType.TEXT:
            client.busy = True  # frames arriving meanwhile queue behind this one (`_Frames`)
            try:
                await hub.handle_raw(client, msg.data)
            finally:
                client.busy = False
        elif msg.type is WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is WSMsgType.PONG:
            pass  # heard: that is all a pong says
        elif msg.type is WSMsgType.BINARY:
            await client.send(SignalingError("bad_message", "binary frames are not part of the protocol")
                              .as_message())
        elif msg.type is WSMsgType.ERROR:
            log.info("websocket error", extra={"session": client.session, "error": str(ws.exception())})
