"""The device check's connection test: the patient's browser sends its camera and microphone to an aiortc
peer on this server, which sends them straight back; the page shows round-trip time, loss and bitrate and
suggests audio only when video would not get through. At most a few tests run at once (each costs a
VP8 decode and encode)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from media.echo import EchoPeers
from media.errors import MediaError, MediaErrorCode
from web.auth import ice_servers
from web.errors import ApiError
from web.keys import settings_key
from web.patient_routes import bearer_link, decode_body

# How long one test may run before the server ends it, whatever the page does.
MAX_TEST_S = 20.0
MAX_CONCURRENT_TESTS = 4


class EchoOffer(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["offer"]
    sdp: Annotated[str, msgspec.Meta(min_length=1, max_length=32_000)]


@dataclass
class ConnectionTests:
    """The echo peers, and which join link opened each (a patient sees only their own test)."""

    peers: EchoPeers
    owners: dict[str, uuid.UUID] = field(default_factory=dict)


tests_key = web.AppKey("tests_key", ConnectionTests)

_STATUS = {MediaErrorCode.BUSY: 503, MediaErrorCode.BAD_OFFER: 400, MediaErrorCode.NOT_FOUND: 404,
           MediaErrorCode.CLOSED: 409}


def _api_error(exc: MediaError) -> ApiError:
    return ApiError(str(exc.code), exc.message, status=_STATUS.get(exc.code, 400))


async def _tests_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    tests = ConnectionTests(EchoPeers(max_peers=MAX_CONCURRENT_TESTS, ice_servers=lambda: ice_servers(settings),
                                      max_duration_s=MAX_TEST_S))
    app[tests_key] = tests
    yield
    await tests.peers.close_all()


async def start(request: web.Request) -> web.Response:
    """POST an SDP offer (complete: no trickle), get the echo peer's answer."""
    link = await bearer_link(request)
    offer = decode_body(await request.read(), EchoOffer)
    tests = request.app[tests_key]
    try:
        peer, answer = await tests.peers.open({"type": offer.type, "sdp": offer.sdp})
    except MediaError as exc:
        raise _api_error(exc) from None
    tests.owners = {k: v for k, v in tests.owners.items() if tests.peers.is_live(k)}  # forget ended tests
    tests.owners[peer.id] = link.jti
    return web.json_response({"test": peer.id, "type": answer["type"], "sdp": answer["sdp"]}, status=201)


async def _own_peer(request: web.Request) -> tuple[ConnectionTests, str]:
    link = await bearer_link(request)
    tests = request.app[tests_key]
    peer_id = request.match_info["test"]
    if tests.owners.get(peer_id) != link.jti:
        raise ApiError("not_found", "no such connection test")
    return tests, peer_id


async def stats(request: web.Request) -> web.Response:
    """What the server measured so far (also after the test ended by itself)."""
    tests, peer_id = await _own_peer(request)
    try:
        s = await tests.peers.get(peer_id).stats()
    except MediaError as exc:
        raise _api_error(exc) from None
    loss = s.loss_fraction
    kbps = s.receive_kbps
    return web.json_response({
        "rtt_ms": None if s.rtt_ms is None else round(s.rtt_ms),
        "loss_pct": None if loss is None else round(100 * loss, 1),
        "kbps_up": None if kbps is None else round(kbps),
        "video_frames": s.video_frames, "audio_frames": s.audio_frames,
        "connection_state": s.connection_state, "closed": s.closed,
    })


async def stop(request: web.Request) -> web.Response:
    tests, peer_id = await _own_peer(request)
    try:
        await tests.peers.get(peer_id).close()
    except MediaError:
        pass  # it already ended by itself (max duration): stopping twice is fine
    tests.owners.pop(peer_id, None)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_tests_ctx)
    app.router.add_post("/api/p/connection-test", start)
    app.router.add_get("/api/p/connection-test/{test}", stats)
    app.router.add_delete("/api/p/connection-test/{test}", stop)
