"""The baseline for signaling benchmarks: the least an aiohttp websocket relay can do.

A socket's first text frame names its room (`{"room": ...}`); the relay answers `{"type": "joined"}`
once (so the load generator knows the pairing is in place; the real server answers `joined` too) and
from then on forwards every text frame verbatim to the other socket of the room. No authentication,
no validation, no database, no JSON parsing after the first frame.

Run alone:  python bench/bare_relay.py --port 8099   (listens on 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import json

from aiohttp import WSMsgType, web

rooms_key = web.AppKey("rooms_key", dict[str, list[web.WebSocketResponse]])

JOINED = '{"type":"joined"}'


async def relay(request: web.Request) -> web.WebSocketResponse:
    """Pair by the room in the first frame, then forward text frames to the peer unchanged."""
    rooms = request.app[rooms_key]
    ws = web.WebSocketResponse(max_msg_size=256 * 1024)
    await ws.prepare(request)
    members: list[web.WebSocketResponse] | None = None
    room = ""
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            if members is None:
                room = str(json.loads(msg.data)["room"])
                members = rooms.setdefault(room, [])
                members.append(ws)
                await ws.send_str(JOINED)
                continue
            for peer in members:
                if peer is not ws and not peer.closed:
                    await peer.send_str(msg.data)
    finally:
        if members is not None:
            members.remove(ws)
            if not members:
                rooms.pop(room, None)
    return ws


def create_app() -> web.Application:
    """The baseline relay as an aiohttp application with one route, `/ws`."""
    app = web.Application()
    app[rooms_key] = {}
    app.router.add_get("/ws", relay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare aiohttp websocket relay (benchmark baseline).")
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (default: 8099)")
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
