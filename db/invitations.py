"""Invitations: how a patient gets a link — now (walk-in queue) or for an appointment at a slot.

Every use case is one transaction with its audit event: the invitation, its join link, its messages
(invitation SMS, reminders, reschedule/revoke notices) land together or not at all. The join link's
token is signed by the caller (`LinkUrl`), so this module stays free of web code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import asyncpg

from care.access import RULES, STAFF_ROLES, Action
from care.appointments import DEFAULT_LATE, OPENS_BEFORE, Window, appointment_window, reminder_times
from care.sms import MessageKind, compose
from db import audit, links, short_links
from db import messages as messages_db
from db import queue as queue_db
from db.errors import Conflict, DbError, NotFound


class LinkUrl(Protocol):
    """Builds the patient's URL for a link: (jti, expires_at) → "https://…/j/<signed token>", or with the
    link's short code → "https://…/s/<code>" (what messages carry)."""

    def __call__(self, jti: uuid.UUID, expires_at: datetime, code: str | None = None) -> str: ...


async def short_url(con: asyncpg.Connection, link_url: LinkUrl, jti: uuid.UUID, expires_at: datetime) -> str:
    """The short URL of a link (its code is created on first use)."""
    return link_url(jti, expires_at, await short_links.code_for(con, jti))


# Who can be booked: those the access policy lets conduct a consultation (care/access.py).
_BOOKABLE_ROLES = sorted(r.value for r in RULES[Action.conduct_consultation].roles if r in STAFF_ROLES)


class InvitationKind(StrEnum):
    walk_in = "walk_in"
    appointment = "appointment"


class InvitationStatus(StrEnum):
    active = "active"
    revoked = "revoked"
    rescheduled = "rescheduled"
    used = "used"


@dataclass(frozen=True)
class Policy:
    """How long links work: walk-ins for `link_ttl`; appointments from `before` the slot to `late` after."""

    link_ttl: timedelta = timedelta(hours=24)
    late: timedelta = DEFAULT_LATE
    before: timedelta = OPENS_BEFORE


@dataclass(frozen=True)
class Booking:
    """What the staff member asked for (already parsed; phone in E.164 or None)."""

    kind: InvitationKind
    slot_at: datetime | None = None
    doctor_id: int | None = None
    service: str | None = None
    lang: str = "vi"
    phone: str | None = None


@dataclass(frozen=True)
class Invitation:
    id: uuid.UUID
    patient_id: int
    patient_name: str
    facility_id: int
    facility_name: str
    facility_phone: str | None
    kind: InvitationKind
    slot_at: datetime | None
    doctor_id: int | None
    doctor_name: str | None
    service: str | None
    lang: str
    phone: str | None
    opens_at: datetime
    closes_at: datetime
    status: InvitationStatus
    link_jti: uuid.UUID
    link_expires_at: datetime
    created_by: int | None
    created_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    replaced_by: uuid.UUID | None

    @property
    def window(self) -> Window:
        return Window(self.opens_at, self.closes_at)

    @property
    def active(self) -> bool:
        return self.status is InvitationStatus.active


_SELECT = """SELECT i.*, p.name AS patient_name, f.name AS facility_name, f.phone AS facility_phone,
                    s.name AS doctor_name,
                    l.expires_at AS link_expires_at
             FROM invitation i JOIN patient p ON p.id = i.patient_id JOIN facility f ON f.id = i.facility_id
             JOIN join_link l ON l.jti = i.link_jti LEFT JOIN staff s ON s.id = i.doctor_id"""


def _invitation(r: asyncpg.Record) -> Invitation:
    return Invitation(r["id"], r["patient_id"], r["patient_name"], r["facility_id"], r["facility_name"],
                      r["facility_phone"], InvitationKind(r["kind"]), r["slot_at"], r["doctor_id"],
                      r["doctor_name"], r["service"], r["lang"], r["phone"], r["opens_at"], r["closes_at"],
                      InvitationStatus(r["status"]), r["link_jti"], r["link_expires_at"], r["created_by"],
                      r["created_at"], r["used_at"], r["revoked_at"], r["replaced_by"])


async def get(con: asyncpg.Connection, invitation_id: uuid.UUID) -> Invitation | None:
    row = await con.fetchrow(_SELECT + " WHERE i.id = $1", invitation_id)
    return _invitation(row) if row else None


async def for_link(con: asyncpg.Connection, jti: uuid.UUID, *, for_update: bool = False) -> Invitation | None:
    """The invitation a join link was issued for (None for links made otherwise, e.g. `donghanh link`);
    `for_update` row-locks it until the caller's transaction ends."""
    row = await con.fetchrow(_SELECT + " WHERE i.link_jti = $1" + (" FOR UPDATE OF i" if for_update else ""), jti)
    return _invitation(row) if row else None


