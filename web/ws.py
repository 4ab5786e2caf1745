"""`/ws`: one websocket per page. Thin: authenticate the staff cookie, then hand frames to the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSCloseCode, WSMsgType, web

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
    ws = web.WebSocketResponse(heartbeat=None, autoping=False, max_msg_size=settings.max_message_bytes * 4,
                               compress=False)
    try:
        await ws.prepare(request)
    except ConnectionResetError:  # the client gave up during the handshake (a reconnect storm's backoff)
        return ws
    request.app[sockets_key].add(ws)
    client = hub.connect(ws, staff, staff_session=session_hash, address=address, transport=request.transport)
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
            await hub.handle_raw(client, msg.data)
        elif msg.type is WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is WSMsgType.PONG:
            pass  # heard: that is all a pong says
        elif msg.type is WSMsgType.BINARY:
            await client.send(SignalingError("bad_message", "binary frames are not part of the protocol")
                              .as_message())
        elif msg.type is WSMsgType.ERROR:
            log.info("websocket error", extra={"session": client.session, "error": str(ws.exception())})
