"""Use cases that change more than one aggregate, each one transaction with its audit events.

A user action that writes several rows is one function here (or, when it stays inside one aggregate, in
that aggregate's module: `invitations.create`, `consultations.end`, `patients.merge`…). It takes a
connection, opens one transaction, and either everything it describes is committed — the rows and the
audit event — or nothing is: a crash, a constraint violation or a refused state between two steps leaves
no half-done change. Handlers parse, authorise, call one of these, and render.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from care.appointments import WindowState
from db import consultations, invitations, links, patients, queue
from db.consultations import Consultation
from db.errors import Conflict, DbError, NotFound
from db.invitations import InvitationKind
from db.links import JoinLink


@dataclass(frozen=True)
class Triaged:
    """A patient's check-in answers after triage (care.triage.assess): what the queue entry records."""

    level: int
    danger_signs: tuple[str, ...]
    reason: str
    answers: dict[str, Any]
    audio_only: bool


@dataclass(frozen=True)
class CheckedIn:
    entry: queue.QueueEntry
    created: bool  # False when the patient was already in the queue (a reload, a second tab)
    invitation_used: bool  # the link's invitation went from active to used now


async def check_in(con: asyncpg.Connection, link: JoinLink, triaged: Triaged, *, consent_version: str,
                   now: datetime) -> CheckedIn:
    """The patient joins the queue from their link: the queue entry (audited `queue.join`) and, for an
    invited patient, the invitation marked used — together.

    The invitation is locked first, so a revoke or a reschedule at the same moment waits and then sees a
    used invitation (or this check-in sees a cancelled link). DbError `too_early` / `too_late` outside an
    appointment's window, `consent_required` without consent to the current text.
    """
    async with con.transaction():
        invitation = await invitations.for_link(con, link.jti, for_update=True)
        if invitation is not None and invitation.active and invitation.kind is InvitationKind.appointment:
            state = invitation.window.state(now)
            if state is WindowState.too_early:
                raise Conflict("too_early", f"the appointment's link opens at {invitation.opens_at.isoformat()}")
            if state is WindowState.too_late:
                raise DbError("too_late", f"the appointment's link closed at {invitation.closes_at.isoformat()}")
        if invitation is not None and invitation.status in (invitations.InvitationStatus.revoked,
                                                            invitations.InvitationStatus.rescheduled):
            # Retired while this request was on its way (the link check ran before the lock).
            raise Conflict("link_revoked", "this link was cancelled")
        if not await links.consent_given(con, link.jti, consent_version):
            raise Conflict("consent_required", "consent to a remote consultation is needed first")
        patient = await patients.get(con, link.patient_id)
        if patient is None:
            raise NotFound("patient", link.patient_id)
        entry, created = await queue.enqueue(
            con, patient_id=link.patient_id, link_jti=link.jti, facility_id=patient.facility_id,
            level=triaged.level, danger_signs=triaged.danger_signs, reason=triaged.reason,
            checkin=triaged.answers, audio_only=triaged.audio_only)
        used = invitation is not None and await invitations.mark_used(con, link.jti, now)
    return CheckedIn(entry, created, used)


async def claim_patient(con: asyncpg.Connection, doctor_id: int, facility_id: int,
                        entry_id: uuid.UUID | None = None) -> queue.Claim | None:
    """`take_patient`'s transaction, without reading the consultation back: the entry claimed, the
    consultation opened and `queue.claim` audited, committed (a batch of claims that failed runs each
    through this)."""
    async with con.transaction():
        if entry_id is None:
            return await queue.claim_next(con, doctor_id, facility_id)
        return await queue.claim_entry(con, doctor_id, facility_id, entry_id)


async def take_patient(con: asyncpg.Connection, doctor_id: int, facility_id: int,
                       entry_id: uuid.UUID | None = None) -> Consultation | None:
    """A doctor takes a patient — the chosen queue entry (a booked call started from the day's schedule, or
    a click on the queue), or with `entry_id` None the first in triage order: the entry claimed, the
    consultation opened and `queue.claim` audited, and the consultation returned as the call page shows
    it. None when nobody waits; Conflict `already_claimed` / `doctor_busy`, NotFound outside the scope."""
    claim = await claim_patient(con, doctor_id, facility_id, entry_id)
    if claim is None:
        return None
    # Read after the commit: inside the transaction it would come after the audit event, while every other
    # audited write waits for the audit lock (db/audit.py).
    consultation = await consultations.get(con, claim.consultation_id)
    assert consultation is not None
    return consultation
