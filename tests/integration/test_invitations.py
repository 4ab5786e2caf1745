"""db.invitations on real PostgreSQL: create, resend, revoke, reschedule; refusals leave nothing behind."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from db import audit
from db import invitations as invitations_db
from db import messages as messages_db
from db.errors import Conflict, DbError
from db.invitations import Booking, Invitation, InvitationKind, InvitationStatus, Policy
from tests.integration.conftest import Factory
from web.auth import LinkError, LinkSigner, join_url, resolve_link
from web.clock import Clock

SIGNER = LinkSigner("invitation-test-key-" + "k" * 40)
LINK_URL = join_url(SIGNER, "https://kham.example.vn")
POLICY = Policy(link_ttl=timedelta(hours=24), late=timedelta(minutes=60))
PHONE = "+84912345678"


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def doctor_and_patient(make: Factory) -> tuple[int, int]:
    return await make.staff(), await make.patient()


def appointment(slot_at: datetime, doctor_id: int | None, *, service: str | None = None,
                phone: str | None = PHONE, lang: str = "vi") -> Booking:
    return Booking(InvitationKind.appointment, slot_at, doctor_id, service, lang, phone)


async def create(pool: asyncpg.Pool, booking: Booking, patient_id: int, staff_id: int, now: datetime,
                 send: bool = True) -> invitations_db.Invitation:
    async with pool.acquire() as con:
        return await invitations_db.create(con, booking, patient_id=patient_id, created_by=staff_id, now=now,
                                           policy=POLICY, link_url=LINK_URL, send=send)


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as con:
        return {table: await con.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
                for table in ("invitation", "join_link", "outbound_message", "audit_event")}


async def messages_of(pool: asyncpg.Pool, invitation_id: uuid.UUID) -> dict[str, messages_db.OutboundMessage]:
    async with pool.acquire() as con:
        return {m.kind: m for m in await messages_db.for_invitation(con, invitation_id)
                if m.invitation_id == invitation_id}


async def actions(pool: asyncpg.Pool, invitation_id: uuid.UUID) -> list[str]:
    async with pool.acquire() as con:
        return [e["action"] for e in await audit.events_for(con, "invitation", invitation_id)]


def token_of(url: str) -> str:
    return url.rsplit("/j/", 1)[1]


async def short_url_of(pool: asyncpg.Pool, inv: Invitation) -> str:
    """The short URL messages carry for this invitation's link (`/s/<code>`, the code from PostgreSQL)."""
    async with pool.acquire() as con:
        code = await con.fetchval("SELECT code FROM short_link WHERE link_jti = $1", inv.link_jti)
    assert code is not None
    return LINK_URL(inv.link_jti, inv.link_expires_at, code)


async def test_walk_in_opens_now_and_closes_after_the_link_ttl(pool: asyncpg.Pool, make: Factory,
                                                               clock: Clock) -> None:
    staff, patient = await doctor_and_patient(make)
    now = clock.now()
    inv = await create(pool, Booking(InvitationKind.walk_in, phone=PHONE), patient, staff, now)
    assert (inv.kind, inv.status, inv.slot_at) == (InvitationKind.walk_in, InvitationStatus.active, None)
    assert inv.opens_at == now and inv.closes_at == now + POLICY.link_ttl
    assert abs(inv.link_expires_at - inv.closes_at) < timedelta(seconds=1)
    msgs = await messages_of(pool, inv.id)
    assert list(msgs) == ["invitation"]
    assert msgs["invitation"].due_at == now and msgs["invitation"].to_phone == PHONE
    assert msgs["invitation"].body.endswith(await short_url_of(pool, inv))
    assert await actions(pool, inv.id) == ["invitation.create"]


