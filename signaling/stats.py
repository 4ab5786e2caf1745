"""What the hub did since the process started, counted in memory for /metrics (web/metrics.py).

Plain counters, so the hub stays free of any metrics library and a scrape only reads them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class HubStats:
    """Monotonic counts for this process (Prometheus counters: they only grow until a restart)."""

    relayed: Counter[str] = field(default_factory=Counter)  # message type → messages passed to a room's peer
    # Of those, offers, answers and candidates relayed as their frame was parsed (Hub.relay_now, web/ws.py).
    relayed_on_arrival: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # error code → messages answered with `error`
    claims: int = 0  # patients a doctor took (socket claim or a page such as the day's schedule)
    # Group commit (signaling/batch.py): batches run and the items they carried, by kind (claims, ends).
    batches: Counter[str] = field(default_factory=Counter)
    batched: Counter[str] = field(default_factory=Counter)
    broadcasts: int = 0  # queue broadcasts (lists to staff, places to patients) and the seconds they took
    broadcast_s: float = 0.0
