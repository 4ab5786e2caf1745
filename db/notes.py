"""Consult notes: drafts autosave; signing appends a version that is never overwritten."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from care.summary import Medicine, SummaryChoice
from db import audit
from db.errors import Conflict


@dataclass(frozen=True)
class NoteContent:
    subjective: str = ""
    objective: str = ""
    assessment: str = ""
    plan: str = ""
    vitals: dict[str, float] | None = None
    diagnoses: tuple[str, ...] = ()
    follow_up_on: date | None = None
    medicines: tuple[Medicine, ...] = ()
    # What the doctor shares with the patient (page and SMS); None: nothing.
    summary: SummaryChoice | None = None

    def medicines_json(self) -> list[dict[str, str]]:
        return [asdict(m) for m in self.medicines]

    def canonical(self) -> str:
        data = asdict(self)
        data["follow_up_on"] = self.follow_up_on.isoformat() if self.follow_up_on else None
        data["diagnoses"] = list(self.diagnoses)
        data["vitals"] = self.vitals or {}
        # Fields added later are sealed only when used, so older versions' digests stay reproducible.
        del data["medicines"], data["summary"]
        if self.medicines:
            data["medicines"] = self.medicines_json()
        if self.summary is not None:
            data["summary"] = self.summary.as_dict()
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class NoteVersion:
    consultation_id: uuid.UUID
    version: int
    content: NoteContent
    author_id: int
    author_name: str
    signed_at: datetime
    content_sha256: str


def _version(r: asyncpg.Record) -> NoteVersion:
    medicines = tuple(Medicine(m["drug"], m.get("dose", ""), m.get("how", "")) for m in r["medicines"])
    summary = SummaryChoice.from_dict(r["patient_summary"]) if r["patient_summary"] is not None else None
    content = NoteContent(r["subjective"], r["objective"], r["assessment"], r["plan"], dict(r["vitals"]),
                          tuple(r["diagnoses"]), r["follow_up_on"], medicines, summary)
    return NoteVersion(r["consultation_id"], r["version"], content, r["author_id"], r["author_name"],
                       r["signed_at"], r["content_sha256"])


async def save_draft(con: asyncpg.Connection, consultation_id: uuid.UUID, author_id: int, base_version: int,
                     content: dict[str, Any]) -> datetime:
    """Autosave: one draft per consultation and author, overwritten (drafts are not records)."""
    saved_at: datetime = await con.fetchval(
        """INSERT INTO note_draft (consultation_id, author_id, base_version, content)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (consultation_id, author_id)
           DO UPDATE SET base_version = EXCLUDED.base_version, content = EXCLUDED.content, saved_at = now()
           RETURNING saved_at""",
        consultation_id, author_id, base_version, content,
    )
    return saved_at


async def draft(con: asyncpg.Connection, consultation_id: uuid.UUID, author_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await con.fetchrow(
        "SELECT base_version, content, saved_at FROM note_draft WHERE consultation_id = $1 AND author_id = $2",
        consultation_id, author_id)
    return row


async def sign(con: asyncpg.Connection, consultation_id: uuid.UUID, author_id: int, expected_version: int,
               content: NoteContent) -> NoteVersion:
    """Append version `expected_version + 1`. If someone signed since, refuse: nothing is silently overwritten."""
    async with con.transaction():
        # Lock the consultation row so two signers serialise instead of racing for the same version number.
        await con.execute("SELECT 1 FROM consultation WHERE id = $1 FOR UPDATE", consultation_id)
        latest = await con.fetchval(
            "SELECT coalesce(max(version), 0) FROM note_version WHERE consultation_id = $1", consultation_id)
        if latest != expected_version:
            raise Conflict("stale_version",
                           f"the note is at version {latest}, not {expected_version}: someone signed since "
                           "you opened it; reload and edit the latest version")
        version = latest + 1
        digest = hashlib.sha256(
            f"{consultation_id}|{version}|{author_id}|{content.canonical()}".encode()).hexdigest()
        await con.execute(
            """INSERT INTO note_version (consultation_id, version, subjective, objective, assessment, plan,
                                         vitals, diagnoses, follow_up_on, author_id, content_sha256, medicines,
                                         patient_summary)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            consultation_id, version, content.subjective, content.objective, content.assessment, content.plan,
            content.vitals or {}, list(content.diagnoses), content.follow_up_on, author_id, digest,
            content.medicines_json(), content.summary.as_dict() if content.summary is not None else None,
        )
        await con.execute("DELETE FROM note_draft WHERE consultation_id = $1 AND author_id = $2",
                          consultation_id, author_id)
        await audit.record(con, audit.Actor.staff(author_id), "note.sign", "consultation", consultation_id,
                           {"version": version, "sha256": digest})
        signed = await versions(con, consultation_id)
        return signed[-1]


async def versions(con: asyncpg.Connection, consultation_id: uuid.UUID) -> list[NoteVersion]:
    """Every signed version, oldest first; the last is the record."""
    rows = await con.fetch(
        "SELECT n.*, s.name AS author_name FROM note_version n JOIN staff s ON s.id = n.author_id "
        "WHERE n.consultation_id = $1 ORDER BY n.version", consultation_id)
    return [_version(r) for r in rows]


async def latest_for_link(con: asyncpg.Connection, jti: uuid.UUID) -> tuple[NoteVersion, datetime] | None:
    """The record (latest signed version) of the latest consultation reached through a join link, with
    that consultation's start: what a patient holding the link may read of their visit."""
    row = await con.fetchrow(
        """SELECT c.id, c.started_at FROM consultation c JOIN queue_entry q ON q.id = c.queue_entry_id
           WHERE q.link_jti = $1 AND c.status = 'ended' ORDER BY c.started_at DESC LIMIT 1""", jti)
    if row is None:
        return None
    signed = await versions(con, row["id"])
    return (signed[-1], row["started_at"]) if signed else None
