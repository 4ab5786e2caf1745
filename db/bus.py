"""SQL of the cross-process bus (signaling/bus.py): NOTIFY, and rows for payloads NOTIFY cannot carry."""

from __future__ import annotations

import asyncpg

# Payload rows live this long: every listening process reads them within milliseconds of the notification.
KEEP = "5 minutes"


async def ping(con: asyncpg.Connection) -> None:
    """A round trip: does this connection still answer?"""
    await con.fetchval("SELECT 1")


async def notify(con: asyncpg.Connection, channel: str, payload: str) -> None:
    await con.execute("SELECT pg_notify($1, $2)", channel, payload)


async def store(con: asyncpg.Connection, body: str) -> int:
    """Keep a large payload; returns the id the notification carries. Old rows are removed on the way."""
    async with con.transaction():
        await con.execute(f"DELETE FROM bus_payload WHERE created_at < now() - interval '{KEEP}'")
        row_id: int = await con.fetchval("INSERT INTO bus_payload (body) VALUES ($1) RETURNING id", body)
    return row_id


async def load(con: asyncpg.Connection, row_id: int) -> str | None:
    body: str | None = await con.fetchval("SELECT body FROM bus_payload WHERE id = $1", row_id)
    return body
