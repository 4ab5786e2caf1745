"""Consultations: one patient, one doctor, from claim to hang-up (or back to the queue)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db import audit, scope
from db.errors import Conflict, DbError, NotFound


@dataclass(frozen=True)
class Consultation:
    id: uuid.UUID
    queue_entry_id: uuid.UUID
    patient_id: int
    doctor_id: int
    doctor_name: str
    patient_name: str
    status: str
    modality: str
    started_at: datetime
    ended_at: datetime | None
    link_jti: uuid.UUID | None
    triage_level: int
    reason: str
    danger_signs: tuple[str, ...]
    patient_facility_id: int
    doctor_facility: str = ""  # the doctor's facility, named to the patient beside the doctor's name

    @property
    def active(self) -> bool:
        return self.status == "active"


_SELECT = """SELECT c.*, s.name AS doctor_name, p.name AS patient_name, q.link_jti, q.triage_level,
                    q.reason, q.danger_signs, p.facility_id AS patient_facility_id, sf.name AS doctor_facility
             FROM consultation c JOIN staff s ON s.id = c.doctor_id JOIN patient p ON p.id = c.patient_id
             JOIN facility sf ON sf.id = s.facility_id
             JOIN queue_entry q ON q.id = c.queue_entry_id"""


def _consultation(r: asyncpg.Record) -> Consultation:
    return Consultation(r["id"], r["queue_entry_id"], r["patient_id"], r["doctor_id"], r["doctor_name"],
                        r["patient_name"], r["status"], r["modality"], r["started_at"], r["ended_at"],
                        r["link_jti"], r["triage_level"], r["reason"], tuple(r["danger_signs"]),
                        r["patient_facility_id"], r["doctor_facility"])


async def get(con: asyncpg.Connection, consultation_id: uuid.UUID) -> Consultation | None:
    row = await con.fetchrow(_SELECT + " WHERE c.id = $1", consultation_id)
    return _consultation(row) if row else None


async def active_for_doctor(con: asyncpg.Connection, doctor_id: int) -> Consultation | None:
    row = await con.fetchrow(_SELECT + " WHERE c.doctor_id = $1 AND c.status = 'active'", doctor_id)
    return _consultation(row) if row else None


async def active_for_patient(con: asyncpg.Connection, patient_id: int) -> Consultation | None:
    row = await con.fetchrow(_SELECT + " WHERE c.patient_id = $1 AND c.status = 'active'", patient_id)
    return _consultation(row) if row else None


async def active_for_patients(con: asyncpg.Connection, patient_ids: Sequence[int]) -> dict[int, Consultation]:
    """`active_for_patient` for many patients in one statement (hellos after a restart)."""
    rows = await con.fetch(_SELECT + " WHERE c.patient_id = ANY($1::bigint[]) AND c.status = 'active'",
                           list(set(patient_ids)))
    return {r["patient_id"]: _consultation(r) for r in rows}


async def active_for_doctors(con: asyncpg.Connection, doctor_ids: Sequence[int]) -> dict[int, Consultation]:
    """`active_for_doctor` for many doctors in one statement (hellos after a restart)."""
    rows = await con.fetch(_SELECT + " WHERE c.doctor_id = ANY($1::bigint[]) AND c.status = 'active'",
                           list(set(doctor_ids)))
    return {r["doctor_id"]: _consultation(r) for r in rows}


async def for_join(con: asyncpg.Connection, consultation_ids: Sequence[uuid.UUID],
                   ) -> dict[uuid.UUID, tuple[Consultation, datetime | None]]:
    """Many consultations in one statement, each with when its patient's page last left (queue_entry.left_at):
    what joins need (every page rejoining at once after a restart)."""
    rows = await con.fetch(_SELECT.replace("q.link_jti,", "q.link_jti, q.left_at AS entry_left_at,", 1)
                           + " WHERE c.id = ANY($1::uuid[])", list(set(consultation_ids)))
    return {r["id"]: (_consultation(r), r["entry_left_at"]) for r in rows}


async def joined(con: asyncpg.Connection, touch: Sequence[uuid.UUID], in_call: Sequence[uuid.UUID]) -> None:
    """After joins: `touch_doctor` for the consultations in `touch`, and for those in `in_call` the call marked
    started (first time only) and its queue entry `in_call`, in one statement (one UPDATE per row: two updates
    of one row in one statement would keep only one)."""
    if not touch and not in_call:
        return
    await con.execute(
        """WITH c AS (
               UPDATE consultation
               SET doctor_seen_at = CASE WHEN id = ANY($1::uuid[]) THEN now() ELSE doctor_seen_at END,
                   call_started_at = CASE WHEN id = ANY($2::uuid[]) THEN coalesce(call_started_at, now())
                                          ELSE call_started_at END
               WHERE (id = ANY($1::uuid[]) OR id = ANY($2::uuid[])) AND status = 'active'
               RETURNING queue_entry_id, id = ANY($2::uuid[]) AS started)
           UPDATE queue_entry SET status = 'in_call'
           WHERE id IN (SELECT queue_entry_id FROM c WHERE started) AND status = 'claimed'""",
        list(set(touch)), list(set(in_call)))


async def set_modality(con: asyncpg.Connection, consultation_id: uuid.UUID, modality: str) -> None:
    await con.execute("UPDATE consultation SET modality = $2 WHERE id = $1 AND status = 'active'",
                      consultation_id, modality)


async def touch_doctor(con: asyncpg.Connection, consultation_id: uuid.UUID) -> None:
    """The doctor is (still, or again) connected: restart the grace period."""
    await con.execute("UPDATE consultation SET doctor_seen_at = now() WHERE id = $1 AND status = 'active'",
                      consultation_id)


async def touch_doctors(con: asyncpg.Connection, doctor_ids: list[int]) -> None:
    """These doctors are connected: their active consultations are not abandoned."""
    await con.execute("UPDATE consultation SET doctor_seen_at = now() WHERE status = 'active' "
                      "AND doctor_id = ANY($1::bigint[])", doctor_ids)


async def touch_all_active(con: asyncpg.Connection) -> int:
    """At server start every doctor gets a fresh grace period to reconnect."""
    status = await con.execute("UPDATE consultation SET doctor_seen_at = now() WHERE status = 'active'")
    return int(status.split()[-1])


async def stale(con: asyncpg.Connection, grace_s: int) -> list[uuid.UUID]:
    """Active consultations whose doctor has not been seen for `grace_s` seconds."""
    rows = await con.fetch(
        "SELECT id FROM consultation WHERE status = 'active' "
        "AND doctor_seen_at < now() - make_interval(secs => $1)", float(grace_s))
    return [r["id"] for r in rows]


async def requeue(con: asyncpg.Connection, consultation_id: uuid.UUID, reason: str) -> uuid.UUID | None:
    """The doctor is gone: put the patient back at the head of their triage level. Returns the entry id."""
    async with con.transaction():
        row = await con.fetchrow(
            "SELECT queue_entry_id, doctor_id FROM consultation WHERE id = $1 AND status = 'active' FOR UPDATE",
            consultation_id)
        if row is None:
            return None
        await con.execute(
            "UPDATE consultation SET status = 'requeued', ended_at = now(), ended_by = 'system', outcome = $2 "
            "WHERE id = $1", consultation_id, reason)
        await con.execute(
            """UPDATE queue_entry SET status = 'waiting', requeued_at = now(), claimed_at = NULL,
                                      claimed_by = NULL WHERE id = $1""", row["queue_entry_id"])
        await audit.record(con, audit.SYSTEM, "queue.requeue", "queue_entry", row["queue_entry_id"],
                           {"consultation": str(consultation_id), "reason": reason,
                            "doctor": row["doctor_id"]})
        entry_id: uuid.UUID = row["queue_entry_id"]
        return entry_id


async def end(con: asyncpg.Connection, consultation_id: uuid.UUID, by: str, actor: audit.Actor,
              outcome: str | None = None) -> Consultation:
    """Hang up for good: the consultation ends, the queue entry is done and the patient's link is finished."""
    async with con.transaction():
        # One statement: the consultation ended, its queue entry done and the patient's link finished (one
        # round trip instead of five). A concurrent end waits for the row, then finds it no longer active.
        ended = await con.fetchval(
            """WITH ended AS (
                   UPDATE consultation SET status = 'ended', ended_at = now(), ended_by = $2, outcome = $3
                   WHERE id = $1 AND status = 'active' RETURNING queue_entry_id),
               done AS (
                   UPDATE queue_entry q SET status = 'done', finished_at = now()
                   FROM ended WHERE q.id = ended.queue_entry_id RETURNING q.link_jti),
               finished AS (
                   UPDATE join_link l SET finished_at = now()
                   FROM done WHERE l.jti = done.link_jti AND l.finished_at IS NULL)
               SELECT count(*) FROM ended""", consultation_id, by, outcome)
        if not ended:
            status = await con.fetchval("SELECT status FROM consultation WHERE id = $1", consultation_id)
            if status is None:
                raise NotFound("consultation", consultation_id)
            raise Conflict("not_active", f"cannot end consultation in state \"{status}\"")
        consultation = await get(con, consultation_id)
        assert consultation is not None
        # Last in the transaction: the audit lock is held from here to the commit.
        await audit.record(con, actor, "consultation.end", "consultation", consultation_id, {"by": by})
        return consultation


