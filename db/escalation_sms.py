"""The SMS telling a specialist of an urgent escalation offer when no page of theirs is open (issue 9
point 3): one message per offer, through the outbox (db/messages.py), audited, in one transaction.

The text names the requesting facility, the specialty and the urgency, and links to the staff request
page (`/staff/escalations/<id>`, behind sign-in): no patient name, no login token. The dedupe key
`escalation_offer:<escalation>:<staff>` for the first offer of a request to a specialist, with `:<n>` added
for the n-th (a request offered again after everyone was asked: the specialist who let the first offer
expire is texted again, as a coordinator would call twice), means a re-pushed offer, a restart or a second
process never texts twice for one offer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from care.escalation import Urgency
from care.sms import MessageKind, compose
from db import audit
from db import messages as messages_db


class OfferText(StrEnum):
    queued = "queued"  # a message is in the outbox now
    already = "already"  # this offer's message was queued before
    no_phone = "no_phone"  # the specialist has no phone on file: nothing sent
    not_open = "not_open"  # the offer was accepted, declined or expired meanwhile (or is not urgent)


@dataclass(frozen=True)
class OfferTextResult:
    outcome: OfferText
    message_id: int | None = None


def dedupe_key(escalation_id: uuid.UUID, staff_id: int, nth: int = 1) -> str:
    """One SMS per offer: `nth` counts the offers of this request to this specialist."""
    return f"escalation_offer:{escalation_id}:{staff_id}" + (f":{nth}" if nth > 1 else "")


async def text_offer(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, *, base_url: str,
                     lang: str, now: datetime) -> OfferTextResult:
    """Queue the SMS of the open urgent offer to `staff_id` (once per offer, a re-offer is another offer)
    with its audit event."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT e.patient_id, e.urgency, o.status, s.phone, f.name AS facility_name,
                      sp.name_vi, sp.name_en,
                      (SELECT count(*) FROM escalation_offer x
                       WHERE x.escalation_id = e.id AND x.staff_id = $2 AND x.id <= o.id) AS nth
               FROM escalation e
               JOIN escalation_offer o ON o.escalation_id = e.id AND o.staff_id = $2
               JOIN staff s ON s.id = o.staff_id
               JOIN facility f ON f.id = e.requester_facility_id
               JOIN specialty sp ON sp.code = e.specialty
               WHERE e.id = $1 ORDER BY o.id DESC LIMIT 1""", escalation_id, staff_id)
        if row is None or row["status"] != "open" or row["urgency"] != Urgency.urgent.value:
            return OfferTextResult(OfferText.not_open)
        if row["phone"] is None:
            return OfferTextResult(OfferText.no_phone)
        sms = compose(MessageKind.escalation_offer, lang, facility=row["facility_name"],
                      specialty=row["name_en"] if lang == "en" else row["name_vi"],
                      url=f"{base_url.rstrip('/')}/staff/escalations/{escalation_id}")
        message_id = await messages_db.schedule(
            con, patient_id=row["patient_id"], to_phone=row["phone"], lang=lang,
            kind=MessageKind.escalation_offer.value, body=sms.text,
            dedupe_key=dedupe_key(escalation_id, staff_id, row["nth"]), due_at=now)
        if message_id is None:
            return OfferTextResult(OfferText.already)
        await con.execute("UPDATE outbound_message SET escalation_id = $2 WHERE id = $1", message_id, escalation_id)
        await audit.record(con, audit.SYSTEM, "escalation.text_offer", "escalation", escalation_id,
                           {"message": message_id, "staff": staff_id})
    return OfferTextResult(OfferText.queued, message_id)
