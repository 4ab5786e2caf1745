"""Which sockets are still there: one sweep over every socket, instead of a heartbeat timer per socket.

A phone that loses its network does not close its socket; the server finds out by pinging it. aiohttp's own
heartbeat (`WebSocketResponse(heartbeat=...)`) does that per socket by re-arming a timer on every frame the
socket receives: a loop callback per relayed offer and candidate, in the hot path of every call's set-up
(BENCHMARKS.md, "Signaling relay latency"). Here the receive loop only notes that it heard from a socket (one
attribute), and one task looks at every socket each half interval: a socket heard from since the last look is
left alone; one silent for a whole look is pinged (through its own writer, after what is queued for it); one
still silent at the next look after its ping — no pong, no frame — is dropped, as aiohttp's heartbeat drops
it. So a silent socket is pinged after `interval` to 1.5 × `interval` of silence and dropped `interval` / 2
later: aiohttp's timing (ping after `interval`, pong within `interval` / 2), within half an interval.
The sweep goes a slice of sockets at a time (signaling/scan.py), so relaying never waits for all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from signaling.rooms import Client
from signaling.scan import slices

log = logging.getLogger(__name__)


def sweep(clients: Collection[Client]) -> int:
    """One look at every socket (see the module docstring); returns how many were dropped."""
    dropped = 0
    for client in list(clients):
        if client.heard:
            client.heard = False
            client.pinged = False
        elif not client.pinged:
            client.pinged = True
            client.ping()
        else:
            client.drop()
            dropped += 1
    return dropped


async def run(clients: Callable[[], Collection[Client]], interval_s: float) -> None:
    """Sweep `clients()` every `interval_s` / 2 seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval_s / 2)
        dropped = 0
        async for part in slices(clients()):
            dropped += sweep(part)
        if dropped:
            log.info("dropped %d sockets that stopped answering pings", dropped)