# ---- ends in batches (group commit: signaling/batch.py) ------------------------------------------------


@dataclass(frozen=True)
class EndAsk:
    """One end of a batch: who ends which consultation, as `end` takes it."""

    consultation_id: uuid.UUID
    by: str
    actor: audit.Actor


@dataclass(frozen=True)
class Ended:
    consultation_id: uuid.UUID
    patient_id: int


async def end_batch(con: asyncpg.Connection, asks: Sequence[EndAsk]) -> list[Ended | DbError]:
    """`end` for every ask of a batch in one statement (outside a transaction, its own: one round trip):
    each consultation ended, its queue entry done, the patient's link finished, and one audit append of a
    `consultation.end` per consultation ended (the chain's lock taken once, held to the commit only). One
    outcome per ask, in order: refusals exactly as `end` gives them (`not_found`, `not_active`; a
    consultation asked twice is ended by the first ask). A database error fails the whole batch and changes
    nothing: the caller then runs the asks one by one."""
    if not asks:
        return []
    first: dict[uuid.UUID, EndAsk] = {}
    for ask in asks:
        first.setdefault(ask.consultation_id, ask)
    ids = list(first)
    events = [audit.Event(first[i].actor, "consultation.end", "consultation", i, {"by": first[i].by}) for i in ids]
    rows = await con.fetch(
        "SELECT * FROM consultation_end_batch($1::uuid[], $2::text[], $3, $4::text[], $5::text[], $6::text[], "
        "$7::text[]) ORDER BY n",
        ids, [first[i].by for i in ids], audit.LOCK_KEY, [e.actor.kind for e in events],
        [e.actor.id for e in events], [audit.details_text(e) for e in events],
        [audit.canonical_rest(e) for e in events])
    found = {i: {"ended_patient": r["ended_patient"], "status": r["status"]} for i, r in zip(ids, rows, strict=True)}
    # Ended by another transaction while the statement waited for the row: its snapshot still says active;
    # the status now is what `end` would name.
    raced = [i for i, r in found.items() if r["ended_patient"] is None and r["status"] == "active"]
    if raced:
        for r in await con.fetch("SELECT id, status FROM consultation WHERE id = ANY($1::uuid[])", raced):
            found[r["id"]]["status"] = r["status"]
    outcomes: list[Ended | DbError] = []
    for ask in asks:
        row = found[ask.consultation_id]
        if row["ended_patient"] is not None and first[ask.consultation_id] is ask:
            outcomes.append(Ended(ask.consultation_id, row["ended_patient"]))
        elif row["status"] is None:
            outcomes.append(NotFound("consultation", ask.consultation_id))
        else:  # ended before this batch, or by an earlier ask of it (the status read is the statement's snapshot)
            status = "ended" if row["ended_patient"] is not None else row["status"]
            outcomes.append(Conflict("not_active", f"cannot end consultation in state \"{status}\""))
    return outcomes


