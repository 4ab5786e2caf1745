"""The cached per-station months stay exact: with every month of a random cohort already stored, random late
readings, edits, deletes, deaths, transfers and re-dated registrations follow, and the rolled-up dashboard
(and the 12-month trend) still equals care/hypertension.py for every facility and month.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from care import hypertension as htn
from care.hypertension import Month, PatientHistory
from db import htn_indicators
from db import hypertension as htn_db
from db import patients as patients_db
from tests.integration.conftest import Network
from tests.integration.test_hypertension_sql import FAR, START, OnLoop, _enrol, _tree, bp, months, patients

PLACES = ("commune", "sibling", "district")

# One write each; `pick` chooses the patient (and the reading or visit) modulo what exists.
edits = st.one_of(
    st.tuples(st.just("add_reading"), st.integers(0, 99), st.integers(0, 1300), bp),
    st.tuples(st.just("move_reading"), st.integers(0, 99), st.integers(0, 1300)),
    st.tuples(st.just("change_reading"), st.integers(0, 99), bp),
    st.tuples(st.just("delete_reading"), st.integers(0, 99)),
    st.tuples(st.just("delete_all_readings"), st.integers(0, 99)),
    st.tuples(st.just("add_visit"), st.integers(0, 99), st.integers(0, 1300)),
    st.tuples(st.just("move_visit"), st.integers(0, 99), st.integers(0, 1300)),
    st.tuples(st.just("delete_visit"), st.integers(0, 99)),
    st.tuples(st.just("die"), st.integers(0, 99), st.integers(0, 1300)),
    st.tuples(st.just("undie"), st.integers(0, 99)),
    st.tuples(st.just("transfer"), st.integers(0, 99), st.sampled_from(PLACES)),
    st.tuples(st.just("register_on"), st.integers(0, 99), st.integers(0, 1300)),
)


async def _apply(con: asyncpg.Connection, tree: Network, ids: list[int], edit: tuple[Any, ...]) -> None:
    kind, pick = edit[0], ids[edit[1] % len(ids)]
    day = START + timedelta(days=edit[2]) if len(edit) > 2 and isinstance(edit[2], int) else None
    reading = await con.fetchval("SELECT id FROM bp_reading WHERE patient_id = $1 ORDER BY id "
                                 "OFFSET $2 LIMIT 1", pick, edit[1] % 3)
    visit = await con.fetchval("SELECT id FROM htn_visit WHERE patient_id = $1 ORDER BY id LIMIT 1", pick)
    if kind == "add_reading":
        systolic, diastolic = edit[3]
        await htn_db.add_reading(con, patient_id=pick, taken_on=day, systolic=systolic, diastolic=diastolic,
                                 source=htn_db.Source.station, staff_id=None, today=FAR)
    elif kind == "move_reading" and reading is not None:
        await con.execute("UPDATE bp_reading SET taken_on = $2 WHERE id = $1", reading, day)
    elif kind == "change_reading" and reading is not None:
        await con.execute("UPDATE bp_reading SET systolic = $2, diastolic = $3 WHERE id = $1", reading, *edit[2])
    elif kind == "delete_reading" and reading is not None:
        await con.execute("DELETE FROM bp_reading WHERE id = $1", reading)
    elif kind == "delete_all_readings":
        await con.execute("DELETE FROM bp_reading WHERE patient_id = $1", pick)
    elif kind == "add_visit":
        await htn_db.add_visit(con, patient_id=pick, visited_on=day, staff_id=None, today=FAR, reschedule=False)
    elif kind == "move_visit" and visit is not None:
        await con.execute("UPDATE htn_visit SET visited_on = $2 WHERE id = $1", visit, day)
    elif kind == "delete_visit" and visit is not None:
        await con.execute("DELETE FROM htn_visit WHERE id = $1", visit)
    elif kind == "die":
        await con.execute("UPDATE htn_enrolment SET died_on = $2 WHERE patient_id = $1", pick, day)
    elif kind == "undie":
        await con.execute("UPDATE htn_enrolment SET died_on = NULL WHERE patient_id = $1", pick)
    elif kind == "transfer":
        await con.execute("UPDATE htn_enrolment SET facility_id = $2 WHERE patient_id = $1", pick,
                          getattr(tree, edit[2]))
    elif kind == "register_on":
        await con.execute("UPDATE htn_enrolment SET registered_on = $2 WHERE patient_id = $1", pick, day)


SPAN = 48  # every month the cohorts' events fall in: 2024-01 … 2027-12
LAST = Month(2027, 12)


async def _expected(con: asyncpg.Connection, tree: Network,
                    ids: list[int]) -> dict[int, list[PatientHistory]]:
    """Each facility's patients (its own and those below it) as they stand in the database now."""
    stored = await htn_db.histories(con, ids)
    where = {r[0]: r[1] for r in await con.fetch(
        "SELECT patient_id, facility_id FROM htn_enrolment WHERE patient_id = ANY($1::bigint[])", ids)}
    below = {tree.province: {tree.commune, tree.sibling, tree.district},
             tree.district: {tree.commune, tree.sibling, tree.district},
             tree.commune: {tree.commune}, tree.sibling: {tree.sibling}}
    return {f: [stored[i] for i in ids if where[i] in places] for f, places in below.items()}


