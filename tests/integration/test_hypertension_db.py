"""The register's writes: readings from every source, resends stored once, medicines audited, call results."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from care.hypertension import HypertensionError
from db import hypertension as htn_db
from db import notes as notes_db
from db.errors import Conflict, DbError
from tests.integration.conftest import Factory, Network

TODAY = date(2026, 3, 10)


async def _enrolled(pool: asyncpg.Pool, make: Factory, network: Network) -> int:
    patient_id = await make.patient()
    async with pool.acquire() as con:
        await htn_db.enrol(con, patient_id=patient_id, facility_id=network.commune, staff_id=None, today=TODAY,
                           enrolment=htn_db.Enrolment(date(2026, 1, 5), risk_factors=("diabetes",),
                                                      medicines=(htn_db.MedicineLine("amlodipine", "5 mg", "1/ngày"),)))
    return patient_id


async def test_enrolment_sets_the_next_visit_28_days_on_and_refuses_a_second(pool: asyncpg.Pool, make: Factory,
                                                                            network: Network) -> None:
    patient_id = await _enrolled(pool, make, network)
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT next_visit_on FROM htn_enrolment WHERE patient_id = $1",
                                  patient_id) == date(2026, 4, 7)
        with pytest.raises(Conflict) as caught:
            await htn_db.enrol(con, patient_id=patient_id, facility_id=network.commune, staff_id=None,
                               today=TODAY, enrolment=htn_db.Enrolment(TODAY))
        assert caught.value.code == "already_enrolled"
        with pytest.raises(DbError) as bad:
            await htn_db.enrol(con, patient_id=await make.patient(), facility_id=network.commune, staff_id=None,
                               today=TODAY, enrolment=htn_db.Enrolment(
                                   TODAY, medicines=(htn_db.MedicineLine("aspirin", "81 mg", "1/ngày"),)))
        assert bad.value.code == "unknown_drug"


async def test_a_signed_notes_bp_is_the_consultations_one_reading(pool: asyncpg.Pool, make: Factory) -> None:
    doctor = await make.staff()
    claim = await make.claimed(doctor)
    async with pool.acquire() as con:
        await notes_db.sign(con, claim.consultation_id, doctor, 0,
                            notes_db.NoteContent(vitals={"systolic": 150, "diastolic": 95}, diagnoses=("I10",)))
        await notes_db.sign(con, claim.consultation_id, doctor, 1,
                            notes_db.NoteContent(vitals={"systolic": 152, "diastolic": 96}, diagnoses=("I10",)))
        rows = await con.fetch("SELECT systolic, diastolic, source, entered_by FROM bp_reading WHERE patient_id = $1",
                               claim.patient_id)
    assert [tuple(r) for r in rows] == [(152, 96, "note", doctor)]


async def test_a_home_reading_resent_with_the_same_key_is_stored_once(pool: asyncpg.Pool, make: Factory,
                                                                      network: Network) -> None:
    patient_id = await _enrolled(pool, make, network)
    async with pool.acquire() as con:
        first = await htn_db.add_reading(con, patient_id=patient_id, taken_on=TODAY, systolic=150, diastolic=95,
                                         source=htn_db.Source.home, staff_id=None, today=TODAY,
                                         idempotency_key="k-12345678")
        again = await htn_db.add_reading(con, patient_id=patient_id, taken_on=TODAY, systolic=150, diastolic=95,
                                         source=htn_db.Source.home, staff_id=None, today=TODAY,
                                         idempotency_key="k-12345678")
        count = await con.fetchval("SELECT count(*) FROM bp_reading WHERE patient_id = $1", patient_id)
        actions = await con.fetch("SELECT actor_kind FROM audit_event WHERE action = 'htn.reading'")
    assert first.created and not again.created and first.reading_id == again.reading_id
    assert count == 1
    assert [a["actor_kind"] for a in actions] == ["patient"]


@pytest.mark.parametrize(("systolic", "diastolic", "field"), [(300, 90, "systolic"), (120, 30, "diastolic"),
                                                              (90, 95, "systolic")])
async def test_impossible_readings_are_refused_naming_the_field(pool: asyncpg.Pool, make: Factory, network: Network,
                                                               systolic: int, diastolic: int, field: str) -> None:
    patient_id = await _enrolled(pool, make, network)
    async with pool.acquire() as con:
        with pytest.raises(HypertensionError) as caught:
            await htn_db.add_reading(con, patient_id=patient_id, taken_on=TODAY, systolic=systolic,
                                     diastolic=diastolic, source=htn_db.Source.station, staff_id=None, today=TODAY)
        assert await con.fetchval("SELECT count(*) FROM bp_reading") == 0
    assert caught.value.field == field


async def test_changing_medicines_keeps_history_counts_as_a_visit_and_is_audited(
        pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    patient_id = await _enrolled(pool, make, network)
    nurse = await make.staff(role="nurse")
    async with pool.acquire() as con:
        await htn_db.change_medicines(con, patient_id=patient_id, staff_id=nurse, today=TODAY, lines=(
            htn_db.MedicineLine("amlodipine", "10 mg", "1/ngày"), htn_db.MedicineLine("losartan", "50 mg", "1/ngày")))
        lines = await con.fetch("SELECT drug_code, dose, stopped_on FROM htn_medicine WHERE patient_id = $1 "
                                "ORDER BY id", patient_id)
        details = await con.fetchval("SELECT details FROM audit_event WHERE action = 'htn.medicines'")
        history = (await htn_db.histories(con, [patient_id]))[patient_id]
    assert [tuple(r) for r in lines] == [("amlodipine", "5 mg", TODAY), ("amlodipine", "10 mg", None),
                                         ("losartan", "50 mg", None)]
    assert details == {"before": ["amlodipine"], "after": ["amlodipine", "losartan"]}
    assert history.other_visits == (TODAY,) and history.drugs == 2


async def test_call_results(pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    patient_id = await _enrolled(pool, make, network)
    async with pool.acquire() as con:
        await htn_db.record_call(con, patient_id=patient_id, result="moved", staff_id=None, today=TODAY)
        assert await con.fetchval("SELECT removed_reason FROM htn_enrolment WHERE patient_id = $1",
                                  patient_id) == "moved"
        await htn_db.record_call(con, patient_id=patient_id, result="died", staff_id=None, today=TODAY)
        assert await con.fetchval("SELECT died_on FROM htn_enrolment WHERE patient_id = $1", patient_id) == TODAY
        with pytest.raises(DbError) as caught:
            await htn_db.record_call(con, patient_id=patient_id, result="maybe", staff_id=None, today=TODAY)
    assert caught.value.code == "bad_call_result"


async def test_a_signed_note_with_i10_offers_enrolment(pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    doctor = await make.staff()
    claim = await make.claimed(doctor)
    async with pool.acquire() as con:
        assert await htn_db.register_state(con, claim.patient_id) == "none"
        await notes_db.sign(con, claim.consultation_id, doctor, 0, notes_db.NoteContent(diagnoses=("I10",)))
        assert await htn_db.register_state(con, claim.patient_id) == "offer"
        await htn_db.enrol(con, patient_id=claim.patient_id, facility_id=network.commune, staff_id=doctor,
                           today=TODAY, enrolment=htn_db.Enrolment(TODAY))
        assert await htn_db.register_state(con, claim.patient_id) == "enrolled"
