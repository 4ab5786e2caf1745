"""Referrals (the field reports' "green channel"): a transfer an opinion advised, sent by the asking doctor
in one step to a receiving facility, which acknowledges it and records the patient's arrival. Each
change is one transaction with its audit event; the sender sees every status."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db import audit
from db.errors import Conflict, DbError, NotFound

URGENCIES = ("emergency", "soon", "planned")


@dataclass(frozen=True)
class Referral:
    id: uuid.UUID
    escalation_id: uuid.UUID
    patient_id: int
    from_facility_id: int
    to_facility_id: int
    reason: str
    urgency: str
    created_by: int
    created_at: datetime
    status: str
    acknowledged_at: datetime | None
    arrived_at: datetime | None


def _referral(r: asyncpg.Record) -> Referral:
    return Referral(r["id"], r["escalation_id"], r["patient_id"], r["from_facility_id"], r["to_facility_id"],
                    r["reason"], r["urgency"], r["created_by"], r["created_at"], r["status"], r["acknowledged_at"],
                    r["arrived_at"])


async def create_from_opinion(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, *,
                              to_facility_id: int | None, reason: str, urgency: str | None,
                              now: datetime) -> Referral:
    """From a signed opinion that advises a transfer: the receiving facility and urgency default to the
    opinion's. Conflict `not_requester`, `no_transfer_advised`, `referral_exists`; DbError
    `reason_required`, `unknown_facility`, `unknown_urgency`."""
    async with con.transaction():
        e = await con.fetchrow("SELECT * FROM escalation WHERE id = $1 FOR UPDATE", escalation_id)
        if e is None:
            raise NotFound("escalation", escalation_id)
        if e["requester_id"] != staff_id:
            raise Conflict("not_requester", "only the doctor who asked may refer from the opinion")
        opinion = await con.fetchrow("SELECT * FROM escalation_opinion WHERE escalation_id = $1 "
                                     "ORDER BY version DESC LIMIT 1", escalation_id)
        if opinion is None or not opinion["transfer"]:
            raise Conflict("no_transfer_advised", "the opinion does not advise a transfer")
        to_facility_id = to_facility_id or opinion["transfer_facility_id"]
        urgency = urgency or opinion["transfer_urgency"]
        reason = reason.strip() or opinion["recommendation"]
        if not reason:
            raise DbError("reason_required", "say why the patient is referred")
        if urgency not in URGENCIES:
            raise DbError("unknown_urgency", f"unknown referral urgency {urgency!r} (emergency, soon, planned)")
        if to_facility_id is None or not await con.fetchval("SELECT EXISTS (SELECT 1 FROM facility WHERE id = $1)",
                                                            to_facility_id):
            raise DbError("unknown_facility", "choose the receiving facility")
        try:
            async with con.transaction():
                row = await con.fetchrow(
                    """INSERT INTO referral (escalation_id, patient_id, from_facility_id, to_facility_id, reason,
                                             urgency, created_by, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
                    escalation_id, e["patient_id"], e["requester_facility_id"], to_facility_id, reason[:2000],
                    urgency, staff_id, now)
        except asyncpg.UniqueViolationError:
            raise Conflict("referral_exists", "this request already has a referral") from None
        await con.execute("INSERT INTO escalation_event (escalation_id, at, kind, actor_id, details) "
                          "VALUES ($1, $2, 'referred', $3, $4)", escalation_id, now, staff_id,
                          {"to_facility_id": to_facility_id, "urgency": urgency})
        await audit.record(con, audit.Actor.staff(staff_id), "referral.create", "referral", row["id"],
                           {"escalation_id": str(escalation_id), "to_facility_id": to_facility_id})
    return _referral(row)


async def get(con: asyncpg.Connection, referral_id: uuid.UUID) -> Referral | None:
    row = await con.fetchrow("SELECT * FROM referral WHERE id = $1", referral_id)
    return _referral(row) if row else None


async def for_escalation(con: asyncpg.Connection, escalation_id: uuid.UUID) -> Referral | None:
    row = await con.fetchrow("SELECT * FROM referral WHERE escalation_id = $1 AND status <> 'cancelled'",
                             escalation_id)
    return _referral(row) if row else None


async def incoming(con: asyncpg.Connection, facility_id: int, limit: int = 100) -> list[asyncpg.Record]:
    """Referrals addressed to this facility, open ones first, with the patient and the sender."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT r.id, r.escalation_id, r.status, r.urgency, r.reason, r.created_at, r.acknowledged_at,
                  r.arrived_at, p.name AS patient_name, f.name AS from_facility, s.name AS sender_name
           FROM referral r JOIN patient p ON p.id = r.patient_id JOIN facility f ON f.id = r.from_facility_id
           JOIN staff s ON s.id = r.created_by
           WHERE r.to_facility_id = $1
           ORDER BY (r.status IN ('arrived', 'cancelled')), r.created_at DESC LIMIT $2""", facility_id, limit)
    return rows


async def _advance(con: asyncpg.Connection, referral_id: uuid.UUID, staff_id: int, now: datetime,
                   before: tuple[str, ...], after: str, column: str) -> Referral:
    async with con.transaction():
        status = await con.fetchval("SELECT status FROM referral WHERE id = $1 FOR UPDATE", referral_id)
        if status is None:
            raise NotFound("referral", referral_id)
        if status not in before:
            raise Conflict(f"already_{status}" if status in ("acknowledged", "arrived") else "not_open",
                           f'cannot mark referral in state "{status}" as {after}')
        row = await con.fetchrow(f"UPDATE referral SET status = $2, {column}_at = $3, {column}_by = $4 "
                                 "WHERE id = $1 RETURNING *", referral_id, after, now, staff_id)
        await con.execute("INSERT INTO escalation_event (escalation_id, at, kind, actor_id, staff_id) "
                          "VALUES ($1, $2, $3, $4, $4)", row["escalation_id"], now, f"referral_{after}", staff_id)
        await audit.record(con, audit.Actor.staff(staff_id), f"referral.{after}", "referral", referral_id)
    return _referral(row)


async def acknowledge(con: asyncpg.Connection, referral_id: uuid.UUID, staff_id: int, now: datetime) -> Referral:
    """The receiving facility has seen it and expects the patient."""
    return await _advance(con, referral_id, staff_id, now, ("sent",), "acknowledged", "acknowledged")


async def arrived(con: asyncpg.Connection, referral_id: uuid.UUID, staff_id: int, now: datetime) -> Referral:
    """The patient arrived at the receiving facility (acknowledged or not: they are here)."""
    return await _advance(con, referral_id, staff_id, now, ("sent", "acknowledged"), "arrived", "arrived")
