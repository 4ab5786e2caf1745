"""Failed sign-in counters (table `signin_throttle`): per account, per client address, per trusted device."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, order=True)
class Subject:
    kind: str      # account | address | device
    subject: str   # an HMAC of the account name (account, device) or the client IP (address)


@dataclass(frozen=True)
class Counter:
    subject: Subject
    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None


async def lock(con: asyncpg.Connection, subjects: list[Subject], now: datetime) -> dict[Subject, Counter]:
    """The counters of these subjects, row-locked until the caller's transaction ends (created at zero
    when new). Locked in one order, so two attempts on the same subjects queue instead of deadlocking."""
    ordered = sorted(set(subjects))
    kinds, names = [s.kind for s in ordered], [s.subject for s in ordered]
    await con.execute(
        """INSERT INTO signin_throttle (kind, subject, failures, last_failure_at)
           SELECT k, s, 0, $3 FROM unnest($1::text[], $2::text[]) AS t(k, s)
           ON CONFLICT (kind, subject) DO NOTHING""", kinds, names, now)
    rows = await con.fetch(
        """SELECT t.kind, t.subject, failures, last_failure_at, blocked_until
           FROM signin_throttle t JOIN unnest($1::text[], $2::text[]) AS u(k, s) ON t.kind = u.k AND t.subject = u.s
           ORDER BY t.kind, t.subject FOR UPDATE OF t""", kinds, names)
    counters = {}
    for row in rows:
        subject = Subject(row["kind"], row["subject"])
        counters[subject] = Counter(subject, row["failures"], row["last_failure_at"], row["blocked_until"])
    return counters


async def save(con: asyncpg.Connection, counter: Counter) -> None:
    await con.execute(
        """UPDATE signin_throttle SET failures = $3, last_failure_at = $4, blocked_until = $5
           WHERE kind = $1 AND subject = $2""",
        counter.subject.kind, counter.subject.subject, counter.failures, counter.last_failure_at,
        counter.blocked_until)


async def forget(con: asyncpg.Connection, subject: Subject) -> None:
    await con.execute("DELETE FROM signin_throttle WHERE kind = $1 AND subject = $2", subject.kind, subject.subject)


async def prune(con: asyncpg.Connection, quiet_since: datetime, now: datetime) -> int:
    """Drop counters with no failure since `quiet_since` and no lock still running; returns how many.
    Rows another sign-in holds are skipped (left for next time), so pruning never waits or deadlocks."""
    result: str = await con.execute(
        """DELETE FROM signin_throttle WHERE (kind, subject) IN (
               SELECT kind, subject FROM signin_throttle
               WHERE last_failure_at < $1 AND (blocked_until IS NULL OR blocked_until < $2)
               LIMIT 1000 FOR UPDATE SKIP LOCKED)""",
        quiet_since, now)
    return int(result.rsplit(" ", 1)[-1])