async def get_many(con: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Consultation]:
    """These consultations, by id (one query)."""
    rows = await con.fetch(_SELECT + " WHERE c.id = ANY($1::uuid[])", list(ids))
    return {r["id"]: _consultation(r) for r in rows}


async def is_doctor_in_scope(con: asyncpg.Connection, staff_facility_id: int, patient_facility_id: int) -> bool:
    """Does a staff member of `staff_facility_id` serve patients of `patient_facility_id` (same or below)?

    Kept for callers written before the access policy; new code asks `web.access` (which asks
    care/access.py with the relation from db/scope.py)."""
    return await scope.in_scope(con, staff_facility_id, patient_facility_id)


# ---- invited staff in a live call (issue 9 point 4) ------------------------------------------------

# A call is a mesh (one peer connection per pair): the patient, the consultation's doctor and at most two
# invited staff. Larger rooms need an SFU (docs/scale.md).
MAX_MEMBERS = 4
MAX_PARTICIPANTS = MAX_MEMBERS - 2


@dataclass(frozen=True)
class Participant:
    """A staff member invited into a consultation's call (a specialist who accepted an escalation)."""

    staff_id: int
    name: str
    role: str
    facility: str


_PARTICIPANTS = """SELECT cp.staff_id, s.name, s.role, f.name AS facility
                   FROM consultation_participant cp JOIN staff s ON s.id = cp.staff_id
                   JOIN facility f ON f.id = s.facility_id"""


