"""Signing a note that shares a visit summary with the patient: one use case, one transaction.

The signed version (with the doctor's choice of what to share), the summary SMS and their audit events
land together or not at all. The summary text itself is built by care.summary from the signed content,
so what the doctor previewed, the patient's page and the SMS are the same words.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from care.appointments import FACILITY_TZ
from care.phone import PhoneError, parse_mobile
from care.sms import Sms, short_facility_name
from care.summary import VisitSummary, build, sms_text
from db import audit, notes
from db import messages as messages_db
from db.invitations import LinkUrl, short_url
from db.notes import NoteContent, NoteVersion

KIND = "visit_summary"


@dataclass(frozen=True)
class Recipient:
    """Where a consultation's summary goes: the patient's number and language, their station, the link."""

    patient_id: int
    phone: str | None  # E.164 mobile, or None: no SMS possible
    lang: str
    facility_name: str
    facility_phone: str | None
    link_jti: uuid.UUID | None
    link_expires_at: datetime | None
    visit_day: date
    invitation_id: uuid.UUID | None = None  # the SMS is listed with the invitation's other messages


async def recipient(con: asyncpg.Connection, consultation_id: uuid.UUID) -> Recipient | None:
    """The invitation's number and language when the patient was invited, else the registered number and
    the language the patient consented in (Vietnamese by default)."""
    row = await con.fetchrow(
        """SELECT c.patient_id, c.started_at, q.link_jti, l.expires_at, coalesce(i.phone, p.phone) AS phone,
                  coalesce(i.lang, (SELECT k.lang FROM consent k WHERE k.link_jti = q.link_jti
                                    ORDER BY k.given_at DESC LIMIT 1), 'vi') AS lang,
                  f.name AS facility_name, f.phone AS facility_phone, i.id AS invitation_id
           FROM consultation c JOIN queue_entry q ON q.id = c.queue_entry_id
           JOIN patient p ON p.id = c.patient_id JOIN facility f ON f.id = p.facility_id
           LEFT JOIN join_link l ON l.jti = q.link_jti LEFT JOIN invitation i ON i.link_jti = q.link_jti
           WHERE c.id = $1""", consultation_id)
    if row is None:
        return None
    try:
        phone = parse_mobile(row["phone"]) if row["phone"] else None
    except PhoneError:
        phone = None  # a landline or an old typo: the page still shows the summary
    return Recipient(row["patient_id"], phone, row["lang"] if row["lang"] in ("vi", "en") else "vi",
                     row["facility_name"], row["facility_phone"], row["link_jti"], row["expires_at"],
                     row["started_at"].astimezone(FACILITY_TZ).date(), row["invitation_id"])


def summary_of(content: NoteContent, lang: str, to: Recipient) -> VisitSummary | None:
    """The patient's summary of this note's content in `lang`, or None when nothing is shared."""
    if content.summary is None:
        return None
    summary = build(content.summary, medicines=content.medicines, follow_up_on=content.follow_up_on, lang=lang,
                    facility=to.facility_name, phone=to.facility_phone)
    return None if summary.empty else summary


async def sms_of(con: asyncpg.Connection, content: NoteContent, to: Recipient, link_url: LinkUrl) -> Sms | None:
    """The SMS this content would send (None: nothing shared, SMS not chosen, or no mobile number)."""
    summary = summary_of(content, to.lang, to)
    if summary is None or content.summary is None or not content.summary.sms or to.phone is None:
        return None
    url = None
    if to.link_jti is not None and to.link_expires_at is not None:
        url = await short_url(con, link_url, to.link_jti, to.link_expires_at)
    return sms_text(summary, facility_short=short_facility_name(to.facility_name), visit_day=to.visit_day, url=url)


@dataclass(frozen=True)
class Signed:
    version: NoteVersion
    recipient: Recipient
    message_id: int | None  # the summary SMS scheduled now, if any


async def sign(con: asyncpg.Connection, consultation_id: uuid.UUID, author_id: int, expected_version: int,
               content: NoteContent, *, now: datetime, link_url: LinkUrl) -> Signed:
    """Sign the note and, when it shares a summary by SMS, schedule that SMS — in one transaction."""
    async with con.transaction():
        signed = await notes.sign(con, consultation_id, author_id, expected_version, content)
        to = await recipient(con, consultation_id)
        assert to is not None  # notes.sign locked the consultation: it exists
        message_id = None
        sms = await sms_of(con, content, to, link_url)
        if sms is not None and to.phone is not None:
            message_id = await messages_db.schedule(
                con, patient_id=to.patient_id, to_phone=to.phone, lang=to.lang, kind=KIND, body=sms.text,
                dedupe_key=f"{KIND}:{consultation_id}:{signed.version}", due_at=now, invitation_id=to.invitation_id)
        if content.summary is not None:
            await audit.record(con, audit.Actor.staff(author_id), "visit_summary.share", "consultation",
                               consultation_id, {"version": signed.version, "message": message_id,
                                                 "segments": sms.segments if sms else 0})
    return Signed(signed, to, message_id)