async def test_appointment_link_expires_when_its_window_closes_and_reminders_are_scheduled(
        pool: asyncpg.Pool, make: Factory, clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    now = clock.now()
    slot = now + timedelta(days=3)
    inv = await create(pool, appointment(slot, doctor), patient, doctor, now)
    assert inv.opens_at == slot - timedelta(minutes=30) and inv.closes_at == slot + timedelta(minutes=60)
    assert inv.link_expires_at == inv.closes_at  # exactly: the database's now() is subtracted in the same txn
    msgs = await messages_of(pool, inv.id)
    assert {k: m.due_at for k, m in msgs.items()} == {
        "invitation": now, "reminder_day_before": slot - timedelta(days=1),
        "reminder_15_min": slot - timedelta(minutes=15)}
    assert all(m.status == "scheduled" and m.body.isascii() for m in msgs.values())
    async with pool.acquire() as con:
        link = await resolve_link(con, SIGNER, token_of(LINK_URL(inv.link_jti, inv.link_expires_at)))
    assert link.jti == inv.link_jti


async def test_without_a_phone_number_nothing_is_sent_but_the_link_exists(pool: asyncpg.Pool, make: Factory,
                                                                        clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    inv = await create(pool, appointment(clock.now() + timedelta(days=2), doctor, phone=None), patient, doctor,
                       clock.now())
    assert await messages_of(pool, inv.id) == {}
    async with pool.acquire() as con:
        with pytest.raises(DbError) as refused:
            await invitations_db.resend(con, inv.id, staff_id=doctor, now=clock.now(), link_url=LINK_URL)
    assert refused.value.code == "no_phone"


@pytest.mark.parametrize("ago", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
async def test_an_appointment_in_the_past_is_refused_and_nothing_is_saved(
        pool: asyncpg.Pool, make: Factory, clock: Clock, ago: timedelta) -> None:
    doctor, patient = await doctor_and_patient(make)
    before = await counts(pool)
    with pytest.raises(DbError) as refused:
        await create(pool, appointment(clock.now() - ago, doctor), patient, doctor, clock.now())
    assert refused.value.code == "slot_in_past"
    assert await counts(pool) == before


async def test_double_booking_a_doctor_is_refused_and_nothing_is_saved(pool: asyncpg.Pool, make: Factory,
                                                                       clock: Clock) -> None:
    doctor, first = await doctor_and_patient(make)
    second, other_doctor = await make.patient(), await make.staff()
    slot = clock.now() + timedelta(days=1, hours=2)
    await create(pool, appointment(slot, doctor), first, doctor, clock.now())
    before = await counts(pool)
    with pytest.raises(Conflict) as refused:
        await create(pool, appointment(slot, doctor), second, doctor, clock.now())
    assert refused.value.code == "slot_taken"
    assert await counts(pool) == before  # no link, no invitation, no message, no audit event
    # Another doctor at the same time, or the same doctor five minutes later, is fine.
    await create(pool, appointment(slot, other_doctor), second, doctor, clock.now())
    await create(pool, appointment(slot + timedelta(minutes=5), doctor), second, doctor, clock.now())


async def test_double_booking_a_service_is_refused_and_a_revoked_slot_is_free_again(
        pool: asyncpg.Pool, make: Factory, clock: Clock) -> None:
    staff, first = await doctor_and_patient(make)
    second = await make.patient()
    slot = clock.now() + timedelta(hours=5)
    booked = await create(pool, appointment(slot, None, service="hypertension"), first, staff, clock.now())
    with pytest.raises(Conflict, match="service"):
        await create(pool, appointment(slot, None, service="hypertension"), second, staff, clock.now())
    await create(pool, appointment(slot, None, service="tb"), second, staff, clock.now())
    async with pool.acquire() as con:
        await invitations_db.revoke(con, booked.id, staff_id=staff, now=clock.now())
    await create(pool, appointment(slot, None, service="hypertension"), second, staff, clock.now())


async def test_an_appointment_needs_a_doctor_or_a_service_who_serves_the_patient(
        pool: asyncpg.Pool, make: Factory, clock: Clock) -> None:
    staff, patient = await doctor_and_patient(make)
    sibling_doctor = await make.staff(make.network.sibling)
    nurse = await make.staff(role="nurse")
    slot = clock.now() + timedelta(days=1)
    before = await counts(pool)
    for booking in (appointment(slot, None), appointment(slot, sibling_doctor), appointment(slot, nurse)):
        with pytest.raises(DbError) as refused:
            await create(pool, booking, patient, staff, clock.now())
        assert refused.value.code == "invalid"
    assert await counts(pool) == before
    district_doctor = await make.staff(make.network.district)  # a facility above the patient's serves them
    await create(pool, appointment(slot, district_doctor), patient, staff, clock.now())


async def test_resend_sends_the_same_link_again_and_is_audited(pool: asyncpg.Pool, make: Factory,
                                                               clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    inv = await create(pool, Booking(InvitationKind.walk_in, phone=PHONE), patient, doctor, clock.now(), send=False)
    assert await messages_of(pool, inv.id) == {}
    async with pool.acquire() as con:
        first = await invitations_db.resend(con, inv.id, staff_id=doctor, now=clock.now(), link_url=LINK_URL)
        second = await invitations_db.resend(con, inv.id, staff_id=doctor, now=clock.now(), link_url=LINK_URL)
        bodies = [(await messages_db.get(con, m)) for m in (first, second)]
    assert first != second
    assert bodies[0] is not None and bodies[1] is not None
    assert bodies[0].body == bodies[1].body  # the same link
    assert (bodies[0].dedupe_key, bodies[1].dedupe_key) == (f"invitation:{inv.id}:1", f"invitation:{inv.id}:2")
    assert await actions(pool, inv.id) == ["invitation.create", "invitation.send", "invitation.resend"]


async def test_revoke_kills_the_link_cancels_reminders_and_tells_the_patient(pool: asyncpg.Pool, make: Factory,
                                                                           clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    inv = await create(pool, appointment(clock.now() + timedelta(days=2), doctor), patient, doctor, clock.now())
    token = token_of(LINK_URL(inv.link_jti, inv.link_expires_at))
    async with pool.acquire() as con:
        revoked = await invitations_db.revoke(con, inv.id, staff_id=doctor, now=clock.now())
        with pytest.raises(LinkError) as refused:
            await resolve_link(con, SIGNER, token)
    assert refused.value.code == "link_revoked"
    assert revoked.status is InvitationStatus.revoked and revoked.revoked_at is not None
    msgs = await messages_of(pool, inv.id)
    assert {k: m.status for k, m in msgs.items()} == {
        "invitation": "cancelled", "reminder_day_before": "cancelled", "reminder_15_min": "cancelled",
        "revoked": "scheduled"}
    assert "da huy" in msgs["revoked"].body and token not in msgs["revoked"].body
    assert await actions(pool, inv.id) == ["invitation.create", "invitation.revoke"]
    async with pool.acquire() as con:
        with pytest.raises(Conflict) as again:
            await invitations_db.revoke(con, inv.id, staff_id=doctor, now=clock.now())
        assert again.value.code == "not_active"
        with pytest.raises(Conflict):
            await invitations_db.resend(con, inv.id, staff_id=doctor, now=clock.now(), link_url=LINK_URL)


async def test_reschedule_replaces_the_link_and_the_old_one_fails_as_revoked(pool: asyncpg.Pool, make: Factory,
                                                                           clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    slot = clock.now() + timedelta(days=2)
    old = await create(pool, appointment(slot, doctor), patient, doctor, clock.now())
    old_token = token_of(LINK_URL(old.link_jti, old.link_expires_at))
    new_slot = slot + timedelta(days=1)
    async with pool.acquire() as con:
        new = await invitations_db.reschedule(con, old.id, appointment(new_slot, doctor), staff_id=doctor,
                                              now=clock.now(), policy=POLICY, link_url=LINK_URL)
        with pytest.raises(LinkError) as refused:
            await resolve_link(con, SIGNER, old_token)
        new_url = LINK_URL(new.link_jti, new.link_expires_at)
        assert (await resolve_link(con, SIGNER, token_of(new_url))).jti == new.link_jti
        moved = await invitations_db.get(con, old.id)
    assert refused.value.code == "link_revoked"
    assert moved is not None and moved.status is InvitationStatus.rescheduled and moved.replaced_by == new.id
    assert new.slot_at == new_slot and new.status is InvitationStatus.active and new.link_jti != old.link_jti
    old_msgs, new_msgs = await messages_of(pool, old.id), await messages_of(pool, new.id)
    assert {m.status for k, m in old_msgs.items() if k.startswith("reminder")} == {"cancelled"}
    assert set(new_msgs) == {"rescheduled", "reminder_day_before", "reminder_15_min"}
    assert await short_url_of(pool, new) in new_msgs["rescheduled"].body
    assert await short_url_of(pool, old) not in new_msgs["rescheduled"].body
    assert new_msgs["reminder_15_min"].due_at == new_slot - timedelta(minutes=15)
    assert await actions(pool, old.id) == ["invitation.create", "invitation.reschedule"]
    assert await actions(pool, new.id) == []  # the reschedule event names the new invitation in its details


async def test_reschedule_to_the_same_doctors_next_slot_frees_the_old_one(pool: asyncpg.Pool, make: Factory,
                                                                          clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    slot = clock.now() + timedelta(days=2)
    old = await create(pool, appointment(slot, doctor), patient, doctor, clock.now())
    async with pool.acquire() as con:
        await invitations_db.reschedule(con, old.id, appointment(slot + timedelta(minutes=30), doctor),
                                        staff_id=doctor, now=clock.now(), policy=POLICY, link_url=LINK_URL)
    await create(pool, appointment(slot, doctor), await make.patient(), doctor, clock.now())  # free again


async def test_reschedule_onto_a_taken_slot_changes_nothing(pool: asyncpg.Pool, make: Factory,
                                                            clock: Clock) -> None:
    doctor, patient = await doctor_and_patient(make)
    slot = clock.now() + timedelta(days=2)
    taken = slot + timedelta(hours=1)
    await create(pool, appointment(taken, doctor), await make.patient(), doctor, clock.now())
    inv = await create(pool, appointment(slot, doctor), patient, doctor, clock.now())
    before = await counts(pool)
    async with pool.acquire() as con:
        with pytest.raises(Conflict) as refused:
            await invitations_db.reschedule(con, inv.id, appointment(taken, doctor), staff_id=doctor,
                                            now=clock.now(), policy=POLICY, link_url=LINK_URL)
        with pytest.raises(DbError) as past:
            await invitations_db.reschedule(con, inv.id, appointment(clock.now() - timedelta(hours=1), doctor),
                                            staff_id=doctor, now=clock.now(), policy=POLICY, link_url=LINK_URL)
        still = await invitations_db.get(con, inv.id)
        token = token_of(LINK_URL(inv.link_jti, inv.link_expires_at))
        assert (await resolve_link(con, SIGNER, token)).jti == inv.link_jti
    assert (refused.value.code, past.value.code) == ("slot_taken", "slot_in_past")
    assert still is not None and still.status is InvitationStatus.active
    assert await counts(pool) == before
    assert {m.status for m in (await messages_of(pool, inv.id)).values()} == {"scheduled"}


async def test_concurrent_bookings_of_one_slot_let_exactly_one_through(pool: asyncpg.Pool, make: Factory,
                                                                       clock: Clock) -> None:
    import asyncio

    doctor = await make.staff()
    patients = [await make.patient() for _ in range(8)]
    slot = clock.now() + timedelta(days=1)
    results = await asyncio.gather(*(create(pool, appointment(slot, doctor), p, doctor, clock.now())
                                     for p in patients), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) and r.code == "slot_taken" for r in results if isinstance(r, BaseException))
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM invitation") == 1
        assert await con.fetchval("SELECT count(*) FROM join_link") == 1