async def add_participant(con: asyncpg.Connection, consultation_id: uuid.UUID, staff_id: int,
                          actor: audit.Actor) -> Participant:
    """Invite a staff member into an active consultation's call (idempotent: a second add changes nothing).

    Refused: `not_found` (no such consultation or active staff member), `not_active` (the consultation
    ended), `already_member` (they are its doctor), `room_full` (MAX_PARTICIPANTS invited already).
    Runs in one transaction with its audit event; nests inside the caller's transaction (an accept)."""
    async with con.transaction():
        c = await con.fetchrow("SELECT status, doctor_id FROM consultation WHERE id = $1 FOR UPDATE",
                               consultation_id)
        if c is None:
            raise NotFound("consultation", consultation_id)
        if c["status"] != "active":
            raise Conflict("not_active", f"cannot add a participant to consultation in state \"{c['status']}\"")
        if c["doctor_id"] == staff_id:
            raise Conflict("already_member", f"staff {staff_id} is this consultation's doctor")
        if not await con.fetchval("SELECT active FROM staff WHERE id = $1", staff_id):
            raise NotFound("staff member", staff_id)
        existing = await participant(con, consultation_id, staff_id)
        if existing is not None:
            return existing
        invited = await con.fetchval("SELECT count(*) FROM consultation_participant WHERE consultation_id = $1",
                                     consultation_id)
        if invited >= MAX_PARTICIPANTS:
            raise Conflict("room_full", f"consultation already has {invited} invited staff; a call holds at most "
                                        f"{MAX_MEMBERS} members")
        added_by = int(actor.id) if actor.kind == "staff" and actor.id is not None else None
        await con.execute("INSERT INTO consultation_participant (consultation_id, staff_id, added_by) "
                          "VALUES ($1, $2, $3)", consultation_id, staff_id, added_by)
        await audit.record(con, actor, "consultation.add_participant", "consultation", consultation_id,
                           {"staff": staff_id})
        added = await participant(con, consultation_id, staff_id)
        assert added is not None
        return added


def _participant(r: asyncpg.Record) -> Participant:
    return Participant(r["staff_id"], r["name"], r["role"], r["facility"])


async def participants(con: asyncpg.Connection, consultation_id: uuid.UUID) -> list[Participant]:
    """The staff invited into this consultation's call, in the order they were added."""
    rows = await con.fetch(_PARTICIPANTS + " WHERE cp.consultation_id = $1 ORDER BY cp.added_at, cp.staff_id",
                           consultation_id)
    return [_participant(r) for r in rows]


async def participant(con: asyncpg.Connection, consultation_id: uuid.UUID, staff_id: int) -> Participant | None:
    """This staff member, if they were invited into the consultation's call."""
    row = await con.fetchrow(_PARTICIPANTS + " WHERE cp.consultation_id = $1 AND cp.staff_id = $2",
                             consultation_id, staff_id)
    return _participant(row) if row else None