async def for_patient(con: asyncpg.Connection, patient_id: int, limit: int = 20) -> list[Invitation]:
    rows = await con.fetch(_SELECT + " WHERE i.patient_id = $1 ORDER BY i.created_at DESC LIMIT $2",
                           patient_id, limit)
    return [_invitation(r) for r in rows]


async def mark_used(con: asyncpg.Connection, jti: uuid.UUID, at: datetime) -> bool:
    """The patient checked in with this link: the invitation is used (its slot stays taken)."""
    status = await con.execute(
        "UPDATE invitation SET status = 'used', used_at = $2 WHERE link_jti = $1 AND status = 'active'", jti, at)
    return bool(status.endswith(" 1"))


async def bookable_doctors(con: asyncpg.Connection, patient_facility_id: int) -> list[asyncpg.Record]:
    """Doctors and specialists who serve the patient's facility (it or a facility above it)."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT s.id, s.name, s.role, f.name AS facility_name
           FROM staff s JOIN facility f ON f.id = s.facility_id
           WHERE s.facility_id IN (SELECT facility_ancestors($1)) AND s.active AND s.role = ANY($2::text[])
           ORDER BY (s.facility_id = $1) DESC, s.name""", patient_facility_id, _BOOKABLE_ROLES)
    return rows


# ---- use cases ---------------------------------------------------------------------------------------

async def _locked(con: asyncpg.Connection, invitation_id: uuid.UUID,
                  allowed: tuple[InvitationStatus, ...] = (InvitationStatus.active,)) -> Invitation:
    """The invitation, row-locked for a change; Conflict unless it is in one of the `allowed` states."""
    status = await con.fetchval("SELECT status FROM invitation WHERE id = $1 FOR UPDATE", invitation_id)
    if status is None:
        raise NotFound("invitation", invitation_id)
    if status not in allowed:
        raise Conflict("not_active", f"cannot change invitation in state \"{status}\"")
    invitation = await get(con, invitation_id)
    assert invitation is not None
    return invitation


async def _check_booking(con: asyncpg.Connection, booking: Booking, patient_facility_id: int,
                         now: datetime) -> None:
    if booking.kind is InvitationKind.walk_in:
        if booking.slot_at is not None:
            raise DbError("invalid", "a walk-in invitation has no slot")
        return
    if booking.slot_at is None:
        raise DbError("invalid", "an appointment needs a date and time")
    if booking.slot_at <= now:
        raise DbError("slot_in_past", f"the appointment time {booking.slot_at.isoformat()} is in the past")
    if booking.doctor_id is None and not booking.service:
        raise DbError("invalid", "an appointment needs a doctor or a service")
    if booking.doctor_id is not None and not await con.fetchval(
            """SELECT 1 FROM staff s WHERE s.id = $2 AND s.facility_id IN (SELECT facility_ancestors($1))
                 AND s.active
                 AND s.role = ANY($3::text[])""", patient_facility_id, booking.doctor_id, _BOOKABLE_ROLES):
        raise DbError("invalid", f"staff member {booking.doctor_id} is not a doctor serving this patient")


async def _insert(con: asyncpg.Connection, booking: Booking, *, patient_id: int, created_by: int | None,
                  now: datetime, policy: Policy, link_url: LinkUrl) -> tuple[Invitation, str]:
    """Create the link and the invitation row (inside the caller's transaction): (invitation, url)."""
    facility_id = await con.fetchval("SELECT facility_id FROM patient WHERE id = $1", patient_id)
    if facility_id is None:
        raise NotFound("patient", patient_id)
    await _check_booking(con, booking, facility_id, now)
    if booking.slot_at is not None:
        window = appointment_window(booking.slot_at, before=policy.before, after=policy.late)
    else:
        window = Window(now, now + policy.link_ttl)
    # The link expires when the window closes. links.create counts from the database's now(), which is
    # fixed for the whole transaction, so subtracting it here gives exactly `closes_at`.
    db_now: datetime = await con.fetchval("SELECT now()")
    jti, expires_at = await links.create(con, patient_id, max(window.closes_at - db_now, timedelta(seconds=1)),
                                         created_by)
    try:
        async with con.transaction():  # savepoint: the unique indexes tell us the slot is taken
            invitation_id = await con.fetchval(
                """INSERT INTO invitation (patient_id, facility_id, kind, slot_at, doctor_id, service, lang, phone,
                                           opens_at, closes_at, link_jti, created_by, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id""",
                patient_id, facility_id, booking.kind.value, booking.slot_at, booking.doctor_id,
                booking.service if booking.kind is InvitationKind.appointment else None, booking.lang,
                booking.phone, window.opens_at, window.closes_at, jti, created_by, now)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name not in ("invitation_doctor_slot", "invitation_service_slot"):
            raise
        who = "this doctor" if booking.doctor_id is not None else "this service"
        raise Conflict("slot_taken", f"{who} already has an appointment at {booking.slot_at}") from None
    invitation = await get(con, invitation_id)
    assert invitation is not None
    return invitation, await short_url(con, link_url, jti, expires_at)


