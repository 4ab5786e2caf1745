"""Danger alerts: a patient checked in with danger signs. Stored, shown to every staff member serving the
facility until one acknowledges it, and sent to the facility's on-call clinician by SMS when nobody
serving it was online."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db import audit
from db import messages as messages_db
from db.errors import Conflict, NotFound

# Facilities a staff member serves: their own and every facility below it (db/scope.py, migration 0007).
IN_SCOPE = "a.facility_id IN (SELECT facility_subtree($1))"


@dataclass(frozen=True)
class DangerAlert:
    id: uuid.UUID
    queue_entry_id: uuid.UUID
    patient_id: int
    patient_name: str
    facility_id: int
    facility_name: str
    triage_level: int
    danger_signs: tuple[str, ...]
    raised_at: datetime
    clinicians_online: int
    on_call_message_id: int | None
    acknowledged_at: datetime | None
    acknowledged_by: int | None

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None


_SELECT = """SELECT a.*, p.name AS patient_name, f.name AS facility_name
             FROM danger_alert a JOIN patient p ON p.id = a.patient_id JOIN facility f ON f.id = a.facility_id"""


def _alert(r: asyncpg.Record) -> DangerAlert:
    return DangerAlert(r["id"], r["queue_entry_id"], r["patient_id"], r["patient_name"], r["facility_id"],
                       r["facility_name"], r["triage_level"], tuple(r["danger_signs"]), r["raised_at"],
                       r["clinicians_online"], r["on_call_message_id"], r["acknowledged_at"], r["acknowledged_by"])


@dataclass(frozen=True)
class OnCall:
    """Who to text for a facility when nobody serving it is online, and the station's own number."""

    phone: str | None  # the on-call number (the duty phone, else the on-call staff member's phone)
    staff_id: int | None
    facility_phone: str | None


async def on_call(con: asyncpg.Connection, facility_id: int) -> OnCall:
    """The on-call contact of a facility; a facility without one uses its parent's (the level above)."""
    row = await con.fetchrow(
        """SELECT f.on_call_staff_id, coalesce(f.on_call_phone, s.phone) AS phone
           FROM facility f LEFT JOIN staff s ON s.id = f.on_call_staff_id AND s.active
           WHERE f.id IN (SELECT facility_ancestors($1)) AND coalesce(f.on_call_phone, s.phone) IS NOT NULL
           -- the nearest first: the facility with the most facilities above it
           ORDER BY (SELECT count(*) FROM facility_ancestors(f.id)) DESC LIMIT 1""", facility_id)
    facility_phone: str | None = await con.fetchval("SELECT phone FROM facility WHERE id = $1", facility_id)
    if row is None:
        return OnCall(None, None, facility_phone)
    return OnCall(row["phone"], row["on_call_staff_id"], facility_phone)


async def raise_alert(con: asyncpg.Connection, *, entry_id: uuid.UUID, patient_id: int, facility_id: int,
                      level: int, danger_signs: tuple[str, ...], clinicians_online: int) -> DangerAlert:
    """Store the alert of a check-in with danger signs (once per queue entry), audited."""
    async with con.transaction():
        alert_id = await con.fetchval(
            """INSERT INTO danger_alert (queue_entry_id, patient_id, facility_id, triage_level, danger_signs,
                                         clinicians_online)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (queue_entry_id) DO NOTHING RETURNING id""",
            entry_id, patient_id, facility_id, level, list(danger_signs), clinicians_online)
        if alert_id is not None:
            await audit.record(con, audit.SYSTEM, "alert.raise", "danger_alert", alert_id,
                               {"entry": str(entry_id), "level": level, "danger": list(danger_signs),
                                "clinicians_online": clinicians_online})
        row = await con.fetchrow(_SELECT + " WHERE a.queue_entry_id = $1", entry_id)
    return _alert(row)


