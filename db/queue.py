"""The waiting queue: triage-ordered, claimed atomically, nobody lost.

Order: higher triage level first; within a level, patients put back after their doctor dropped
come first, then earliest arrival. Claims lock with `FOR UPDATE SKIP LOCKED`, so concurrent
doctors each get a different patient and never wait on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from db import audit
from db.errors import Conflict, DbError, NotFound

# A patient back after the offline grace period queues again from when they came back (`rejoined_at`).
ORDER = "q.triage_level DESC, (q.requeued_at IS NULL), coalesce(q.rejoined_at, q.arrived_at), q.id"

# Facilities a staff member serves: their own and every facility below it (db/scope.py, migration 0007).
IN_SCOPE = "q.facility_id IN (SELECT facility_subtree($1))"


@dataclass(frozen=True)
class QueueEntry:
    id: uuid.UUID
    patient_id: int
    facility_id: int
    triage_level: int
    danger_signs: tuple[str, ...]
    reason: str
    status: str
    arrived_at: datetime
    consultation_id: uuid.UUID | None
    audio_only: bool
    suggested_level: int | None = None
    # What the patient answered at check-in (symptoms, readings, the rules that fired, connection test).
    checkin: dict[str, Any] = field(default_factory=dict)
    left_at: datetime | None = None  # when the patient's last open page went away (None: a page is open)
    closed_reason: str | None = None


def _entry(row: asyncpg.Record) -> QueueEntry:
    return QueueEntry(row["id"], row["patient_id"], row["facility_id"], row["triage_level"],
                      tuple(row["danger_signs"]), row["reason"], row["status"], row["arrived_at"],
                      row["consultation_id"], row["audio_only"], row["suggested_level"], row["checkin"] or {},
                      row["left_at"], row["closed_reason"])


_ENTRY_SELECT = """SELECT q.*, c.id AS consultation_id
                   FROM queue_entry q
                   LEFT JOIN consultation c ON c.queue_entry_id = q.id AND c.status = 'active'"""


async def enqueue(con: asyncpg.Connection, *, patient_id: int, link_jti: uuid.UUID | None, facility_id: int,
                  level: int, danger_signs: tuple[str, ...], reason: str, checkin: dict[str, Any],
                  audio_only: bool) -> tuple[QueueEntry, bool]:
    """Put the patient in the queue; returns (entry, created). An open entry is reused, never doubled."""
    async with con.transaction():
        new_id = await con.fetchval(
            """INSERT INTO queue_entry (patient_id, link_jti, facility_id, triage_level, suggested_level,
                                        danger_signs, reason, checkin, audio_only)
               VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)
               ON CONFLICT (patient_id) WHERE status IN ('waiting', 'claimed', 'in_call') DO NOTHING
               RETURNING id""",
            patient_id, link_jti, facility_id, level, list(danger_signs), reason, checkin, audio_only,
        )
        if new_id is not None:
            await audit.record(con, audit.Actor.patient(patient_id), "queue.join", "queue_entry", new_id,
                               {"level": level, "danger": list(danger_signs)})
        entry = await open_entry(con, patient_id)
    assert entry is not None
    return entry, new_id is not None


async def open_entry(con: asyncpg.Connection, patient_id: int) -> QueueEntry | None:
    """The patient's waiting/claimed/in-call entry, if any."""
    row = await con.fetchrow(_ENTRY_SELECT + " WHERE q.patient_id = $1 AND q.status IN "
                             "('waiting', 'claimed', 'in_call')", patient_id)
    return _entry(row) if row else None


async def get_entry(con: asyncpg.Connection, entry_id: uuid.UUID) -> QueueEntry | None:
    row = await con.fetchrow(_ENTRY_SELECT + " WHERE q.id = $1", entry_id)
    return _entry(row) if row else None


async def waiting_list(con: asyncpg.Connection, facility_id: int,
                       limit: int | None = None) -> list[asyncpg.Record]:
    """The queue a staff member of `facility_id` sees, in claim order, with what the screen shows; with
    `limit`, only the first `limit` (each row's `total` counts them all: the screen shows the count)."""
    rows: list[asyncpg.Record] = await con.fetch(
        f"""
        SELECT q.id, q.triage_level, q.danger_signs, q.reason, q.arrived_at, q.requeued_at, q.audio_only,
               q.checkin, q.facility_id, q.left_at, q.total, f.name AS facility_name,
               p.id AS patient_id, p.name AS patient_name, p.sex, p.birth_year, p.key_groups
        FROM (SELECT q.*, count(*) OVER () AS total FROM queue_entry q
              WHERE q.status = 'waiting' AND {IN_SCOPE}
              ORDER BY {ORDER} LIMIT $2) q
        JOIN patient p ON p.id = q.patient_id JOIN facility f ON f.id = q.facility_id
        ORDER BY {ORDER}""",
        facility_id, limit,
    )
    return rows


