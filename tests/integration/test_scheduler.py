"""web.scheduler on real PostgreSQL with a clock we move: each reminder exactly once, across restarts and
with two schedulers at once; nothing due is missed; crashed sends are retried; the queue's "doctor soon"."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import asyncpg
import pytest

from db import messages as messages_db
from db import queue as queue_db
from db.invitations import Booking, InvitationKind
from db.messages import OutboundMessage
from tests.integration.conftest import Factory
from tests.integration.test_invitations import LINK_URL, POLICY, appointment, create, messages_of
from web.clock import Clock
from web.gateways import OutboxGateway, SendResult
from web.scheduler import Scheduler


class RecordingGateway(OutboxGateway):
    """The outbox gateway, remembering what it sent; `results` can script failures."""

    def __init__(self, results: list[SendResult] | None = None, pause: float = 0.0) -> None:
        self.sent: list[OutboundMessage] = []
        self.results = results or []
        self.pause = pause
        self._changed = asyncio.Condition()

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.pause:
            await asyncio.sleep(self.pause)  # lets concurrent schedulers interleave
        result = self.results.pop(0) if self.results else await super().send(message)
        async with self._changed:
            self.sent.append(message)
            self._changed.notify_all()
        return result

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.sent) >= count)

    def kinds(self) -> list[str]:
        return [m.kind for m in self.sent]


def scheduler(pool: asyncpg.Pool, gateway: RecordingGateway, clock: Clock, **kw: object) -> Scheduler:
    return Scheduler(pool, gateway, clock, link_url=LINK_URL, interval_s=0.01, **kw)  # type: ignore[arg-type]


async def send_events(pool: asyncpg.Pool) -> Counter[str]:
    async with pool.acquire() as con:
        rows = await con.fetch("SELECT object_id FROM audit_event WHERE action = 'message.send'")
    return Counter(r["object_id"] for r in rows)


async def test_each_reminder_is_sent_exactly_once_across_a_restart(pool: asyncpg.Pool, make: Factory) -> None:
    clock, gateway = Clock(), RecordingGateway()
    doctor, patient = await make.staff(), await make.patient()
    slot = clock.now() + timedelta(days=2)
    inv = await create(pool, appointment(slot, doctor), patient, doctor, clock.now())

    first = scheduler(pool, gateway, clock)
    first.start()
    await gateway.wait_for(1)  # the invitation itself is due now
    clock.advance(timedelta(days=1, seconds=1))  # the day before
    await gateway.wait_for(2)
    await first.tick()  # nothing more is due
    await first.stop()
    assert gateway.kinds() == ["invitation", "reminder_day_before"]

    restarted = scheduler(pool, gateway, clock)  # a new process over the same database
    assert (await restarted.tick()).sent == 0
    clock.advance(slot - timedelta(minutes=15) - clock.now())
    restarted.start()
    await gateway.wait_for(3)
    await restarted.tick()
    clock.advance(timedelta(hours=2))
    await restarted.tick()
    await restarted.stop()

    assert gateway.kinds() == ["invitation", "reminder_day_before", "reminder_15_min"]
    msgs = await messages_of(pool, inv.id)
    assert {k: m.status for k, m in msgs.items()} == dict.fromkeys(msgs, "sent")
    assert all(m.attempts == 1 and m.gateway == "outbox" and m.sent_at is not None for m in msgs.values())
    assert sorted((await send_events(pool)).values()) == [1, 1, 1]


async def test_nothing_due_is_missed_after_a_restart(pool: asyncpg.Pool, make: Factory) -> None:
    clock, gateway = Clock(), RecordingGateway()
    doctor, patient = await make.staff(), await make.patient()
    slot = clock.now() + timedelta(days=2)
    await create(pool, appointment(slot, doctor), patient, doctor, clock.now())
    await scheduler(pool, gateway, clock).tick()
    # Down for a day and a half: both reminders fell due while nobody was running.
    clock.advance(slot - timedelta(minutes=10) - clock.now())
    result = await scheduler(pool, gateway, clock).tick()
    assert result.sent == 2
    assert gateway.kinds() == ["invitation", "reminder_day_before", "reminder_15_min"]


async def test_reminders_after_the_window_closed_are_not_sent_late(pool: asyncpg.Pool, make: Factory) -> None:
    clock, gateway = Clock(), RecordingGateway()
    doctor, patient = await make.staff(), await make.patient()
    slot = clock.now() + timedelta(days=2)
    inv = await create(pool, appointment(slot, doctor), patient, doctor, clock.now(), send=False)
    clock.advance(slot + POLICY.late - clock.now())  # down until the appointment was over
    await scheduler(pool, gateway, clock).tick()
    assert gateway.sent == []
    assert {m.status for m in (await messages_of(pool, inv.id)).values()} == {"cancelled"}


async def test_two_schedulers_running_concurrently_never_send_a_message_twice(pool: asyncpg.Pool,
                                                                              make: Factory) -> None:
    clock, gateway = Clock(), RecordingGateway(pause=0.001)
    patient = await make.patient()
    async with pool.acquire() as con:
        for n in range(150):
            await messages_db.schedule(con, patient_id=patient, to_phone="+84912345678", lang="vi",
                                       kind="invitation", body=f"tin {n}", dedupe_key=f"test:{n}",
                                       due_at=clock.now())
    a = scheduler(pool, gateway, clock, batch=10)
    b = scheduler(pool, gateway, clock, batch=10)
    c = scheduler(pool, gateway, clock, batch=10)
    await asyncio.gather(a.tick(), b.tick(), c.tick(), a.tick(), b.tick())
    ids = [m.id for m in gateway.sent]
    assert len(ids) == 150 and len(set(ids)) == 150
    assert set((await send_events(pool)).values()) == {1}
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'sent'") == 150


async def test_a_send_cut_off_by_a_crash_is_sent_again_after_the_timeout(pool: asyncpg.Pool,
                                                                         make: Factory) -> None:
    clock, gateway = Clock(), RecordingGateway()
    patient = await make.patient()
    async with pool.acquire() as con:
        message_id = await messages_db.schedule(con, patient_id=patient, to_phone="+84912345678", lang="vi",
                                                kind="invitation", body="tin", dedupe_key="crash",
                                                due_at=clock.now())
        claimed = await messages_db.claim_due(con, clock.now())  # ... and the process dies here
    assert message_id is not None and [m.id for m in claimed] == [message_id]
    restarted = scheduler(pool, gateway, clock)
    assert (await restarted.tick()).sent == 0  # maybe the other process is still sending: leave it
    clock.advance(timedelta(minutes=5))
    assert (await restarted.tick()).sent == 1  # at-least-once for the crashed case
    assert (await restarted.tick()).sent == 0
    async with pool.acquire() as con:
        message = await messages_db.get(con, message_id)
    assert message is not None and message.status == "sent"


async def test_a_passing_failure_is_tried_again_later_and_a_permanent_one_fails(pool: asyncpg.Pool,
                                                                                make: Factory) -> None:
    clock = Clock()
    gateway = RecordingGateway([SendResult(False, 1, error="HTTP 503", retryable=True),
                                SendResult(False, 1, error="HTTP 400: bad number", retryable=False)])
    patient = await make.patient()
    async with pool.acquire() as con:
        for key in ("a", "b"):
            await messages_db.schedule(con, patient_id=patient, to_phone="+84912345678", lang="vi",
                                       kind="invitation", body=key, dedupe_key=key, due_at=clock.now())
    s = scheduler(pool, gateway, clock)
    result = await s.tick()
    assert (result.sent, result.deferred, result.failed) == (0, 1, 1)
    assert (await s.tick()).sent == 0  # not before its retry time
    clock.advance(timedelta(minutes=1))
    assert (await s.tick()).sent == 1
    async with pool.acquire() as con:
        rows = {r["body"]: r for r in await con.fetch("SELECT * FROM outbound_message")}
    assert (rows["a"]["status"], rows["a"]["attempts"], rows["a"]["last_error"]) == ("sent", 2, None)
    assert (rows["b"]["status"], rows["b"]["attempts"]) == ("failed", 1)
    assert rows["b"]["last_error"] == "HTTP 400: bad number"


async def test_reminders_of_a_revoked_appointment_are_never_sent(pool: asyncpg.Pool, make: Factory) -> None:
    from db import invitations as invitations_db

    clock, gateway = Clock(), RecordingGateway()
    doctor, patient = await make.staff(), await make.patient()
    inv = await create(pool, appointment(clock.now() + timedelta(days=2), doctor), patient, doctor, clock.now(),
                       send=False)
    async with pool.acquire() as con:
        await invitations_db.revoke(con, inv.id, staff_id=doctor, now=clock.now())
    clock.advance(timedelta(days=3))
    await scheduler(pool, gateway, clock).tick()
    assert gateway.kinds() == ["revoked"]


async def test_patients_near_the_head_of_the_queue_get_one_doctor_soon_message(pool: asyncpg.Pool,
                                                                               make: Factory) -> None:
    clock, gateway = Clock(), RecordingGateway()
    doctor = await make.staff()
    patients = [await make.patient() for _ in range(3)]
    invitations = [await create(pool, Booking(InvitationKind.walk_in, phone="+84912345678"), p, doctor,
                                clock.now(), send=False) for p in patients]
    async with pool.acquire() as con:
        for patient, inv in zip(patients, invitations, strict=True):
            await queue_db.enqueue(con, patient_id=patient, link_jti=inv.link_jti,
                                   facility_id=make.network.commune, level=1, danger_signs=(), reason="",
                                   checkin={}, audio_only=False)
    online: list[int] = []
    s = scheduler(pool, gateway, clock, doctor_facilities=lambda: list(online), queue_near_minutes=10)
    assert (await s.tick()).queue_near == 0  # no doctor online: no estimate
    online.append(make.network.commune)
    # One doctor, 600 s per consultation (no history yet): places 1 and 2 are within 10 minutes, 3 is not.
    result = await s.tick()
    assert (result.queue_near, result.sent) == (2, 2)
    assert all("khoang" in m.body and "/s/" in m.body for m in gateway.sent)  # short links: one segment
    # Both are due at the same moment: the order they leave in is not specified.
    assert sorted(m.body.split(": ")[1].split(" nua")[0] for m in gateway.sent) == ["khoang 1 phut",
                                                                                    "khoang 10 phut"]
    assert (await s.tick()).queue_near == 0  # once per queue entry
    online.append(make.network.district)  # a second doctor above: place 3 is now within reach
    assert (await s.tick()).queue_near == 1
    assert gateway.kinds() == ["queue_near"] * 3


@pytest.mark.parametrize("restarts", [3])
async def test_start_and_stop_are_clean_and_idempotent(pool: asyncpg.Pool, restarts: int) -> None:
    s = scheduler(pool, RecordingGateway(), Clock())
    for _ in range(restarts):
        s.start()
        s.start()
        await asyncio.sleep(0)
        await s.stop()
        await s.stop()


async def test_the_one_look_before_a_tick_sees_exactly_when_there_is_work(pool: asyncpg.Pool, make: Factory) -> None:
    """`messages.work_due` (an idle tick's only statement) is true whenever a tick would act: nothing before
    the first reminder is due, then the reminder, then nothing once it is sent; a send cut off by a crash."""
    clock, gateway = Clock(), RecordingGateway()
    doctor, patient = await make.staff(), await make.patient()
    slot = clock.now() + timedelta(days=2)
    timeout = timedelta(minutes=5)

    async def due() -> bool:
        async with pool.acquire() as con:
            return await messages_db.work_due(con, clock.now(), timeout)

    assert not await due()  # an empty outbox
    await create(pool, appointment(slot, doctor), patient, doctor, clock.now(), send=False)
    assert not await due()  # its reminders are for later
    clock.advance(slot - timedelta(days=1) - clock.now())
    assert await due()
    assert (await scheduler(pool, gateway, clock).tick()).sent == 1 and not await due()
    assert gateway.kinds() == ["reminder_day_before"]
    # A send cut off by a crash (claimed, never recorded) is work again once its timeout has passed.
    clock.advance(slot - timedelta(minutes=15) - clock.now())
    async with pool.acquire() as con:
        claimed = await messages_db.claim_due(con, clock.now(), sending_timeout=timeout)
    assert [m.kind for m in claimed] == ["reminder_15_min"] and not await due()
    clock.advance(timeout)
    assert await due()
