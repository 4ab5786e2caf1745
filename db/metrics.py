"""Figures for /metrics read from PostgreSQL: the waiting queue by triage level and the message backlog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class WaitingGroup:
    level: int  # triage level 0–4 (NC0–NC4)
    danger_signs: bool
    patients: int
    oldest_wait_s: float


async def waiting_groups(con: asyncpg.Connection) -> list[WaitingGroup]:
    """Patients waiting now, by triage level and whether a danger sign was reported, with the longest wait."""
    rows = await con.fetch(
        """SELECT triage_level, cardinality(danger_signs) > 0 AS danger, count(*) AS patients,
                  extract(epoch FROM now() - min(coalesce(requeued_at, arrived_at))) AS oldest
           FROM queue_entry WHERE status = 'waiting'
           GROUP BY 1, 2 ORDER BY 1, 2""")
    return [WaitingGroup(r["triage_level"], r["danger"], r["patients"], max(0.0, float(r["oldest"])))
            for r in rows]


@dataclass(frozen=True)
class MessageBacklog:
    due: int  # messages whose time has come and that are not sent yet
    lag_s: float  # how long the oldest of them has been due (0 when none)


async def message_backlog(con: asyncpg.Connection, now: datetime) -> MessageBacklog:
    """Scheduled messages already due at `now` (the application clock): what the scheduler has yet to send."""
    row = await con.fetchrow(
        """SELECT count(*) AS due, min(coalesce(next_attempt_at, due_at)) AS oldest FROM outbound_message
           WHERE status IN ('scheduled', 'sending') AND coalesce(next_attempt_at, due_at) <= $1""", now)
    assert row is not None
    oldest: datetime | None = row["oldest"]
    return MessageBacklog(row["due"], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