async def test_rolled_up_dashboard_stays_exact_after_late_writes_with_a_warm_cache(pool: asyncpg.Pool) -> None:
    run = OnLoop(asyncio.get_running_loop())

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cohort=st.lists(patients(), min_size=1, max_size=10), month_list=st.lists(months, min_size=1, max_size=2),
           writes=st.lists(edits, min_size=1, max_size=6))
    def check(cohort: list[dict[str, Any]], month_list: list[Month], writes: list[tuple[Any, ...]]) -> None:
        async def body() -> None:
            async with pool.acquire() as con:
                tree = await _tree(con)
                ids = [await _enrol(con, tree, p) for p in cohort]
                # Warm: every month of every facility stored, before the writes.
                for facility in (tree.commune, tree.sibling, tree.district):
                    await htn_db.trend(con, facility, LAST, months=SPAN)
                stored = await con.fetchval(
                    "SELECT count(*) FROM htn_station_month WHERE facility_id IN (SELECT facility_subtree($1))",
                    tree.province)
                assert stored == 3 * SPAN
                for edit in writes:
                    await _apply(con, tree, ids, edit)
                expected = await _expected(con, tree, ids)
                for month in month_list:
                    for row in await htn_db.monthly_report(con, tree.province, month):
                        assert row.indicators == htn.monthly_indicators(expected[row.facility_id], month), \
                            (row.facility_id, str(month), writes)
                for facility in (tree.province, tree.commune):
                    for m, got in await htn_db.trend(con, facility, LAST, months=SPAN):
                        assert got == htn.monthly_indicators(expected[facility], m), (facility, str(m), writes)
        run(body())

    await asyncio.to_thread(check)


async def test_a_reading_entered_now_forgets_only_its_station_from_its_month(pool: asyncpg.Pool,
                                                                             network: Network) -> None:
    """A reading dated today deletes one stored row (its station, this month); one dated three months ago
    deletes that station's four months; the other station's rows stay."""
    today = date(2026, 11, 30)
    span = [Month(2026, 1).plus(i) for i in range(11)]
    async with pool.acquire() as con:
        patient = await patients_db.create(con, facility_id=network.commune, name="Bệnh nhân trạm")
        await htn_db.enrol(con, patient_id=patient, facility_id=network.commune, staff_id=None, today=today,
                           enrolment=htn_db.Enrolment(date(2025, 12, 1)))
        await htn_db.trend(con, network.district, Month.of(today), months=11)

        async def months_of(facility: int) -> list[str]:
            rows = await con.fetch("SELECT month FROM htn_station_month WHERE facility_id = $1 ORDER BY month",
                                   facility)
            return [str(Month.of(r[0])) for r in rows]

        assert await months_of(network.commune) == [str(m) for m in span]
        assert await htn_db.missing_station_months(con, network.district, Month.of(today), months=11) == 0
        await htn_db.add_reading(con, patient_id=patient, taken_on=today, systolic=150, diastolic=95,
                                 source=htn_db.Source.station, staff_id=None, today=today)
        assert await months_of(network.commune) == [str(m) for m in span[:-1]]
        assert await htn_db.missing_station_months(con, network.district, Month.of(today), months=11) == 1
        assert await months_of(network.sibling) == [str(m) for m in span]
        await htn_db.add_reading(con, patient_id=patient, taken_on=date(2026, 8, 15), systolic=150, diastolic=95,
                                 source=htn_db.Source.station, staff_id=None, today=today)
        assert await months_of(network.commune) == [str(m) for m in span[:7]]
        trend = await htn_db.trend(con, network.district, Month.of(today), months=11)
        history = (await htn_db.histories(con, [patient]))[patient]
        assert [i for _, i in trend] == [htn.monthly_indicators([history], m) for m in span]


