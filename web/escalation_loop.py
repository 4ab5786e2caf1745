"""The escalation loop: every second, fire passed deadlines, expire passed offer windows (re-routing at
once) and look again for candidates for requests that found nobody on duty.

The due rows are claimed in PostgreSQL with `FOR UPDATE SKIP LOCKED` (db/escalations.py), one per
transaction, so a restart misses nothing and two processes never handle the same row. "now" is the
application clock, which tests and the simulation move. What changed is handed to `notify` (the web
layer pushes it to the sockets concerned).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from db import escalations as escalations_db
from db.escalations import Notice, Policies
from web.clock import Clock

log = logging.getLogger(__name__)

Notify = Callable[[list[Notice]], None]


@dataclass(frozen=True)
class TickResult:
    overdue: int
    expired: int
    routed: int


class EscalationLoop:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, policies: Policies, *,
                 notify: Notify = lambda notices: None, interval_s: float = 1.0, batch: int = 200) -> None:
        self.pool = pool
        self.clock = clock
        self.policies = policies
        self.notify = notify
        self.interval_s = interval_s
        self.batch = batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._stopping), name="escalation-loop")

    def wake(self) -> None:
        """Run a round now (an offer was cut short by someone going away)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the round in progress (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        await task

    async def _run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.tick()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("escalation loop round failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()

    async def tick(self) -> TickResult:
        """One round: deadlines first (a request past its deadline is not re-routed), then offer windows,
        then requests waiting for someone on duty. Each kind until none is due (at most `batch`)."""
        now = self.clock.now()
        # One look first: most seconds nothing is due, and each process then makes one query instead of three
        # claiming transactions (nine round trips). `next_due` covers every row the three steps below claim.
        async with self.pool.acquire() as con:
            due = await escalations_db.next_due(con)
        if due is None or due > now:
            return TickResult(0, 0, 0)
        counts = []
        for step in ("deadline", "offer", "waiting"):
            done = 0
            while done < self.batch:
                async with self.pool.acquire() as con:
                    if step == "deadline":
                        outcome = await escalations_db.fire_one_deadline(con, now)
                    elif step == "offer":
                        outcome = await escalations_db.expire_one_offer(con, now, self.policies)
                    else:
                        outcome = await escalations_db.route_one_waiting(con, now, self.policies)
                if outcome is None:
                    break
                done += 1
                if outcome.notices:
                    self.notify(outcome.notices)
            counts.append(done)
        return TickResult(*counts)
