"""The message scheduler: every second, send what is due, and tell patients near the head of the queue.

PostgreSQL drives it: messages are rows with a due time, claimed with `FOR UPDATE SKIP LOCKED` (see
db/messages.py), so a restart sends nothing twice and misses nothing, and two processes can run one each.
"now" is the application clock (`app[clock_key]`), which tests move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import asyncpg
from aiohttp import web

from care.sms import MessageKind, compose
from db import facilities as facilities_db
from db import messages as messages_db
from db import queue as queue_db
from db.invitations import LinkUrl, short_url
from signaling.queue import expected_wait_s, serves
from web.auth import join_url
from web.clock import Clock
from web.gateways import MessageGateway, gateway_from_settings
from web.keys import clock_key, hub_key, pool_key, settings_key, signer_key

log = logging.getLogger(__name__)

# Facility ids of the doctors online now, one per doctor (however many tabs they have open).
DoctorFacilities = Callable[[], list[int]]

# After the gateway's own quick retries, a message that still failed for a passing reason (5xx, timeout)
# waits this long and tries again, up to MAX_ROUNDS sends in all.
DEFERRALS: tuple[timedelta, ...] = (timedelta(minutes=1), timedelta(minutes=5))
MAX_ROUNDS = len(DEFERRALS) + 1


@dataclass(frozen=True)
class TickResult:
    queue_near: int
    sent: int
    failed: int
    deferred: int


class Scheduler:
    """Sends due messages through `gateway`; schedules "about N minutes" messages for the queue."""

    def __init__(self, pool: asyncpg.Pool, gateway: MessageGateway, clock: Clock, *, link_url: LinkUrl,
                 doctor_facilities: DoctorFacilities = list, queue_near_minutes: int = 10,
                 tries_per_send: int = 1, interval_s: float = 1.0, batch: int = 50,
                 sending_timeout: timedelta = timedelta(minutes=5)) -> None:
        self.pool = pool
        self.gateway = gateway
        self.clock = clock
        self.link_url = link_url
        self.doctor_facilities = doctor_facilities
        self.queue_near_s = queue_near_minutes * 60
        self.tries_per_send = max(1, tries_per_send)
        self.interval_s = interval_s
        self.batch = batch
        self.sending_timeout = sending_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._stopping), name="message-scheduler")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop after the round in progress (idempotent); cancel it if it takes longer than `grace_s`. A
        send cut off that way stays `sending` and is sent again after the timeout (see db/messages.py)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.tick()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("scheduler tick failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)

    # ---- one round ----------------------------------------------------------------------------------

    async def tick(self) -> TickResult:
        """Schedule queue messages, then send everything due (in batches until none is left)."""
        async with self.pool.acquire() as con:  # one look first: most seconds there is nothing to do
            if not await messages_db.work_due(con, self.clock.now(), self.sending_timeout):
                return TickResult(0, 0, 0, 0)
        near = await self.schedule_queue_near()
        sent = failed = deferred = 0
        while True:
            s, f, d, claimed = await self.send_due()
            sent, failed, deferred = sent + s, failed + f, deferred + d
            if claimed < self.batch:
                break
        return TickResult(near, sent, failed, deferred)

    async def send_due(self) -> tuple[int, int, int, int]:
        """One batch: (sent, failed, deferred, claimed)."""
        now = self.clock.now()
        async with self.pool.acquire() as con:
            await messages_db.expire_passed_reminders(con, now)
            claimed = await messages_db.claim_due(con, now, limit=self.batch, sending_timeout=self.sending_timeout)
        sent = failed = deferred = 0
        for message in claimed:
            result = await self.gateway.send(message)
            retry_at = None
            if not result.ok and result.retryable:
                rounds = math.ceil((message.attempts + result.attempts) / self.tries_per_send)
                if rounds < MAX_ROUNDS:
                    retry_at = self.clock.now() + DEFERRALS[max(rounds - 1, 0)]
            outcome = messages_db.Outcome(result.ok, result.attempts, self.gateway.name,
                                          result.provider_message_id, result.error, retry_at, result.delivered)
            async with self.pool.acquire() as con:
                await messages_db.mark_result(con, message.id, outcome, self.clock.now())
            if result.ok:
                sent += 1
            elif retry_at is not None:
                deferred += 1
            else:
                failed += 1
                log.warning("message could not be sent", extra={"message_id": message.id, "error": result.error})
        return sent, failed, deferred, len(claimed)

    async def schedule_queue_near(self) -> int:
        """One "about N minutes" SMS per queue entry, for invited patients whose expected wait is short."""
        now = self.clock.now()
        scheduled = 0
        async with self.pool.acquire() as con:
            rows = await messages_db.queue_near_candidates(con)
            if not rows:
                return 0
            # Counted only when someone may be told (every second, over every socket of the process).
            doctors = self.doctor_facilities()
            if not doctors:
                return 0  # no doctor online: no estimate to give
            places = await queue_db.waiting_places(con)
            mean_s = await queue_db.mean_consultation_seconds(con)
            parents = await facilities_db.parents(con)
            for r in rows:
                place = places.get(r["patient_id"])
                if place is None or place[0] != r["entry_id"]:
                    continue
                online = sum(1 for f in doctors if serves(f, r["facility_id"], parents))
                eta = expected_wait_s(place[1], online, mean_s)
                if eta is None or eta > self.queue_near_s:
                    continue
                minutes = max(1, math.ceil(eta / 60))
                url = await short_url(con, self.link_url, r["link_jti"], r["expires_at"])
                sms = compose(MessageKind.queue_near, r["lang"], facility=r["facility_name"], url=url,
                              minutes=minutes)
                if await messages_db.schedule(con, invitation_id=r["invitation_id"], patient_id=r["patient_id"],
                                              to_phone=r["phone"], lang=r["lang"], kind=MessageKind.queue_near,
                                              body=sms.text, dedupe_key=f"queue_near:{r['entry_id']}", due_at=now):
                    scheduled += 1
        return scheduled


def hub_doctor_facilities(app: web.Application) -> DoctorFacilities:
    """Doctors online (in every process, with the bus), as the waiting room's estimate counts them."""
    def facilities() -> list[int]:
        return app[hub_key].doctor_facilities()
    return facilities


scheduler_key = web.AppKey("scheduler_key", Scheduler)


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the scheduler (and the HTTP client its gateway needs), started after the pool and the
    hub exist and stopped before they go."""
    settings = app[settings_key]
    session = aiohttp.ClientSession() if settings.sms_gateway == "http" else None
    try:
        gateway = gateway_from_settings(settings, session)
        scheduler = Scheduler(app[pool_key], gateway, app[clock_key],
                              link_url=join_url(app[signer_key], settings.base_url),
                              doctor_facilities=hub_doctor_facilities(app),
                              queue_near_minutes=settings.queue_near_minutes,
                              tries_per_send=settings.sms_retries + 1 if settings.sms_gateway == "http" else 1,
                              interval_s=settings.scheduler_interval_s)
        app[scheduler_key] = scheduler
        scheduler.start()
        yield
        await scheduler.stop()
    finally:
        if session is not None:
            await session.close()