async def waiting_places(con: asyncpg.Connection) -> dict[int, tuple[uuid.UUID, int, int]]:
    """patient id → (entry id, 1-based place in their facility's queue, facility id) for everyone waiting
    with a page open. Patients who left are not counted: "take next" skips them, so they are in nobody's way."""
    rows = await con.fetch(
        f"""SELECT q.id, q.patient_id, q.facility_id,
                   row_number() OVER (PARTITION BY q.facility_id ORDER BY {ORDER}) AS place
            FROM queue_entry q WHERE q.status = 'waiting' AND q.left_at IS NULL""")
    return {r["patient_id"]: (r["id"], int(r["place"]), r["facility_id"]) for r in rows}


async def mean_consultation_seconds(con: asyncpg.Connection, default: float = 600.0) -> float:
    """Mean length of the last 20 finished consultations (the default before there are any)."""
    value = await con.fetchval(
        """SELECT avg(extract(epoch FROM ended_at - started_at)) FROM (
               SELECT started_at, ended_at FROM consultation WHERE status = 'ended'
               ORDER BY ended_at DESC LIMIT 20) recent"""
    )
    return float(value) if value else default


@dataclass(frozen=True)
class Claim:
    consultation_id: uuid.UUID
    entry_id: uuid.UUID
    patient_id: int


# Claim the picked row in one statement: the entry claimed and the consultation opened (one round trip
# instead of five: the update, a savepoint, the insert and its release). `pick` is a CTE that yields at
# most one locked waiting entry; its parameters: $1 the doctor's facility, $2 the doctor, then its own.
def _claim_sql(pick: str) -> str:
    return f"""
        WITH pick AS ({pick}),
        claimed AS (
            UPDATE queue_entry q SET status = 'claimed', claimed_at = now(), claimed_by = $2
            FROM pick WHERE q.id = pick.id
            RETURNING q.id, q.patient_id, q.audio_only)
        INSERT INTO consultation (queue_entry_id, patient_id, doctor_id, modality)
        SELECT id, patient_id, $2, CASE WHEN audio_only THEN 'audio' ELSE 'video' END FROM claimed
        RETURNING id, queue_entry_id, patient_id"""


_CLAIM_NEXT = _claim_sql(f"""
    SELECT q.id FROM queue_entry q
    WHERE q.status = 'waiting' AND q.left_at IS NULL AND {IN_SCOPE}
    ORDER BY {ORDER}
    LIMIT 1 FOR UPDATE OF q SKIP LOCKED""")

_CLAIM_ENTRY = _claim_sql(f"""
    SELECT q.id FROM queue_entry q
    WHERE q.id = $3 AND q.status = 'waiting' AND {IN_SCOPE}
    FOR UPDATE OF q SKIP LOCKED""")


async def _claim(con: asyncpg.Connection, doctor_id: int, sql: str, *args: object) -> Claim | None:
    """Run a claim statement and audit it (inside the caller's transaction, or one of ours: no savepoint,
    since a failure aborts the whole claim anyway)."""
    if not con.is_in_transaction():
        async with con.transaction():
            return await _claim(con, doctor_id, sql, *args)
    try:
        row = await con.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "consultation_one_active_per_doctor":
            raise
        raise Conflict("doctor_busy", "you already have an active consultation; end it first") from None
    if row is None:
        return None
    # Last in the transaction: the audit lock is held from here to the commit.
    await audit.record(con, audit.Actor.staff(doctor_id), "queue.claim", "queue_entry", row["queue_entry_id"],
                       {"consultation": str(row["id"])})
    return Claim(row["id"], row["queue_entry_id"], row["patient_id"])


async def claim_next(con: asyncpg.Connection, doctor_id: int, facility_id: int) -> Claim | None:
    """Atomically take the first waiting patient in the doctor's scope whose page is open; None when nobody
    waits. Patients who left keep their place (see `patient_present`) but are not handed out: a doctor may
    still choose one with `claim_entry`."""
    return await _claim(con, doctor_id, _CLAIM_NEXT, facility_id, doctor_id)


async def claim_entry(con: asyncpg.Connection, doctor_id: int, facility_id: int,
                      entry_id: uuid.UUID) -> Claim:
    """Atomically take one chosen patient; Conflict if somebody else has them or they left."""
    claim = await _claim(con, doctor_id, _CLAIM_ENTRY, facility_id, doctor_id, entry_id)
    if claim is not None:
        return claim
    row = await con.fetchrow(
        f"""
        SELECT q.status FROM queue_entry q WHERE q.id = $2 AND {IN_SCOPE}""",
        facility_id, entry_id)
    # Outside the doctor's scope is "no such entry", not "someone else took it".
    if row is None:
        raise NotFound("queue entry", entry_id)
    if row["status"] != "waiting":
        raise Conflict("already_claimed", f"cannot claim queue entry in state \"{row['status']}\"")
    raise Conflict("already_claimed", f"queue entry {entry_id} is being claimed by someone else")


