"""Join links: the row behind the opaque token a patient receives by SMS/Zalo."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from db import audit
from db.errors import NotFound


class LinkState(StrEnum):
    usable = "usable"
    expired = "expired"
    revoked = "revoked"
    finished = "finished"
    unknown = "unknown"


@dataclass(frozen=True)
class JoinLink:
    jti: uuid.UUID
    patient_id: int
    facility_id: int
    purpose: str
    expires_at: datetime
    state: LinkState


async def create(con: asyncpg.Connection, patient_id: int, ttl: timedelta,
                 created_by: int | None = None) -> tuple[uuid.UUID, datetime]:
    """A new link for a patient; returns (jti, expires_at)."""
    if not await con.fetchval("SELECT 1 FROM patient WHERE id = $1", patient_id):
        raise NotFound("patient", patient_id)
    jti = uuid.uuid4()
    expires_at: datetime = await con.fetchval(
        """INSERT INTO join_link (jti, patient_id, created_by, expires_at)
           VALUES ($1, $2, $3, now() + $4::interval) RETURNING expires_at""",
        jti, patient_id, created_by, ttl,
    )
    return jti, expires_at


async def lookup(con: asyncpg.Connection, jti: uuid.UUID) -> JoinLink | None:
    """The link with its current state (the database clock decides expiry, not the JWT alone)."""
    row = await con.fetchrow(
        """SELECT l.*, p.facility_id,
                  CASE WHEN l.revoked_at IS NOT NULL THEN 'revoked'
                       WHEN l.finished_at IS NOT NULL THEN 'finished'
                       WHEN l.expires_at <= now() THEN 'expired'
                       ELSE 'usable' END AS state
           FROM join_link l JOIN patient p ON p.id = l.patient_id WHERE l.jti = $1""",
        jti,
    )
    if row is None:
        return None
    return JoinLink(row["jti"], row["patient_id"], row["facility_id"], row["purpose"], row["expires_at"],
                    LinkState(row["state"]))


async def lookup_many(con: asyncpg.Connection, jtis: Sequence[uuid.UUID]) -> dict[uuid.UUID, JoinLink]:
    """`lookup` for many links in one statement (every page saying hello at once after a restart)."""
    rows = await con.fetch(
        """SELECT l.jti, l.patient_id, l.purpose, l.expires_at, p.facility_id,
                  CASE WHEN l.revoked_at IS NOT NULL THEN 'revoked'
                       WHEN l.finished_at IS NOT NULL THEN 'finished'
                       WHEN l.expires_at <= now() THEN 'expired'
                       ELSE 'usable' END AS state
           FROM join_link l JOIN patient p ON p.id = l.patient_id WHERE l.jti = ANY($1::uuid[])""",
        list(set(jtis)),
    )
    return {row["jti"]: JoinLink(row["jti"], row["patient_id"], row["facility_id"], row["purpose"],
                                 row["expires_at"], LinkState(row["state"])) for row in rows}


async def revoke(con: asyncpg.Connection, jti: uuid.UUID) -> bool:
    status = await con.execute("UPDATE join_link SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL",
                               jti)
    return bool(status.endswith(" 1"))


async def mark_finished(con: asyncpg.Connection, jti: uuid.UUID) -> None:
    await con.execute("UPDATE join_link SET finished_at = now() WHERE jti = $1 AND finished_at IS NULL", jti)


async def give_consent(con: asyncpg.Connection, link: JoinLink, text_version: str, lang: str) -> datetime:
    """The patient consents to a remote consultation: the consent row and its audit event, together."""
    async with con.transaction():
        given_at = await record_consent(con, link, text_version, lang)
        await audit.record(con, audit.Actor.patient(link.patient_id), "consent.give", "join_link", link.jti,
                           {"version": text_version, "lang": lang})
    return given_at


async def record_consent(con: asyncpg.Connection, link: JoinLink, text_version: str, lang: str) -> datetime:
    given_at: datetime = await con.fetchval(
        """INSERT INTO consent (patient_id, link_jti, kind, text_version, lang)
           VALUES ($1, $2, 'teleconsultation', $3, $4) RETURNING given_at""",
        link.patient_id, link.jti, text_version, lang,
    )
    return given_at


async def consent_given(con: asyncpg.Connection, jti: uuid.UUID, text_version: str) -> bool:
    return bool(await con.fetchval(
        "SELECT 1 FROM consent WHERE link_jti = $1 AND text_version = $2", jti, text_version))


async def revoked_among(con: asyncpg.Connection, jtis: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these links have been revoked (the hub closes the sockets that use them)."""
    if not jtis:
        return set()
    rows = await con.fetch("SELECT jti FROM join_link WHERE jti = ANY($1::uuid[]) AND revoked_at IS NOT NULL",
                           jtis)
    return {r["jti"] for r in rows}
