"""Chat beside the video: every message kept in PostgreSQL, a resend stored once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class ChatMessage:
    id: int
    consultation_id: uuid.UUID
    sender: str  # patient | staff
    client_id: str
    body: str
    sent_at: datetime
    staff_id: int | None = None  # which staff member, when several are in the call


def _message(r: asyncpg.Record) -> ChatMessage:
    return ChatMessage(r["id"], r["consultation_id"], r["sender"], r["client_id"], r["body"], r["sent_at"],
                       r["staff_id"])


async def add(con: asyncpg.Connection, consultation_id: uuid.UUID, sender: str, staff_id: int | None,
              client_id: str, body: str) -> ChatMessage:
    """Store a message; the same (sender, client_id) sent twice returns the first copy."""
    row = await con.fetchrow(
        """INSERT INTO chat_message (consultation_id, sender, staff_id, client_id, body)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (consultation_id, sender, client_id) DO UPDATE SET client_id = EXCLUDED.client_id
           RETURNING *""",
        consultation_id, sender, staff_id, client_id, body,
    )
    return _message(row)


async def history(con: asyncpg.Connection, consultation_id: uuid.UUID, limit: int = 500) -> list[ChatMessage]:
    rows = await con.fetch(
        "SELECT * FROM (SELECT * FROM chat_message WHERE consultation_id = $1 ORDER BY id DESC LIMIT $2) m "
        "ORDER BY id", consultation_id, limit)
    return [_message(r) for r in rows]


async def histories(con: asyncpg.Connection, consultation_ids: Sequence[uuid.UUID],
                    limit: int = 500) -> dict[uuid.UUID, list[ChatMessage]]:
    """`history` of many consultations in one statement (joins after a restart); every id is a key."""
    ids = list(set(consultation_ids))
    rows = await con.fetch(
        "SELECT * FROM (SELECT m.*, row_number() OVER (PARTITION BY m.consultation_id ORDER BY m.id DESC) AS n "
        "FROM chat_message m WHERE m.consultation_id = ANY($1::uuid[])) m WHERE m.n <= $2 ORDER BY m.id",
        ids, limit)
    out: dict[uuid.UUID, list[ChatMessage]] = {i: [] for i in ids}
    for r in rows:
        out[r["consultation_id"]].append(_message(r))
    return out
