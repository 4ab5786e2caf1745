"""Outbound messages (SMS): scheduled as rows with a due time, claimed and sent once by the scheduler.

Delivery semantics. A claim moves due rows from `scheduled` to `sending` in its own short transaction
(`FOR UPDATE SKIP LOCKED`), so two schedulers, or one restarted, never take the same message. The
gateway is called after that commit and the outcome is recorded in a second transaction. If the process
dies between the two, the row stays `sending`; after `sending_timeout` it is claimed again and sent
again. That is deliberate: for the crashed case we choose at-least-once (the patient may get the same
SMS twice, and the gateway's log shows the first try) over at-most-once (a reminder silently lost and
an appointment missed). In every other case a message is sent exactly once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from db import audit


class MessageStatus(StrEnum):
    scheduled = "scheduled"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    delivered = "delivered"
    cancelled = "cancelled"


@dataclass(frozen=True)
class OutboundMessage:
    id: int
    invitation_id: uuid.UUID | None
    patient_id: int
    to_phone: str
    lang: str
    kind: str
    body: str
    dedupe_key: str
    due_at: datetime
    status: MessageStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    gateway: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


def _message(r: asyncpg.Record) -> OutboundMessage:
    return OutboundMessage(r["id"], r["invitation_id"], r["patient_id"], r["to_phone"], r["lang"], r["kind"],
                           r["body"], r["dedupe_key"], r["due_at"], MessageStatus(r["status"]), r["attempts"],
                           r["next_attempt_at"], r["last_error"], r["gateway"], r["provider_message_id"],
                           r["sent_at"], r["delivered_at"], r["created_at"])


async def schedule(con: asyncpg.Connection, *, patient_id: int, to_phone: str, lang: str, kind: str, body: str,
                   dedupe_key: str, due_at: datetime, invitation_id: uuid.UUID | None = None) -> int | None:
    """Add a message due at `due_at`; returns its id, or None when one with this dedupe key exists already."""
    message_id: int | None = await con.fetchval(
        """INSERT INTO outbound_message (invitation_id, patient_id, to_phone, lang, kind, body, dedupe_key, due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id""",
        invitation_id, patient_id, to_phone, lang, kind, body, dedupe_key, due_at)
    return message_id


# What the scheduler acts on, shared by the statements that act and by `work_due`, which must see the same rows.
# Messages to send now: due `scheduled` ones, and `sending` ones left longer than the timeout ({timeout}: a
# parameter holding an interval) by a process that crashed.
_DUE = """(status = 'scheduled' AND coalesce(next_attempt_at, due_at) <= $1)
          OR (status = 'sending' AND sending_since <= $1 - {timeout}::interval)"""
# Reminders (m) whose appointment's window (invitation i) has closed.
_PASSED_REMINDER = """m.status = 'scheduled' AND m.kind IN ('reminder_day_before', 'reminder_15_min')
                      AND i.closes_at <= $1"""
# Waiting patients (q) invited (i) with a phone who have not had this entry's "about N minutes" SMS.
_QUEUE_NEAR = """FROM queue_entry q
                 JOIN invitation i ON i.link_jti = q.link_jti
                 JOIN join_link l ON l.jti = i.link_jti
                 JOIN facility f ON f.id = i.facility_id
                 WHERE q.status = 'waiting' AND i.phone IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM outbound_message m
                                   WHERE m.dedupe_key = 'queue_near:' || q.id::text)"""


async def queue_near_candidates(con: asyncpg.Connection) -> list[asyncpg.Record]:
    """Waiting patients who came by an invitation with a phone number and have not yet been sent the
    "about N minutes" SMS of this queue entry (its dedupe key is `queue_near:<entry id>`)."""
    rows: list[asyncpg.Record] = await con.fetch(
        f"""SELECT q.id AS entry_id, q.patient_id, q.facility_id, i.id AS invitation_id, i.lang, i.phone,
                   i.link_jti, l.expires_at, f.name AS facility_name
            {_QUEUE_NEAR}""")
    return rows


async def work_due(con: asyncpg.Connection, now: datetime, sending_timeout: timedelta) -> bool:
    """Has the scheduler anything to do now: a message due (or left `sending` past `sending_timeout`), a
    reminder whose appointment window closed, or a waiting patient without their "about N minutes" SMS?
    One statement, true whenever `claim_due`, `expire_passed_reminders` or `queue_near_candidates` would find
    a row: an idle tick costs one round trip instead of three."""
    return bool(await con.fetchval(
        f"""SELECT EXISTS (SELECT 1 FROM outbound_message WHERE {_DUE.format(timeout="$2")})
                OR EXISTS (SELECT 1 FROM outbound_message m JOIN invitation i ON i.id = m.invitation_id
                           WHERE {_PASSED_REMINDER})
                OR EXISTS (SELECT 1 {_QUEUE_NEAR})""",
        now, sending_timeout))


async def cancel_pending(con: asyncpg.Connection, invitation_id: uuid.UUID) -> int:
    """Cancel the invitation's messages not yet sent (reminders of a revoked or moved appointment)."""
    status = await con.execute(
        "UPDATE outbound_message SET status = 'cancelled', next_attempt_at = NULL "
        "WHERE invitation_id = $1 AND status = 'scheduled'", invitation_id)
    return int(status.split()[-1])


