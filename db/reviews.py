"""A specialist's review of a register patient, kept as a signed note version.

The hypertension and TB registers both record a review the same way: an ended, chat-only consultation
of the patient (its queue entry and consultation carry the register's `service`/`outcome`, e.g.
`htn_review`, `tb_review`) with version 1 of its note signed through `db.notes.sign`. So a review is
hashed, append-only (`note_version` refuses UPDATE and DELETE), audited `note.sign`, and sits in the
patient's history with every other signed note. The callers add their own audit event and register
changes in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg

from db import notes
from db.errors import DbError

REVIEW_MAX = 4000


def checked_text(text: str) -> str:
    """The review's text, stripped; `bad_review` unless it has 1 to 4000 characters."""
    text = text.strip()
    if not 1 <= len(text) <= REVIEW_MAX:
        raise DbError("bad_review", f"a review needs 1 to {REVIEW_MAX} characters")
    return text


async def sign_review(con: asyncpg.Connection, *, patient_id: int, facility_id: int, staff_id: int, service: str,
                      text: str, diagnoses: tuple[str, ...], follow_up_on: date | None,
                      now: datetime) -> notes.NoteVersion:
    """Sign `text` as the assessment of a new review note of the patient (inside the caller's transaction,
    or its own). Returns the signed version (its consultation id, sha256)."""
    text = checked_text(text)
    async with con.transaction():
        entry = await con.fetchval(
            "INSERT INTO queue_entry (patient_id, facility_id, service, triage_level, suggested_level, status, "
            "claimed_at, claimed_by, finished_at) VALUES ($1, $2, $3, 0, 0, 'done', $4, $5, $4) "
            "RETURNING id", patient_id, facility_id, service, now, staff_id)
        consultation_id: uuid.UUID = await con.fetchval(
            "INSERT INTO consultation (queue_entry_id, patient_id, doctor_id, status, modality, started_at, ended_at, "
            "ended_by, outcome) VALUES ($1, $2, $3, 'ended', 'chat', $4, $4, 'doctor', $5) RETURNING id",
            entry, patient_id, staff_id, now, service)
        return await notes.sign(con, consultation_id, staff_id, 0, notes.NoteContent(
            assessment=text, diagnoses=diagnoses, follow_up_on=follow_up_on))