async def text_on_call(con: asyncpg.Connection, alert: DangerAlert, *, to_phone: str, body: str,
                       now: datetime) -> int | None:
    """Queue the on-call SMS of an alert (once), and remember it on the alert. Returns the message id."""
    async with con.transaction():
        message_id = await messages_db.schedule(
            con, patient_id=alert.patient_id, to_phone=to_phone, lang="vi", kind="danger_alert", body=body,
            dedupe_key=f"danger_alert:{alert.id}", due_at=now)
        if message_id is not None:
            await con.execute("UPDATE outbound_message SET alert_id = $2 WHERE id = $1", message_id, alert.id)
            await con.execute("UPDATE danger_alert SET on_call_message_id = $2 WHERE id = $1", alert.id, message_id)
            await audit.record(con, audit.SYSTEM, "alert.text_on_call", "danger_alert", alert.id,
                               {"message": message_id})
    return message_id


async def get(con: asyncpg.Connection, alert_id: uuid.UUID) -> DangerAlert | None:
    row = await con.fetchrow(_SELECT + " WHERE a.id = $1", alert_id)
    return _alert(row) if row else None


async def for_entry(con: asyncpg.Connection, entry_id: uuid.UUID) -> DangerAlert | None:
    row = await con.fetchrow(_SELECT + " WHERE a.queue_entry_id = $1", entry_id)
    return _alert(row) if row else None


async def open_for(con: asyncpg.Connection, staff_facility_id: int, limit: int = 50) -> list[DangerAlert]:
    """Alerts not yet acknowledged in a staff member's scope, oldest first."""
    rows = await con.fetch(
        _SELECT + f"""
        WHERE a.acknowledged_at IS NULL AND {IN_SCOPE}
        ORDER BY a.raised_at, a.id LIMIT $2""", staff_facility_id, limit)
    return [_alert(r) for r in rows]


async def open_for_many(con: asyncpg.Connection, staff_facility_ids: Sequence[int],
                        limit: int = 50) -> dict[int, list[DangerAlert]]:
    """`open_for` for many staff facilities in one statement (staff hellos after a restart)."""
    ids = list(set(staff_facility_ids))
    rows = await con.fetch(
        f"""SELECT s.staff_facility, x.* FROM unnest($1::bigint[]) AS s(staff_facility) CROSS JOIN LATERAL (
                {_SELECT} WHERE a.acknowledged_at IS NULL
                AND a.facility_id IN (SELECT facility_subtree(s.staff_facility))
                ORDER BY a.raised_at, a.id LIMIT $2) x
            ORDER BY s.staff_facility, x.raised_at, x.id""", ids, limit)
    out: dict[int, list[DangerAlert]] = {i: [] for i in ids}
    for r in rows:
        out[r["staff_facility"]].append(_alert(r))
    return out


async def acknowledge(con: asyncpg.Connection, alert_id: uuid.UUID, staff_id: int,
                      staff_facility_id: int) -> DangerAlert:
    """A staff member serving the facility has seen the alert and takes it in hand (audited).

    NotFound outside their scope; Conflict `already_acknowledged` when someone was first."""
    async with con.transaction():
        row = await con.fetchrow(
            f"""SELECT a.acknowledged_at FROM danger_alert a
                WHERE a.id = $2 AND {IN_SCOPE} FOR UPDATE OF a""",
            staff_facility_id, alert_id)
        if row is None:
            raise NotFound("alert", alert_id)
        if row["acknowledged_at"] is not None:
            raise Conflict("already_acknowledged", f"alert {alert_id} was already acknowledged")
        await con.execute("UPDATE danger_alert SET acknowledged_at = now(), acknowledged_by = $2 WHERE id = $1",
                          alert_id, staff_id)
        await audit.record(con, audit.Actor.staff(staff_id), "alert.acknowledge", "danger_alert", alert_id)
        alert = await get(con, alert_id)
    assert alert is not None
    return alert