async def _schedule(con: asyncpg.Connection, invitation: Invitation, kind: MessageKind, dedupe_key: str,
                    due_at: datetime, url: str = "") -> int | None:
    """One message of this invitation (nothing when the patient has no phone number)."""
    if invitation.phone is None:
        return None
    sms = compose(kind, invitation.lang, facility=invitation.facility_name, url=url, slot_at=invitation.slot_at,
                  phone=invitation.facility_phone)
    return await messages_db.schedule(con, invitation_id=invitation.id, patient_id=invitation.patient_id,
                                      to_phone=invitation.phone, lang=invitation.lang, kind=kind.value,
                                      body=sms.text, dedupe_key=dedupe_key, due_at=due_at)


async def _schedule_reminders(con: asyncpg.Connection, invitation: Invitation, url: str, now: datetime) -> int:
    if invitation.slot_at is None:
        return 0
    count = 0
    for kind, due_at in reminder_times(invitation.slot_at, now):
        if await _schedule(con, invitation, MessageKind(kind.value), f"{kind.value}:{invitation.id}", due_at, url):
            count += 1
    return count


async def _sends(con: asyncpg.Connection, invitation_id: uuid.UUID) -> int:
    count: int = await con.fetchval(
        "SELECT count(*) FROM outbound_message WHERE invitation_id = $1 AND kind = 'invitation'", invitation_id)
    return count


async def _send_invitation(con: asyncpg.Connection, invitation: Invitation, url: str, now: datetime) -> int | None:
    n = await _sends(con, invitation.id) + 1
    return await _schedule(con, invitation, MessageKind.invitation, f"invitation:{invitation.id}:{n}", now, url)


def _details(invitation: Invitation) -> dict[str, object]:
    # Ids and times only: no phone numbers or names in the audit trail's details.
    return {"kind": invitation.kind.value, "patient": invitation.patient_id,
            "slot": invitation.slot_at.isoformat() if invitation.slot_at else None,
            "doctor": invitation.doctor_id, "service": invitation.service, "sms": invitation.phone is not None}


async def create(con: asyncpg.Connection, booking: Booking, *, patient_id: int, created_by: int, now: datetime,
                 policy: Policy, link_url: LinkUrl, send: bool = True) -> Invitation:
    """Invite a patient: the link, the invitation, its SMS (if `send`) and reminders, audited.

    DbError `slot_in_past` for an appointment not in the future, Conflict `slot_taken` when the doctor (or
    service) is already booked at that time; nothing is saved then.
    """
    async with con.transaction():
        invitation, url = await _insert(con, booking, patient_id=patient_id, created_by=created_by, now=now,
                                        policy=policy, link_url=link_url)
        sent = await _send_invitation(con, invitation, url, now) if send else None
        reminders = await _schedule_reminders(con, invitation, url, now)
        await audit.record(con, audit.Actor.staff(created_by), "invitation.create", "invitation", invitation.id,
                           {**_details(invitation), "message": sent, "reminders": reminders})
    return invitation


async def resend(con: asyncpg.Connection, invitation_id: uuid.UUID, *, staff_id: int, now: datetime,
                 link_url: LinkUrl) -> int:
    """Send the invitation SMS (again), with the same link; returns the new message's id."""
    async with con.transaction():
        invitation = await _locked(con, invitation_id)
        if invitation.phone is None:
            raise DbError("no_phone", "this invitation has no phone number to send to")
        first = await _sends(con, invitation_id) == 0
        url = await short_url(con, link_url, invitation.link_jti, invitation.link_expires_at)
        message_id = await _send_invitation(con, invitation, url, now)
        assert message_id is not None
        await audit.record(con, audit.Actor.staff(staff_id), "invitation.send" if first else "invitation.resend",
                           "invitation", invitation_id, {"message": message_id})
    return message_id


async def _retire(con: asyncpg.Connection, invitation: Invitation, status: str, now: datetime) -> int:
    """End an invitation (revoked or rescheduled): its link stops working and pending reminders are
    cancelled. Returns how many messages were cancelled."""
    await con.execute("UPDATE invitation SET status = $2, revoked_at = $3 WHERE id = $1",
                      invitation.id, status, now)
    await links.revoke(con, invitation.link_jti)
    cancelled: int = await messages_db.cancel_pending(con, invitation.id)
    return cancelled


