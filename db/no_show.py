"""No-show: the doctor called a patient who had left. Recorded as such, never as an ended visit, and the
patient gets a fresh way back (a new walk-in invitation, its link sent by SMS), all in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from care.phone import PhoneError, parse_mobile
from care.sms import MessageKind, compose
from db import audit, links
from db import invitations as invitations_db
from db import messages as messages_db
from db.errors import Conflict, NotFound

NO_SHOW = "no_show"


class NoShowReason(StrEnum):
    """Why the doctor closed the call as a no-show (kept on the entry; the station sees it)."""

    never_joined = "never_joined"  # the patient's page never came to the call
    left = "left"  # they left and did not come back
    no_answer = "no_answer"  # they did not answer the phone either


@dataclass(frozen=True)
class NoShow:
    consultation_id: uuid.UUID
    entry_id: uuid.UUID
    patient_id: int
    invitation_id: uuid.UUID
    message_id: int | None  # None: the patient has no mobile number to text


async def mark(con: asyncpg.Connection, consultation_id: uuid.UUID, *, doctor_id: int, reason: str,
               now: datetime, policy: invitations_db.Policy, link_url: invitations_db.LinkUrl,
               lang: str = "vi") -> NoShow:
    """The consultation ends as a no-show (outcome `no_show`), its queue entry is closed `no_show` with the
    reason (the station still sees it), the old link is finished, and a new walk-in invitation is created
    and texted to the patient. Conflict `not_active` when the consultation is over; `forbidden` when it is
    another doctor's."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT c.status, c.doctor_id, c.queue_entry_id, c.patient_id, q.link_jti, p.phone, f.name AS facility
               FROM consultation c JOIN queue_entry q ON q.id = c.queue_entry_id
               JOIN patient p ON p.id = c.patient_id JOIN facility f ON f.id = p.facility_id
               WHERE c.id = $1 FOR UPDATE OF c, q""", consultation_id)
        if row is None:
            raise NotFound("consultation", consultation_id)
        if row["doctor_id"] != doctor_id:
            raise Conflict("forbidden", "this consultation belongs to another doctor")
        if row["status"] != "active":
            raise Conflict("not_active", f"cannot mark no-show of consultation in state \"{row['status']}\"")
        await con.execute(
            "UPDATE consultation SET status = 'ended', ended_at = now(), ended_by = 'doctor', outcome = $2 "
            "WHERE id = $1", consultation_id, NO_SHOW)
        await con.execute(
            "UPDATE queue_entry SET status = 'no_show', finished_at = now(), closed_reason = $2 WHERE id = $1",
            row["queue_entry_id"], reason)
        if row["link_jti"] is not None:
            await links.mark_finished(con, row["link_jti"])
        try:
            phone: str | None = parse_mobile(row["phone"]) if row["phone"] else None
        except PhoneError:
            phone = None  # a number we cannot text (a landline, another country): the station calls instead
        invitation = await invitations_db.create(
            con, invitations_db.Booking(invitations_db.InvitationKind.walk_in, lang=lang, phone=phone),
            patient_id=row["patient_id"], created_by=doctor_id, now=now, policy=policy, link_url=link_url,
            send=False)
        message_id = None
        if phone is not None:
            url = link_url(invitation.link_jti, invitation.link_expires_at)
            sms = compose(MessageKind.no_show, lang, facility=row["facility"], url=url)
            message_id = await messages_db.schedule(
                con, invitation_id=invitation.id, patient_id=row["patient_id"], to_phone=phone, lang=lang,
                kind=MessageKind.no_show.value, body=sms.text, dedupe_key=f"no_show:{row['queue_entry_id']}",
                due_at=now)
        await audit.record(con, audit.Actor.staff(doctor_id), "consultation.no_show", "consultation",
                           consultation_id, {"entry": str(row["queue_entry_id"]), "reason": reason,
                                             "invitation": str(invitation.id), "message": message_id})
    return NoShow(consultation_id, row["queue_entry_id"], row["patient_id"], invitation.id, message_id)


async def reveal_phone(con: asyncpg.Connection, consultation_id: uuid.UUID, doctor_id: int) -> str | None:
    """The phone number of the patient of the doctor's own active consultation, audited (who saw it, when).
    NotFound/Conflict as `mark`; None when the patient has no number."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT c.status, c.doctor_id, c.patient_id, p.phone FROM consultation c
               JOIN patient p ON p.id = c.patient_id WHERE c.id = $1""", consultation_id)
        if row is None:
            raise NotFound("consultation", consultation_id)
        if row["doctor_id"] != doctor_id:
            raise Conflict("forbidden", "this consultation belongs to another doctor")
        if row["status"] != "active":
            raise Conflict("not_active", f"cannot call the patient of consultation in state \"{row['status']}\"")
        await audit.record(con, audit.Actor.staff(doctor_id), "patient.reveal_phone", "patient", row["patient_id"],
                           {"consultation": str(consultation_id), "has_phone": row["phone"] is not None})
    phone: str | None = row["phone"]
    return phone