# ---- claims in batches (group commit: signaling/batch.py, migration 0024) ------------------------------


@dataclass(frozen=True)
class ClaimAsk:
    """One claim of a batch: a doctor of `facility_id` takes `entry_id`, or with None the next patient."""

    doctor_id: int
    facility_id: int
    entry_id: uuid.UUID | None = None


# What a claim of a batch got: the claim, None when nobody waits (claim_next), or the refusal the single
# claim (`claim_next` / `claim_entry`) raises in the same case, with the same code and message.
ClaimOutcome = Claim | DbError | None


def _refusal(ask: ClaimAsk, reason: str, status: str | None) -> DbError | None:
    if reason == "queue_empty":
        return None
    if reason == "doctor_busy":
        return Conflict("doctor_busy", "you already have an active consultation; end it first")
    if reason == "not_found":
        return NotFound("queue entry", ask.entry_id)
    if reason == "already_claimed" and status != "waiting":
        return Conflict("already_claimed", f"cannot claim queue entry in state \"{status}\"")
    if reason == "already_claimed":
        return Conflict("already_claimed", f"queue entry {ask.entry_id} is being claimed by someone else")
    raise ValueError(f"unknown claim refusal {reason!r}")  # pragma: no cover - the SQL says only the above


# What a claim's `queue.claim` event holds, with the placeholders queue_claim_batch fills in (migration 0024).
_ENTRY, _CONSULTATION = "@@entry@@", "@@consultation@@"


async def claim_batch(con: asyncpg.Connection, asks: Sequence[ClaimAsk]) -> list[ClaimOutcome]:
    """Every claim of a batch and its `queue.claim` audit event in one statement (outside a transaction, its
    own: one round trip, the chain's lock held from the append to the commit only): each pick in claim order,
    index-driven, never the same entry twice, then one append for all the events. One outcome per ask, in
    order. A database error (a doctor made busy by another transaction at the same moment, say) fails the
    whole batch and changes nothing: the caller then runs the asks one by one."""
    if not asks:
        return []
    events = [audit.Event(audit.Actor.staff(a.doctor_id), "queue.claim", "queue_entry", _ENTRY,
                          {"consultation": _CONSULTATION}) for a in asks]
    rows = await con.fetch(
        "SELECT * FROM queue_claim_batch($1::bigint[], $2::bigint[], $3::uuid[], $4, $5::text[], $6::text[]) "
        "ORDER BY n",
        [a.doctor_id for a in asks], [a.facility_id for a in asks], [a.entry_id for a in asks], audit.LOCK_KEY,
        [audit.canonical_rest(e) for e in events], [audit.details_text(e) for e in events])
    return [Claim(row["consultation_id"], row["entry_id"], row["patient_id"]) if row["consultation_id"] is not None
            else _refusal(ask, row["reason"], row["entry_status"]) for ask, row in zip(asks, rows, strict=True)]


async def entry_relations(con: asyncpg.Connection,
                          asks: Sequence[tuple[uuid.UUID, int]]) -> list[tuple[int, str] | None]:
    """For each (entry id, staff facility): the entry's facility and where it sits from the staff member's
    facility (db/scope.py's relation), or None when there is no such entry. One query for a batch."""
    rows = await con.fetch(
        """SELECT i.n, q.facility_id, facility_relation(i.fac, q.facility_id) AS relation
           FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS i(entry, fac, n)
           JOIN queue_entry q ON q.id = i.entry""", [a[0] for a in asks], [a[1] for a in asks])
    found = {int(r["n"]): (int(r["facility_id"]), str(r["relation"])) for r in rows}
    return [found.get(n) for n in range(1, len(asks) + 1)]


async def change_level(con: asyncpg.Connection, entry_id: uuid.UUID, level: int, staff_id: int) -> None:
    """A doctor overrides the suggested triage level (audited with the old and new level)."""
    async with con.transaction():
        old = await con.fetchval("SELECT triage_level FROM queue_entry WHERE id = $1 FOR UPDATE", entry_id)
        if old is None:
            raise NotFound("queue entry", entry_id)
        await con.execute("UPDATE queue_entry SET triage_level = $2 WHERE id = $1", entry_id, level)
        await audit.record(con, audit.Actor.staff(staff_id), "queue.change_level", "queue_entry", entry_id,
                           {"from": old, "to": level})


# ---- presence: is the patient's page open? ------------------------------------------------------------

