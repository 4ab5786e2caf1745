"""Looking at every socket without holding up the sockets: the periodic scans go a slice at a time.

The hub's periodic loops look at every socket (liveness every `heartbeat / 2`, session and link checks every
few seconds, the requeue sweep). Their per-socket work is tiny, but a socket looked at once every few seconds
is cold in the CPU's caches: on the measuring machine (BENCHMARKS.md, "Signaling relay latency") a list over
1,000 idle sockets took ~11 ms and the liveness sweep ~18 ms, in one go, while every offer and candidate
that arrived meanwhile waited. Going `SCAN_SLICE` sockets at a time and letting the loop run between slices
costs the same in all and holds up a relayed message for about a millisecond at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")

SCAN_SLICE = 100


async def slices(items: Iterable[T], size: int = SCAN_SLICE) -> AsyncIterator[list[T]]:
    """`items` (copied first: the set may change meanwhile) `size` at a time, the loop running between."""
    everything = list(items)
    for start in range(0, len(everything), size):
        if start:
            await asyncio.sleep(0)
        yield everything[start:start + size]