async def test_a_dashboard_does_not_store_a_station_while_a_write_there_is_in_flight(
        pool: asyncpg.Pool, network: Network) -> None:
    """A reading not yet committed when the dashboard computes is not in the counts shown, and the station's
    month is not stored with them: once the reading commits, the next dashboard counts it."""
    today = date(2026, 11, 30)
    month = Month.of(today)
    async with pool.acquire() as writer, pool.acquire() as reader:
        patient = await patients_db.create(writer, facility_id=network.commune, name="Bệnh nhân đồng thời")
        await htn_db.enrol(writer, patient_id=patient, facility_id=network.commune, staff_id=None, today=today,
                           enrolment=htn_db.Enrolment(date(2026, 1, 5)))
        tx = writer.transaction()
        await tx.start()
        await htn_db.add_reading(writer, patient_id=patient, taken_on=today, systolic=150, diastolic=95,
                                 source=htn_db.Source.station, staff_id=None, today=today)
        during = (await htn_db.monthly_report(reader, network.commune, month))[0].indicators
        assert during.missed_visit == 1 and during.uncontrolled == 0
        assert await reader.fetchval("SELECT count(*) FROM htn_station_month WHERE facility_id = $1",
                                     network.commune) == 0
        await tx.commit()
        after = (await htn_db.monthly_report(reader, network.commune, month))[0].indicators
        assert after.uncontrolled == 1 and after.missed_visit == 0


async def test_a_write_cannot_slip_in_while_a_fill_stores(pool: asyncpg.Pool, network: Network) -> None:
    """While a fill holds its station's lock, a reading at that station cannot pass its trigger (here with a
    lock timeout, to see it); once the fill commits, the reading goes in and deletes what the fill stored."""
    today = date(2026, 11, 30)
    month = Month.of(today)
    async with pool.acquire() as writer, pool.acquire() as filler:
        patient = await patients_db.create(writer, facility_id=network.commune, name="Bệnh nhân chờ")
        await htn_db.enrol(writer, patient_id=patient, facility_id=network.commune, staff_id=None, today=today,
                           enrolment=htn_db.Enrolment(date(2026, 1, 5)))
        fill = filler.transaction()
        await fill.start()
        await htn_indicators.station_months(filler, [network.commune], [month])  # locked and stored, not committed
        with pytest.raises(asyncpg.LockNotAvailableError):
            async with writer.transaction():
                await writer.execute("SET LOCAL lock_timeout = '100ms'")
                await htn_db.add_reading(writer, patient_id=patient, taken_on=today, systolic=150, diastolic=95,
                                         source=htn_db.Source.station, staff_id=None, today=today)
        await fill.commit()
        assert await writer.fetchval("SELECT count(*) FROM htn_station_month WHERE facility_id = $1 AND month = $2",
                                     network.commune, month.first_day) == 1
        await htn_db.add_reading(writer, patient_id=patient, taken_on=today, systolic=150, diastolic=95,
                                 source=htn_db.Source.station, staff_id=None, today=today)
        assert await writer.fetchval("SELECT count(*) FROM htn_station_month WHERE facility_id = $1 AND month = $2",
                                     network.commune, month.first_day) == 0
        after = (await htn_db.monthly_report(writer, network.commune, month))[0].indicators
        assert after.uncontrolled == 1