_OPEN = "status IN ('waiting', 'claimed', 'in_call')"


async def patient_present(con: asyncpg.Connection, patient_id: int, offline_grace_s: int) -> None:
    """A page of the patient is open (again). Back within `offline_grace_s` of leaving, they keep their
    place; later, they queue again from now at their triage level."""
    await con.execute(
        f"""UPDATE queue_entry
            SET rejoined_at = CASE WHEN status = 'waiting' AND left_at < now() - make_interval(secs => $2)
                                   THEN now() ELSE rejoined_at END,
                left_at = NULL
            WHERE patient_id = $1 AND {_OPEN} AND left_at IS NOT NULL""", patient_id, float(offline_grace_s))


async def patients_back(con: asyncpg.Connection, patient_ids: Sequence[int], offline_grace_s: int) -> set[int]:
    """`patient_present` for many patients, and which of them have an open entry (waiting, claimed or in a
    call), in one statement: what patient hellos need when every page reconnects at once."""
    rows = await con.fetch(
        f"""WITH back AS (
                UPDATE queue_entry
                SET rejoined_at = CASE WHEN status = 'waiting' AND left_at < now() - make_interval(secs => $2)
                                       THEN now() ELSE rejoined_at END,
                    left_at = NULL
                WHERE patient_id = ANY($1::bigint[]) AND {_OPEN} AND left_at IS NOT NULL)
            SELECT DISTINCT patient_id FROM queue_entry WHERE patient_id = ANY($1::bigint[]) AND {_OPEN}""",
        list(set(patient_ids)), float(offline_grace_s))
    return {row["patient_id"] for row in rows}


async def patient_left(con: asyncpg.Connection, patient_id: int) -> None:
    """The patient's last open page went away."""
    await con.execute(f"UPDATE queue_entry SET left_at = now() WHERE patient_id = $1 AND {_OPEN} "
                      "AND left_at IS NULL", patient_id)


async def everyone_left(con: asyncpg.Connection, present_elsewhere: Sequence[int] = ()) -> int:
    """At server start no page is connected here yet: everyone is offline until their page reconnects, but
    for the patients whose page another process holds (`present_elsewhere`, several processes)."""
    status = await con.execute(f"UPDATE queue_entry SET left_at = now() WHERE {_OPEN} AND left_at IS NULL "
                               "AND NOT (patient_id = ANY($1::int[]))", list(present_elsewhere))
    return int(status.split()[-1])


async def recent_no_shows(con: asyncpg.Connection, facility_id: int, since: datetime,
                          limit: int = 20) -> list[asyncpg.Record]:
    """Entries closed as no-show in the staff member's scope since `since`, newest first, with the reason."""
    rows: list[asyncpg.Record] = await con.fetch(
        f"""
        SELECT q.id, q.triage_level, q.danger_signs, q.closed_reason, q.finished_at, q.arrived_at,
               p.id AS patient_id, p.name AS patient_name
        FROM queue_entry q JOIN patient p ON p.id = q.patient_id
        WHERE q.status = 'no_show' AND q.finished_at >= $2 AND {IN_SCOPE}
        ORDER BY q.finished_at DESC LIMIT $3""", facility_id, since, limit)
    return rows


@dataclass(frozen=True)
class Cancelled:
    """A queue entry closed because the patient's access ended, and the consultation that ended with it."""

    entry_id: uuid.UUID
    patient_id: int
    consultation_id: uuid.UUID | None


async def cancel_for_link(con: asyncpg.Connection, link_jti: uuid.UUID, actor: audit.Actor,
                          reason: str) -> Cancelled | None:
    """The link the patient checked in with was revoked: their open queue entry is closed as `cancelled`
    (with the reason) and its active consultation, if any, ends. Notes, chat and history stay.
    None when the link has no open entry. Audited; one transaction (the caller's, if it has one)."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT id, patient_id FROM queue_entry
               WHERE link_jti = $1 AND status IN ('waiting', 'claimed', 'in_call') FOR UPDATE""", link_jti)
        if row is None:
            return None
        consultation_id: uuid.UUID | None = await con.fetchval(
            """UPDATE consultation SET status = 'ended', ended_at = now(), ended_by = 'system', outcome = $2
               WHERE queue_entry_id = $1 AND status = 'active' RETURNING id""", row["id"], reason)
        await con.execute(
            """UPDATE queue_entry SET status = 'cancelled', finished_at = now(), cancel_reason = $2
               WHERE id = $1""", row["id"], reason)
        await audit.record(con, actor, "queue.cancel", "queue_entry", row["id"],
                           {"reason": reason, "consultation": str(consultation_id) if consultation_id else None})
    return Cancelled(row["id"], row["patient_id"], consultation_id)
