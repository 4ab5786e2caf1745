"""The audit trail: who read or changed what. Append-only and hash-chained so tampering shows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

_GENESIS = "0" * 64
# Serialises appends so each row chains to the one before it.
_AUDIT_LOCK = 0x0A0D_170E


@dataclass(frozen=True)
class Actor:
    """Who did it: a staff member, a patient (by link), or the system."""

    kind: str  # staff | patient | system
    id: str | None

    @classmethod
    def staff(cls, staff_id: int) -> Actor:
        return cls("staff", str(staff_id))

    @classmethod
    def patient(cls, patient_id: int) -> Actor:
        return cls("patient", str(patient_id))


SYSTEM = Actor("system", None)


def _payload(prev_hash: str, at: str, actor: Actor, action: str, object_kind: str, object_id: str,
             details: dict[str, Any]) -> str:
    return json.dumps([prev_hash, at, actor.kind, actor.id, action, object_kind, object_id, details],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


# What `_payload` starts with for an empty head and time: the rest is what audit_append completes.
_PAYLOAD_HEAD = '["","",'


def _digest(prev_hash: str, at: datetime, actor: Actor, action: str, object_kind: str,
            object_id: str, details: dict[str, Any]) -> str:
    payload = _payload(prev_hash, at.isoformat(), actor, action, object_kind, object_id, details)
    return hashlib.sha256(payload.encode()).hexdigest()


async def record(con: asyncpg.Connection, actor: Actor, action: str, object_kind: str, object_id: object,
                 details: dict[str, Any] | None = None) -> None:
    """Append one event, inside the caller's transaction (so it lands or not with the change it describes)."""
    details = details or {}
    if not con.is_in_transaction():
        # A transaction of our own: outside one, the xact lock would be released after its own statement
        # and two concurrent appends could chain to the same row.
        async with con.transaction():
            await _append(con, actor, action, object_kind, str(object_id), details)
        return
    # Inside the caller's transaction the lock lasts until it ends, and a failure aborts it anyway: no
    # savepoint (two round trips fewer while every other audited write waits for the lock).
    await _append(con, actor, action, object_kind, str(object_id), details)


async def _append(con: asyncpg.Connection, actor: Actor, action: str, object_kind: str, object_id: str,
                  details: dict[str, Any]) -> None:
    # One round trip (migration 0023): the lock, the chain's head read after it, and the row whose hash the
    # function completes from the canonical JSON below (`_digest`'s, without the head and the time) — the
    # lock is then held for this statement and the commit only, not for three round trips.
    rest = _payload("", "", actor, action, object_kind, object_id, details)[len(_PAYLOAD_HEAD):]
    await con.execute("SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8)", _AUDIT_LOCK, actor.kind, actor.id,
                      action, object_kind, object_id, details, rest)


@dataclass(frozen=True)
class Event:
    """One audit event to append (`record_many`): what `record` takes, as a value."""

    actor: Actor
    action: str
    object_kind: str
    object_id: object
    details: dict[str, Any] = field(default_factory=dict)


def canonical_rest(event: Event) -> str:
    """The event's canonical JSON (`_digest`'s) without its first two members, the chain's head and the time,
    which the append fills in under the lock (migrations 0023, 0024)."""
    return _payload("", "", event.actor, event.action, event.object_kind, str(event.object_id),
                    event.details)[len(_PAYLOAD_HEAD):]


def details_text(event: Event) -> str:
    """The event's details as the JSON text an append stores (jsonb)."""
    return json.dumps(event.details, ensure_ascii=False, default=str)


# The chain's lock, for SQL that appends events itself (the batch functions of migration 0024).
LOCK_KEY = _AUDIT_LOCK


async def record_many(con: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Append several events in order, taking the chain's lock once (group commit: a batch of claims or ends,
    signaling/batch.py): each is its own row, chained and hashed exactly as `record` would have made it, one
    after the other (migration 0024, `audit_append_many`). Inside the caller's transaction if it has one;
    otherwise the statement is its own."""
    if not events:
        return
    await con.execute(
        "SELECT audit_append_many($1, $2, $3, $4, $5, $6, $7, $8)", _AUDIT_LOCK,
        [e.actor.kind for e in events], [e.actor.id for e in events], [e.action for e in events],
        [e.object_kind for e in events], [str(e.object_id) for e in events],
        [details_text(e) for e in events], [canonical_rest(e) for e in events])


async def verify_chain(con: asyncpg.Connection) -> int | None:
    """Recompute every hash; return the id of the first broken row, or None when the chain is intact."""
    prev = _GENESIS
    async with con.transaction():
        async for row in con.cursor("SELECT * FROM audit_event ORDER BY id"):
            actor = Actor(row["actor_kind"], row["actor_id"])
            expected = _digest(prev, row["at"], actor, row["action"], row["object_kind"],
                               row["object_id"], row["details"])
            if row["prev_hash"] != prev or row["hash"] != expected:
                return int(row["id"])
            prev = row["hash"]
    return None


async def events_for(con: asyncpg.Connection, object_kind: str, object_id: object) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await con.fetch(
        "SELECT * FROM audit_event WHERE object_kind = $1 AND object_id = $2 ORDER BY id",
        object_kind, str(object_id),
    )
    return rows
