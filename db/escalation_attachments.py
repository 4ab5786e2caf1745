"""Attachments of a request for an opinion: metadata rows (the bytes are files, see web/attachment_store.py).

Adding one locks the escalation row, so the per-request limit holds under concurrent uploads, and writes
the row with its audit event in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from care.attachments import AttachmentError, Kind, check_count
from db import audit
from db.errors import DbError, NotFound


@dataclass(frozen=True)
class Attachment:
    id: uuid.UUID
    escalation_id: uuid.UUID
    uploaded_by: int
    kind: Kind
    size_bytes: int
    sha256: str
    file_name: str
    enhanced_of: uuid.UUID | None
    created_at: datetime


def _attachment(r: asyncpg.Record) -> Attachment:
    return Attachment(r["id"], r["escalation_id"], r["uploaded_by"], Kind(r["kind"]), r["size_bytes"], r["sha256"],
                      r["file_name"], r["enhanced_of"], r["created_at"])


async def add(con: asyncpg.Connection, attachment: Attachment) -> Attachment:
    """Record a stored file. DbError `too_many_files` past the limit (enhanced copies do not count),
    `finished` on a closed or cancelled request."""
    async with con.transaction():
        status = await con.fetchval("SELECT status FROM escalation WHERE id = $1 FOR UPDATE",
                                    attachment.escalation_id)
        if status is None:
            raise NotFound("escalation", attachment.escalation_id)
        if status in ("closed", "cancelled"):
            raise DbError("finished", f'cannot attach to escalation in state "{status}"')
        if attachment.enhanced_of is None:
            existing = await con.fetchval("SELECT count(*) FROM escalation_attachment "
                                          "WHERE escalation_id = $1 AND enhanced_of IS NULL", attachment.escalation_id)
            try:
                check_count(existing)
            except AttachmentError as refused:
                raise DbError(refused.code, refused.message) from None
        row = await con.fetchrow(
            """INSERT INTO escalation_attachment (id, escalation_id, uploaded_by, kind, size_bytes, sha256, file_name,
                                                  enhanced_of, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
            attachment.id, attachment.escalation_id, attachment.uploaded_by, attachment.kind.value,
            attachment.size_bytes, attachment.sha256, attachment.file_name, attachment.enhanced_of,
            attachment.created_at)
        await audit.record(con, audit.Actor.staff(attachment.uploaded_by),
                           "escalation.enhance" if attachment.enhanced_of else "escalation.attach", "escalation",
                           attachment.escalation_id, {"attachment": str(attachment.id), "sha256": attachment.sha256})
    return _attachment(row)


async def count(con: asyncpg.Connection, escalation_id: uuid.UUID) -> int:
    value: int = await con.fetchval("SELECT count(*) FROM escalation_attachment WHERE escalation_id = $1 "
                                    "AND enhanced_of IS NULL", escalation_id)
    return value


async def get(con: asyncpg.Connection, escalation_id: uuid.UUID, attachment_id: uuid.UUID) -> Attachment | None:
    row = await con.fetchrow("SELECT * FROM escalation_attachment WHERE id = $1 AND escalation_id = $2",
                             attachment_id, escalation_id)
    return _attachment(row) if row else None


async def for_escalation(con: asyncpg.Connection, escalation_id: uuid.UUID) -> list[Attachment]:
    rows = await con.fetch("SELECT * FROM escalation_attachment WHERE escalation_id = $1 ORDER BY created_at, id",
                           escalation_id)
    return [_attachment(r) for r in rows]


async def record_read(con: asyncpg.Connection, staff_id: int, attachment: Attachment) -> None:
    await audit.record(con, audit.Actor.staff(staff_id), "escalation.attachment_read", "escalation",
                       attachment.escalation_id, {"attachment": str(attachment.id)})
