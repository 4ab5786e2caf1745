"""Short links: a random code for a join link (so an SMS fits one segment), and the count of unknown
codes tried per client address (so codes cannot be guessed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

from care.short_code import new_code


async def code_for(con: asyncpg.Connection, jti: uuid.UUID) -> str:
    """The link's short code, created on first use (one per link, whoever asks first)."""
    existing: str | None = await con.fetchval("SELECT code FROM short_link WHERE link_jti = $1", jti)
    if existing is not None:
        return existing
    for _ in range(5):  # a collision of two random 71-bit codes is near impossible; retry anyway
        try:
            async with con.transaction():  # a savepoint when the caller has a transaction open
                code: str | None = await con.fetchval(
                    """INSERT INTO short_link (code, link_jti) VALUES ($1, $2)
                       ON CONFLICT (link_jti) DO NOTHING RETURNING code""", new_code(), jti)
        except asyncpg.UniqueViolationError:
            continue
        if code is not None:
            return code
        raced: str = await con.fetchval("SELECT code FROM short_link WHERE link_jti = $1", jti)
        return raced
    raise RuntimeError("could not draw an unused short code")  # pragma: no cover


async def resolve(con: asyncpg.Connection, code: str) -> uuid.UUID | None:
    """The join link a code stands for, or None for an unknown code."""
    jti: uuid.UUID | None = await con.fetchval("SELECT link_jti FROM short_link WHERE code = $1", code)
    return jti


async def blocked(con: asyncpg.Connection, address: str, now: datetime, *, window: timedelta,
                  max_misses: int) -> bool:
    """Has `address` tried `max_misses` unknown codes within the current window?"""
    misses: int | None = await con.fetchval(
        "SELECT misses FROM short_link_miss WHERE address = $1 AND window_start > $2::timestamptz - $3::interval",
        address, now, window)
    return misses is not None and misses >= max_misses


async def record_miss(con: asyncpg.Connection, address: str, now: datetime, *, window: timedelta) -> int:
    """Count one unknown code from `address`; a new window starts when the last one has passed.
    Returns the misses in the current window."""
    misses: int = await con.fetchval(
        """INSERT INTO short_link_miss AS m (address, window_start, misses) VALUES ($1, $2, 1)
           ON CONFLICT (address) DO UPDATE SET
               misses = CASE WHEN m.window_start <= $2::timestamptz - $3::interval THEN 1 ELSE m.misses + 1 END,
               window_start = CASE WHEN m.window_start <= $2::timestamptz - $3::interval THEN $2
                                   ELSE m.window_start END
           RETURNING misses""", address, now, window)
    # Forget a few addresses whose window has passed, so the table holds only the last window's guessers.
    await con.execute(
        """DELETE FROM short_link_miss WHERE address IN (
               SELECT address FROM short_link_miss WHERE window_start <= $1::timestamptz - $2::interval
               ORDER BY window_start LIMIT 100 FOR UPDATE SKIP LOCKED)""", now, window)
    return misses
