"""Staff messages about a patient in PostgreSQL: threads, their messages, who has read how far.

A thread is about one patient; its recipients are the staff of the patient's station (`patient.facility_id`:
doctors, specialists and nurses, active accounts) and everyone who wrote in it. Starting a thread and
replying are each one transaction with their audit event (`thread.start`, `thread.message`); the writer's
own message counts as read. Each use case returns who should be told over their socket (the web layer
pushes `thread_message` through the hub). The rules of a message are care/threads.py's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from care.threads import Topic, message_body
from db import audit
from db.errors import NotFound

STATION_ROLES = ("doctor", "specialist", "nurse")  # who at the station reads and answers (not coordinators)


@dataclass(frozen=True)
class Thread:
    id: uuid.UUID
    patient_id: int
    facility_id: int  # the patient's station (now): the policy's object facility, the recipients' facility
    context: str | None
    reason: str | None
    started_by: int
    started_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class Message:
    id: int
    author_id: int
    author_name: str
    author_facility: str
    body: str
    at: datetime


@dataclass(frozen=True)
class Posted:
    """A message written: its thread, its id, and whom to tell (never its writer)."""

    thread: Thread
    message_id: int
    recipients: tuple[int, ...]


@dataclass(frozen=True)
class InboxRow:
    thread: Thread
    patient_name: str
    facility_name: str
    unread: int
    last_author: str
    last_body: str


_THREAD = """SELECT t.id, t.patient_id, p.facility_id, t.context, t.reason, t.started_by, t.started_at, t.last_at
             FROM staff_thread t JOIN patient p ON p.id = t.patient_id"""


def _thread(r: asyncpg.Record) -> Thread:
    return Thread(r["id"], r["patient_id"], r["facility_id"], r["context"], r["reason"], r["started_by"],
                  r["started_at"], r["last_at"])


async def get(con: asyncpg.Connection, thread_id: uuid.UUID) -> Thread | None:
    row = await con.fetchrow(f"{_THREAD} WHERE t.id = $1", thread_id)
    return _thread(row) if row else None


async def _recipients(con: asyncpg.Connection, thread: Thread, author_id: int) -> tuple[int, ...]:
    rows = await con.fetch(
        """SELECT id FROM staff WHERE facility_id = $1 AND active AND role = ANY($2::text[])
           UNION SELECT author_id FROM staff_thread_message WHERE thread_id = $3""",
        thread.facility_id, list(STATION_ROLES), thread.id)
    return tuple(sorted(r["id"] for r in rows if r["id"] != author_id))


async def _post(con: asyncpg.Connection, thread_id: uuid.UUID, author_id: int, body: str, now: datetime) -> int:
    message_id: int = await con.fetchval(
        "INSERT INTO staff_thread_message (thread_id, author_id, body, at) VALUES ($1, $2, $3, $4) RETURNING id",
        thread_id, author_id, body, now)
    await con.execute("UPDATE staff_thread SET last_at = greatest(last_at, $2) WHERE id = $1", thread_id, now)
    await _read_up_to(con, thread_id, author_id, message_id)
    return message_id


async def _read_up_to(con: asyncpg.Connection, thread_id: uuid.UUID, staff_id: int, message_id: int) -> None:
    await con.execute(
        """INSERT INTO staff_thread_read (thread_id, staff_id, read_up_to) VALUES ($1, $2, $3)
           ON CONFLICT (staff_id, thread_id) DO UPDATE
           SET read_up_to = greatest(staff_thread_read.read_up_to, EXCLUDED.read_up_to)""",
        thread_id, staff_id, message_id)


async def start(con: asyncpg.Connection, *, patient_id: int, author_id: int, text: str, topic: Topic,
                now: datetime) -> Posted:
    """A new thread about the patient with its first message (audited `thread.start`). ThreadError for a
    bad text; NotFound for a patient that does not exist."""
    body = message_body(text)
    async with con.transaction():
        if await con.fetchval("SELECT 1 FROM patient WHERE id = $1", patient_id) is None:
            raise NotFound("patient", patient_id)
        thread_id: uuid.UUID = await con.fetchval(
            "INSERT INTO staff_thread (patient_id, context, reason, started_by, started_at, last_at) "
            "VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            patient_id, topic.context.value if topic.context else None, topic.reason, author_id, now)
        message_id = await _post(con, thread_id, author_id, body, now)
        thread = await get(con, thread_id)
        assert thread is not None
        await audit.record(con, audit.Actor.staff(author_id), "thread.start", "staff_thread", thread_id,
                           {"patient": patient_id, "message": message_id, "context": thread.context,
                            "reason": thread.reason})
        recipients = await _recipients(con, thread, author_id)
    return Posted(thread, message_id, recipients)


async def reply(con: asyncpg.Connection, *, thread_id: uuid.UUID, author_id: int, text: str,
                now: datetime) -> Posted:
    """A message in an existing thread (audited `thread.message`)."""
    body = message_body(text)
    async with con.transaction():
        if await con.fetchval("SELECT 1 FROM staff_thread WHERE id = $1 FOR UPDATE", thread_id) is None:
            raise NotFound("thread", thread_id)
        message_id = await _post(con, thread_id, author_id, body, now)
        thread = await get(con, thread_id)
        assert thread is not None
        await audit.record(con, audit.Actor.staff(author_id), "thread.message", "staff_thread", thread_id,
                           {"patient": thread.patient_id, "message": message_id})
        recipients = await _recipients(con, thread, author_id)
    return Posted(thread, message_id, recipients)


async def messages(con: asyncpg.Connection, thread_id: uuid.UUID) -> list[Message]:
    rows = await con.fetch(
        """SELECT m.id, m.author_id, s.name AS author_name, f.name AS author_facility, m.body, m.at
           FROM staff_thread_message m JOIN staff s ON s.id = m.author_id JOIN facility f ON f.id = s.facility_id
           WHERE m.thread_id = $1 ORDER BY m.id""", thread_id)
    return [Message(r["id"], r["author_id"], r["author_name"], r["author_facility"], r["body"], r["at"])
            for r in rows]


async def mark_read(con: asyncpg.Connection, thread_id: uuid.UUID, staff_id: int) -> int:
    """Everything in the thread so far is read by `staff_id`; returns their unread total left (all threads)."""
    async with con.transaction():
        latest = await con.fetchval("SELECT max(id) FROM staff_thread_message WHERE thread_id = $1", thread_id)
        if latest is not None:
            await _read_up_to(con, thread_id, staff_id, latest)
    facility_id: int = await con.fetchval("SELECT facility_id FROM staff WHERE id = $1", staff_id)
    return await unread_total(con, staff_id, facility_id)


# Threads a staff member follows: those about their station's patients, and those they wrote in.
_MINE = """
WITH mine AS (
    SELECT t.id FROM staff_thread t JOIN patient p ON p.id = t.patient_id WHERE p.facility_id = $2
    UNION SELECT DISTINCT thread_id FROM staff_thread_message WHERE author_id = $1
)"""
_UNREAD = """(SELECT count(*) FROM staff_thread_message m WHERE m.thread_id = t.id AND m.author_id <> $1
               AND m.id > coalesce((SELECT r.read_up_to FROM staff_thread_read r
                                    WHERE r.thread_id = t.id AND r.staff_id = $1), 0))"""


async def inbox(con: asyncpg.Connection, staff_id: int, facility_id: int, limit: int = 100) -> list[InboxRow]:
    """The threads `staff_id` follows, latest message first, each with its unread count."""
    rows = await con.fetch(
        f"""{_MINE}
        SELECT t.id, t.patient_id, p.facility_id, t.context, t.reason, t.started_by, t.started_at, t.last_at,
               p.name AS patient_name, f.name AS facility_name, {_UNREAD} AS unread,
               lm.author_name AS last_author, lm.body AS last_body
        FROM mine JOIN staff_thread t ON t.id = mine.id JOIN patient p ON p.id = t.patient_id
        JOIN facility f ON f.id = p.facility_id
        JOIN LATERAL (SELECT s.name AS author_name, m.body FROM staff_thread_message m JOIN staff s
                      ON s.id = m.author_id WHERE m.thread_id = t.id ORDER BY m.id DESC LIMIT 1) lm ON true
        ORDER BY t.last_at DESC, t.id LIMIT $3""", staff_id, facility_id, limit)
    return [InboxRow(_thread(r), r["patient_name"], r["facility_name"], r["unread"], r["last_author"],
                     r["last_body"]) for r in rows]


async def unread_total(con: asyncpg.Connection, staff_id: int, facility_id: int) -> int:
    total: int = await con.fetchval(
        f"{_MINE} SELECT coalesce(sum({_UNREAD}), 0)::int FROM mine JOIN staff_thread t ON t.id = mine.id",
        staff_id, facility_id)
    return total


async def for_patient(con: asyncpg.Connection, patient_id: int) -> list[tuple[Thread, list[Message]]]:
    """Every thread about the patient with its messages, latest thread first (the patient's record)."""
    rows = await con.fetch(f"{_THREAD} WHERE t.patient_id = $1 ORDER BY t.last_at DESC LIMIT 50", patient_id)
    return [(_thread(r), await messages(con, r["id"])) for r in rows]