async def expire_passed_reminders(con: asyncpg.Connection, now: datetime) -> int:
    """Reminders still waiting once their appointment's window has closed are pointless: cancel them.

    (After a long outage the scheduler sends what is late but still useful, not "15 minutes to go" the
    next day.)"""
    status = await con.execute(
        f"""UPDATE outbound_message m SET status = 'cancelled', last_error = 'appointment window closed'
            FROM invitation i WHERE m.invitation_id = i.id AND {_PASSED_REMINDER}""", now)
    return int(status.split()[-1])


async def claim_due(con: asyncpg.Connection, now: datetime, *, limit: int = 50,
                    sending_timeout: timedelta = timedelta(minutes=5)) -> list[OutboundMessage]:
    """Take up to `limit` messages to send now: due `scheduled` ones (past their retry time), and
    `sending` ones left for longer than `sending_timeout` by a process that crashed (see the module
    docstring). They come back `sending`; the caller must record the outcome with `mark_result`."""
    async with con.transaction():
        rows = await con.fetch(
            f"""UPDATE outbound_message m SET status = 'sending', sending_since = $1
               WHERE m.id IN (
                   SELECT id FROM outbound_message
                   WHERE {_DUE.format(timeout="$3")}
                   ORDER BY coalesce(next_attempt_at, due_at), id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED)
               RETURNING m.*""",
            now, limit, sending_timeout)
    return sorted((_message(r) for r in rows), key=lambda m: (m.due_at, m.id))


@dataclass(frozen=True)
class Outcome:
    """What a gateway reported for one send (possibly several HTTP tries)."""

    sent: bool
    attempts: int
    gateway: str
    provider_message_id: str | None = None
    error: str | None = None
    retry_at: datetime | None = None  # failed for now, try again then (None: failed for good)
    delivered: bool = False


async def mark_result(con: asyncpg.Connection, message_id: int, outcome: Outcome, now: datetime) -> None:
    """Record the outcome of a claimed message (sent, retry later, or failed), audited as `message.send`."""
    async with con.transaction():
        if outcome.sent:
            status = MessageStatus.delivered if outcome.delivered else MessageStatus.sent
        else:
            status = MessageStatus.scheduled if outcome.retry_at is not None else MessageStatus.failed
        row = await con.fetchrow(
            """UPDATE outbound_message
               SET status = $2, attempts = attempts + $3, gateway = $4,
                   provider_message_id = coalesce($5, provider_message_id), last_error = $6,
                   next_attempt_at = $7, sending_since = NULL,
                   sent_at = CASE WHEN $8 THEN $9::timestamptz ELSE sent_at END,
                   delivered_at = CASE WHEN $10 THEN $9::timestamptz ELSE delivered_at END
               WHERE id = $1 AND status = 'sending'
               RETURNING kind, invitation_id, attempts""",
            message_id, status.value, outcome.attempts, outcome.gateway, outcome.provider_message_id,
            outcome.error, outcome.retry_at, outcome.sent, now, outcome.delivered)
        if row is None:  # someone else recorded it (a reclaim after our timeout): theirs stands
            return
        await audit.record(con, audit.SYSTEM, "message.send", "outbound_message", message_id,
                           {"kind": row["kind"], "status": status.value, "attempts": row["attempts"],
                            "gateway": outcome.gateway, "invitation": str(row["invitation_id"] or "")})


async def record_delivery(con: asyncpg.Connection, gateway: str, provider_message_id: str, delivered: bool,
                          at: datetime, error: str | None = None) -> bool:
    """A delivery report from the provider: delivered, or failed after it accepted the message."""
    status = await con.execute(
        """UPDATE outbound_message
           SET status = CASE WHEN $3 THEN 'delivered' ELSE 'failed' END,
               delivered_at = CASE WHEN $3 THEN $4::timestamptz ELSE delivered_at END,
               last_error = coalesce($5, last_error)
           WHERE gateway = $1 AND provider_message_id = $2 AND status IN ('sent', 'delivered')""",
        gateway, provider_message_id, delivered, at, error)
    return bool(status.endswith(" 1"))


async def get(con: asyncpg.Connection, message_id: int) -> OutboundMessage | None:
    row = await con.fetchrow("SELECT * FROM outbound_message WHERE id = $1", message_id)
    return _message(row) if row else None


async def for_invitation(con: asyncpg.Connection, invitation_id: uuid.UUID) -> list[OutboundMessage]:
    """Every message of an invitation (and of the ones it replaced), newest first."""
    rows = await con.fetch(
        """WITH RECURSIVE chain(id) AS (
               SELECT $1::uuid
               UNION SELECT i.id FROM invitation i JOIN chain c ON i.replaced_by = c.id)
           SELECT * FROM outbound_message WHERE invitation_id IN (SELECT id FROM chain)
           ORDER BY coalesce(sent_at, due_at) DESC, id DESC""", invitation_id)
    return [_message(r) for r in rows]


async def outbox(con: asyncpg.Connection, facility_id: int, status: str | None = None,
                 limit: int = 200) -> list[OutboundMessage]:
    """Messages to patients of `facility_id` and the facilities below it, newest first."""
    rows = await con.fetch(
        """SELECT m.* FROM outbound_message m JOIN patient p ON p.id = m.patient_id
           WHERE p.facility_id IN (SELECT facility_subtree($1)) AND ($2::text IS NULL OR m.status = $2)
           ORDER BY m.created_at DESC, m.id DESC LIMIT $3""", facility_id, status, limit)
    return [_message(r) for r in rows]