async def revoke(con: asyncpg.Connection, invitation_id: uuid.UUID, *, staff_id: int, now: datetime) -> Invitation:
    """Cancel: the link stops working, pending reminders are cancelled and the patient is told."""
    revoked, _ = await revoke_access(con, invitation_id, staff_id=staff_id, now=now)
    return revoked


async def revoke_access(con: asyncpg.Connection, invitation_id: uuid.UUID, *, staff_id: int,
                        now: datetime) -> tuple[Invitation, queue_db.Cancelled | None]:
    """Cancel at any time, also after check-in: the link stops working, pending reminders are cancelled and
    the patient is told; if they are waiting or in a call, their queue entry is closed as cancelled
    (`link_revoked`) and the consultation ends. The record (notes, chat, history) is kept. Returns the
    invitation and what was closed, so the caller can close the patient's sockets and tell the doctor."""
    async with con.transaction():
        invitation = await _locked(con, invitation_id, (InvitationStatus.active, InvitationStatus.used))
        cancelled = await _retire(con, invitation, "revoked", now)
        told = await _schedule(con, invitation, MessageKind.revoked, f"revoked:{invitation_id}", now)
        actor = audit.Actor.staff(staff_id)
        closed = await queue_db.cancel_for_link(con, invitation.link_jti, actor, "link_revoked")
        await audit.record(con, actor, "invitation.revoke", "invitation", invitation_id,
                           {**_details(invitation), "cancelled_messages": cancelled, "message": told,
                            "after_check_in": invitation.status is InvitationStatus.used})
        revoked = await get(con, invitation_id)
    assert revoked is not None
    return revoked, closed


async def reschedule(con: asyncpg.Connection, invitation_id: uuid.UUID, booking: Booking, *, staff_id: int,
                     now: datetime, policy: Policy, link_url: LinkUrl) -> Invitation:
    """Move to a new slot: a new invitation and link; the old one is `rescheduled`, its link revoked and
    its reminders cancelled; the patient gets the new time and link. Returns the new invitation."""
    async with con.transaction():
        old = await _locked(con, invitation_id)
        # Free the old slot first, so moving to another time with the same doctor is not a double booking.
        cancelled = await _retire(con, old, "rescheduled", now)
        new, url = await _insert(con, booking, patient_id=old.patient_id, created_by=staff_id, now=now,
                                 policy=policy, link_url=link_url)
        await con.execute("UPDATE invitation SET replaced_by = $2 WHERE id = $1", invitation_id, new.id)
        told = await _schedule(con, new, MessageKind.rescheduled, f"rescheduled:{new.id}", now, url)
        reminders = await _schedule_reminders(con, new, url, now)
        await audit.record(con, audit.Actor.staff(staff_id), "invitation.reschedule", "invitation", invitation_id,
                           {**_details(new), "from_slot": old.slot_at.isoformat() if old.slot_at else None,
                            "new_invitation": str(new.id), "cancelled_messages": cancelled, "message": told,
                            "reminders": reminders})
    return new


# ---- the doctor's day --------------------------------------------------------------------------------

async def day(con: asyncpg.Connection, staff_facility_id: int, start: datetime, end: datetime,
              doctor_id: int | None = None) -> list[asyncpg.Record]:
    """Appointments with a slot in [start, end) and walk-ins created then, in the staff member's scope,
    with the latest queue entry of each link. With `doctor_id`: that doctor's appointments and those
    without a named doctor (service appointments, walk-ins)."""
    rows: list[asyncpg.Record] = await con.fetch(
        """
        SELECT i.id, i.kind, i.slot_at, i.created_at, i.opens_at, i.closes_at, i.status, i.service,
               i.doctor_id, s.name AS doctor_name, p.id AS patient_id, p.name AS patient_name,
               q.id AS entry_id, q.status AS entry_status, q.arrived_at
        FROM invitation i
        JOIN patient p ON p.id = i.patient_id
        LEFT JOIN staff s ON s.id = i.doctor_id
        LEFT JOIN LATERAL (SELECT q.id, q.status, q.arrived_at FROM queue_entry q WHERE q.link_jti = i.link_jti
                           ORDER BY q.arrived_at DESC LIMIT 1) q ON true
        WHERE i.facility_id IN (SELECT facility_subtree($1))
          AND i.status IN ('active', 'used', 'revoked')
          AND coalesce(i.slot_at, i.created_at) >= $2 AND coalesce(i.slot_at, i.created_at) < $3
          AND ($4::bigint IS NULL OR i.doctor_id = $4 OR i.doctor_id IS NULL)
        ORDER BY coalesce(i.slot_at, i.created_at), i.created_at""",
        staff_facility_id, start, end, doctor_id)
    return rows
