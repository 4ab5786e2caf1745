"""db.queue on a real PostgreSQL: triage order, one entry per patient, atomic claims under contention,
and who may claim whom."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db import audit
from db import consultations as consultations_db
from db import queue as queue_db
from db.errors import Conflict, NotFound
from tests.integration.conftest import Factory, Network

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


async def claim_next(pool: asyncpg.Pool, doctor_id: int, facility_id: int) -> queue_db.Claim | None:
    async with pool.acquire() as con:
        return await queue_db.claim_next(con, doctor_id, facility_id)


async def claim_entry(pool: asyncpg.Pool, doctor_id: int, facility_id: int,
                      entry_id: uuid.UUID) -> queue_db.Claim:
    async with pool.acquire() as con:
        return await queue_db.claim_entry(con, doctor_id, facility_id, entry_id)


async def entry_row(pool: asyncpg.Pool, entry_id: uuid.UUID) -> asyncpg.Record:
    async with pool.acquire() as con:
        row = await con.fetchrow("SELECT * FROM queue_entry WHERE id = $1", entry_id)
    assert row is not None
    return row


async def waiting_patients(pool: asyncpg.Pool, facility_id: int) -> list[int]:
    async with pool.acquire() as con:
        return [r["patient_id"] for r in await queue_db.waiting_list(con, facility_id)]


# ---- order -------------------------------------------------------------------------------------------

async def test_queue_is_ordered_by_level_then_arrival(pool: asyncpg.Pool, make: Factory,
                                                       network: Network) -> None:
    early_nc1, late_nc3, early_nc3, nc0, late_nc1 = [await make.patient() for _ in range(5)]
    await make.waiting(early_nc1, level=1, arrived_at=minutes(1))
    await make.waiting(late_nc3, level=3, arrived_at=minutes(9))
    await make.waiting(early_nc3, level=3, arrived_at=minutes(2))
    await make.waiting(nc0, level=0, arrived_at=minutes(0))
    await make.waiting(late_nc1, level=1, arrived_at=minutes(5))
    expected = [early_nc3, late_nc3, early_nc1, late_nc1, nc0]
    assert await waiting_patients(pool, network.commune) == expected

    doctors = [await make.staff() for _ in expected]
    claimed = [await claim_next(pool, d, network.commune) for d in doctors]
    assert [c.patient_id for c in claimed if c] == expected
    assert await claim_next(pool, await make.staff(), network.commune) is None


async def test_a_limited_waiting_list_is_the_head_of_the_full_one_with_the_full_total(
        pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    """What a staff screen gets (the first N in claim order, and how many wait in all)."""
    for n in range(7):
        await make.waiting(await make.patient(), level=n % 3, arrived_at=minutes(n))
    async with pool.acquire() as con:
        full = await queue_db.waiting_list(con, network.commune)
        head = await queue_db.waiting_list(con, network.commune, 3)
        sibling = await queue_db.waiting_list(con, network.sibling, 3)
    assert [r["id"] for r in head] == [r["id"] for r in full[:3]]
    assert {r["total"] for r in head} == {r["total"] for r in full} == {7}
    assert sibling == []  # nobody waits there: no rows, and the screen's total is 0


async def test_requeued_patient_comes_first_within_their_level_only(pool: asyncpg.Pool, make: Factory,
                                                                    network: Network) -> None:
    """Requeued entries come first *within* their level: before earlier arrivals, not before higher levels."""
    earlier, dropped, urgent = [await make.patient() for _ in range(3)]
    await make.waiting(earlier, level=2, arrived_at=minutes(1))
    dropped_entry = await make.waiting(dropped, level=2, arrived_at=minutes(5))
    doctor = await make.staff()
    claim = await claim_entry(pool, doctor, network.commune, dropped_entry.id)
    async with pool.acquire() as con:
        requeued = await consultations_db.requeue(con, claim.consultation_id, "doctor_disconnected")
    assert requeued == dropped_entry.id
    await make.waiting(urgent, level=3, arrived_at=minutes(30))

    row = await entry_row(pool, dropped_entry.id)
    assert row["status"] == "waiting" and row["requeued_at"] is not None
    assert row["claimed_by"] is None and row["claimed_at"] is None
    async with pool.acquire() as con:
        consultation = await consultations_db.get(con, claim.consultation_id)
    assert consultation is not None and consultation.status == "requeued"

    assert await waiting_patients(pool, network.commune) == [urgent, dropped, earlier]
    # The doctor who dropped is free again, and nobody is stranded.
    others = [await make.staff(), await make.staff()]
    claims = [await claim_next(pool, d, network.commune) for d in (doctor, *others)]
    assert [c.patient_id for c in claims if c] == [urgent, dropped, earlier]


async def test_requeue_of_a_consultation_that_already_ended_does_nothing(pool: asyncpg.Pool,
                                                                          make: Factory) -> None:
    doctor = await make.staff()
    claim = await make.claimed(doctor)
    async with pool.acquire() as con:
        await consultations_db.end(con, claim.consultation_id, "doctor", audit.Actor.staff(doctor))
        assert await consultations_db.requeue(con, claim.consultation_id, "doctor_disconnected") is None
    assert (await entry_row(pool, claim.entry_id))["status"] == "done"


async def test_same_patient_enqueued_twice_gets_one_entry(pool: asyncpg.Pool, make: Factory) -> None:
    patient = await make.patient()
    async with pool.acquire() as con:
        async def enqueue(level: int) -> tuple[queue_db.QueueEntry, bool]:
            return await queue_db.enqueue(con, patient_id=patient, link_jti=None,
                                          facility_id=make.network.commune, level=level, danger_signs=(),
                                          reason="ho", checkin={}, audio_only=False)

        first, created_first = await enqueue(1)
        second, created_second = await enqueue(4)  # a reload with a different check-in
        count = await con.fetchval("SELECT count(*) FROM queue_entry WHERE patient_id = $1", patient)
        joins = [e for e in await audit.events_for(con, "queue_entry", first.id)
                 if e["action"] == "queue.join"]
    assert (created_first, created_second) == (True, False)
    assert second.id == first.id and second.triage_level == 1
    assert count == 1 and len(joins) == 1


async def test_patient_can_queue_again_after_their_consultation_ended(pool: asyncpg.Pool,
                                                                       make: Factory) -> None:
    doctor = await make.staff()
    claim = await make.claimed(doctor)
    async with pool.acquire() as con:
        await consultations_db.end(con, claim.consultation_id, "doctor", audit.Actor.staff(doctor))
    again = await make.waiting(claim.patient_id)
    assert again.id != claim.entry_id and again.status == "waiting"


# ---- concurrency -------------------------------------------------------------------------------------

async def _race(pool: asyncpg.Pool, doctors: list[int], facility_id: int) -> list[queue_db.Claim | None]:
    """Every doctor claims at the same moment, each on a connection of their own."""
    cons = [await pool.acquire() for _ in doctors]
    try:
        start = asyncio.Event()

        async def claim(con: asyncpg.Connection, doctor: int) -> queue_db.Claim | None:
            await start.wait()
            return await queue_db.claim_next(con, doctor, facility_id)

        tasks = [asyncio.ensure_future(claim(con, d)) for con, d in zip(cons, doctors, strict=True)]
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        for con in cons:
            await pool.release(con)


async def test_fifty_concurrent_claimers_each_get_a_different_patient(pool: asyncpg.Pool, make: Factory,
                                                                      network: Network) -> None:
    patients = [await make.patient() for _ in range(50)]
    for i, patient in enumerate(patients):
        await make.waiting(patient, level=i % 5, arrived_at=minutes(i))
    doctors = await make.staff_many(50)

    claims = await _race(pool, doctors, network.commune)

    assert all(c is not None for c in claims)
    got = [c.patient_id for c in claims if c]
    assert sorted(got) == sorted(patients)  # every patient claimed exactly once
    async with pool.acquire() as con:
        rows = await con.fetch("SELECT doctor_id, patient_id, status FROM consultation")
        entries = await con.fetch("SELECT status, claimed_by FROM queue_entry")
    assert len(rows) == 50 and {r["status"] for r in rows} == {"active"}
    assert sorted(r["doctor_id"] for r in rows) == sorted(doctors)  # no doctor holds two
    assert sorted(r["patient_id"] for r in rows) == sorted(patients)
    assert {e["status"] for e in entries} == {"claimed"}
    assert sorted(e["claimed_by"] for e in entries) == sorted(doctors)
    for claim, doctor in zip(claims, doctors, strict=True):
        assert claim is not None
        row = next(r for r in rows if r["patient_id"] == claim.patient_id)
        assert row["doctor_id"] == doctor


async def test_fifty_claimers_over_ten_patients_make_exactly_ten_claims(pool: asyncpg.Pool, make: Factory,
                                                                        network: Network) -> None:
    patients = [await make.patient() for _ in range(10)]
    for patient in patients:
        await make.waiting(patient)
    doctors = await make.staff_many(50)

    claims = await _race(pool, doctors, network.commune)

    won = [c for c in claims if c is not None]
    assert len(won) == 10 and claims.count(None) == 40
    assert sorted(c.patient_id for c in won) == sorted(patients)
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM consultation") == 10
        assert await con.fetchval("SELECT count(*) FROM queue_entry WHERE status = 'waiting'") == 0
        assert await audit.verify_chain(con) is None


async def test_claiming_an_entry_someone_already_claimed_is_a_conflict(pool: asyncpg.Pool, make: Factory,
                                                                        network: Network) -> None:
    entry = await make.waiting(await make.patient())
    first, second = await make.staff(), await make.staff()
    await claim_entry(pool, first, network.commune, entry.id)
    with pytest.raises(Conflict) as refused:
        await claim_entry(pool, second, network.commune, entry.id)
    assert refused.value.code == "already_claimed"
    assert (await entry_row(pool, entry.id))["claimed_by"] == first
    async with pool.acquire() as con:
        assert await consultations_db.active_for_doctor(con, second) is None


async def test_two_doctors_choosing_the_same_entry_at_once_one_wins(pool: asyncpg.Pool, make: Factory,
                                                                     network: Network) -> None:
    entry = await make.waiting(await make.patient())
    doctors = [await make.staff() for _ in range(8)]
    results = await asyncio.gather(*(claim_entry(pool, d, network.commune, entry.id) for d in doctors),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, queue_db.Claim)]
    lost = [r for r in results if not isinstance(r, queue_db.Claim)]
    assert len(won) == 1
    assert all(isinstance(r, Conflict) and r.code == "already_claimed" for r in lost)


async def test_busy_doctor_cannot_claim_another_patient_and_the_patient_stays_waiting(
        pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    doctor = await make.staff()
    first = await make.claimed(doctor)
    entry = await make.waiting(await make.patient())
    async with pool.acquire() as con:
        events_before = await con.fetchval("SELECT count(*) FROM audit_event")

    with pytest.raises(Conflict) as refused:
        await claim_next(pool, doctor, network.commune)
    assert refused.value.code == "doctor_busy"
    with pytest.raises(Conflict) as refused_entry:
        await claim_entry(pool, doctor, network.commune, entry.id)
    assert refused_entry.value.code == "doctor_busy"

    row = await entry_row(pool, entry.id)
    assert (row["status"], row["claimed_by"], row["claimed_at"]) == ("waiting", None, None)
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM consultation WHERE doctor_id = $1", doctor) == 1
        assert await con.fetchval("SELECT count(*) FROM audit_event") == events_before
        active = await consultations_db.active_for_doctor(con, doctor)
    assert active is not None and active.id == first.consultation_id
    # Somebody free takes the patient at once.
    other = await claim_next(pool, await make.staff(), network.commune)
    assert other is not None and other.entry_id == entry.id


# ---- scope -------------------------------------------------------------------------------------------

async def test_district_doctor_sees_and_claims_patients_of_communes_below(pool: asyncpg.Pool, make: Factory,
                                                                          network: Network) -> None:
    here, there = await make.patient(network.commune), await make.patient(network.sibling)
    await make.waiting(here, arrived_at=minutes(1))
    there_entry = await make.waiting(there, arrived_at=minutes(2))
    district_doctor = await make.staff(network.district)

    assert await waiting_patients(pool, network.district) == [here, there]
    assert await waiting_patients(pool, network.commune) == [here]
    assert await waiting_patients(pool, network.sibling) == [there]
    assert await waiting_patients(pool, network.province) == [here, there]

    claim = await claim_entry(pool, district_doctor, network.district, there_entry.id)
    assert claim.patient_id == there


async def test_commune_doctor_cannot_claim_a_patient_of_a_sibling_commune(pool: asyncpg.Pool, make: Factory,
                                                                          network: Network) -> None:
    entry = await make.waiting(await make.patient(network.sibling))
    doctor = await make.staff(network.commune)

    assert await claim_next(pool, doctor, network.commune) is None
    with pytest.raises(NotFound):  # out of scope looks like no such entry: not "someone else took it"
        await claim_entry(pool, doctor, network.commune, entry.id)
    assert (await entry_row(pool, entry.id))["status"] == "waiting"


async def test_commune_doctor_cannot_claim_a_patient_of_the_district_above(pool: asyncpg.Pool, make: Factory,
                                                                           network: Network) -> None:
    entry = await make.waiting(await make.patient(network.district))
    doctor = await make.staff(network.commune)
    assert await claim_next(pool, doctor, network.commune) is None
    with pytest.raises(NotFound):
        await claim_entry(pool, doctor, network.commune, entry.id)


@pytest.mark.parametrize(("staff_at", "patient_at", "expected"), [
    ("district", "commune", True), ("province", "sibling", True), ("commune", "commune", True),
    ("commune", "sibling", False), ("commune", "district", False),
])
async def test_history_scope_matches_the_queue_scope(pool: asyncpg.Pool, network: Network, staff_at: str,
                                                     patient_at: str, expected: bool) -> None:
    async with pool.acquire() as con:
        allowed = await consultations_db.is_doctor_in_scope(con, getattr(network, staff_at),
                                                            getattr(network, patient_at))
    assert allowed is expected


# ---- level changes -----------------------------------------------------------------------------------

async def test_change_level_reorders_the_queue_and_is_audited(pool: asyncpg.Pool, make: Factory,
                                                               network: Network) -> None:
    first, second = await make.patient(), await make.patient()
    await make.waiting(first, level=2, arrived_at=minutes(1))
    entry = await make.waiting(second, level=1, arrived_at=minutes(2))
    doctor = await make.staff()
    async with pool.acquire() as con:
        await queue_db.change_level(con, entry.id, 4, doctor)
        events = await audit.events_for(con, "queue_entry", entry.id)
        changed = await queue_db.get_entry(con, entry.id)
        assert await audit.verify_chain(con) is None
    assert changed is not None and changed.triage_level == 4
    assert await waiting_patients(pool, network.commune) == [second, first]
    change = [e for e in events if e["action"] == "queue.change_level"]
    assert len(change) == 1
    assert change[0]["actor_kind"] == "staff" and change[0]["actor_id"] == str(doctor)
    assert change[0]["details"] == {"from": 1, "to": 4}
    # The suggestion from the check-in is kept next to the doctor's decision.
    assert (await entry_row(pool, entry.id))["suggested_level"] == 1


async def test_change_level_of_an_unknown_entry_is_not_found(pool: asyncpg.Pool, make: Factory) -> None:
    doctor = await make.staff()
    async with pool.acquire() as con:
        with pytest.raises(NotFound):
            await queue_db.change_level(con, uuid.uuid4(), 3, doctor)
        assert await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'queue.change_level'") == 0
