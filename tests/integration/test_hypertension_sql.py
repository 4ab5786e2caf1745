"""The SQL that feeds the dashboards and the worklist equals care/hypertension.py, on random cohorts.

Hypothesis drives the examples from a worker thread; each example runs its database work on the test's
own event loop (with the test's pool), in a facility tree of its own so examples do not see each other.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from datetime import date, timedelta
from typing import Any, TypeVar

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from care import hypertension as htn
from care.hypertension import Month, PatientHistory
from db import htn_indicators
from db import hypertension as htn_db
from db import patients as patients_db
from tests.integration.conftest import Network

T = TypeVar("T")
FAR = date(2030, 1, 1)
START = date(2024, 1, 1)
_serial = itertools.count(1)

bp = st.one_of(st.sampled_from([(139, 89), (140, 90), (139, 90), (140, 89), (180, 110), (179, 109), (180, 109),
                                 (179, 110)]),
               st.tuples(st.integers(90, 200), st.integers(50, 120)).filter(lambda t: t[0] > t[1]))


@st.composite
def patients(draw: st.DrawFn, lively: bool = False) -> dict[str, Any]:
    """A random patient; `lively`: one in ten dead, nine in ten with a next visit (more rows on a worklist)."""
    offsets = st.integers(0, 700)
    if lively:
        p = draw(patients())
        after = lambda: p["registered_on"] + timedelta(days=draw(offsets))  # noqa: E731
        return {**p, "died_on": after() if draw(st.integers(0, 9)) == 0 else None,
                "next_visit_on": after() if draw(st.integers(0, 9)) else None}
    registered = START + timedelta(days=draw(st.integers(0, 1000)))
    return {
        "where": draw(st.sampled_from(["commune", "sibling", "district"])),
        "registered_on": registered,
        "readings": [(registered + timedelta(days=draw(offsets)), *draw(bp))
                     for _ in range(draw(st.integers(0, 4)))],
        "visits": [registered + timedelta(days=draw(offsets)) for _ in range(draw(st.integers(0, 2)))],
        "died_on": draw(st.one_of(st.none(), offsets.map(lambda d: registered + timedelta(days=d)))),
        "drugs": draw(st.integers(0, 4)),
        "next_visit_on": draw(st.one_of(st.none(), offsets.map(lambda d: registered + timedelta(days=d)))),
    }


months = st.builds(Month, st.integers(2024, 2027), st.integers(1, 12))


async def _tree(con: asyncpg.Connection) -> Network:
    n = next(_serial)
    province = await con.fetchval("INSERT INTO facility (name, level) VALUES ($1, 'province') RETURNING id",
                                  f"Tỉnh {n}")
    district = await con.fetchval("INSERT INTO facility (name, level, parent_id) VALUES ($1, 'district', $2) "
                                  "RETURNING id", f"Huyện {n}", province)
    commune = await con.fetchval("INSERT INTO facility (name, level, parent_id) VALUES ($1, 'commune', $2) "
                                 "RETURNING id", f"Xã A {n}", district)
    sibling = await con.fetchval("INSERT INTO facility (name, level, parent_id) VALUES ($1, 'commune', $2) "
                                 "RETURNING id", f"Xã B {n}", district)
    return Network(province, district, commune, sibling)


async def _enrol(con: asyncpg.Connection, tree: Network, p: dict[str, Any]) -> int:
    facility = getattr(tree, p["where"])
    patient_id = await patients_db.create(con, facility_id=facility, name=f"Bệnh nhân {next(_serial)}")
    lines = tuple(htn_db.MedicineLine("amlodipine", "5 mg", "1 lần/ngày") for _ in range(p["drugs"]))
    early = p["drugs"] % 2 == 1  # readings on record before enrolment (from signed notes): the row starts with them
    if early:
        await _readings(con, patient_id, p)
    await htn_db.enrol(con, patient_id=patient_id, facility_id=facility, staff_id=None, today=FAR,
                       enrolment=htn_db.Enrolment(p["registered_on"], medicines=lines,
                                                  next_visit_on=p["next_visit_on"] or FAR))
    if p["next_visit_on"] is None:
        await con.execute("UPDATE htn_enrolment SET next_visit_on = NULL WHERE patient_id = $1", patient_id)
    if not early:
        await _readings(con, patient_id, p)
    for visited_on in p["visits"]:
        await htn_db.add_visit(con, patient_id=patient_id, visited_on=visited_on, staff_id=None, today=FAR,
                               reschedule=False)
    if p["died_on"] is not None:
        await con.execute("UPDATE htn_enrolment SET died_on = $2 WHERE patient_id = $1", patient_id, p["died_on"])
    return patient_id


async def _readings(con: asyncpg.Connection, patient_id: int, p: dict[str, Any]) -> None:
    for taken_on, systolic, diastolic in p["readings"]:
        await htn_db.add_reading(con, patient_id=patient_id, taken_on=taken_on, systolic=systolic,
                                 diastolic=diastolic, source=htn_db.Source.station, staff_id=None, today=FAR)


def _below(tree: Network, facility_id: int) -> set[str]:
    """Which of the cohort's places are in the subtree of `facility_id`."""
    if facility_id in (tree.province, tree.district):
        return {"commune", "sibling", "district"}
    return {"commune"} if facility_id == tree.commune else {"sibling"}


class OnLoop:
    """Run coroutines on the test's loop from Hypothesis' worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)


async def test_monthly_sql_equals_the_pure_functions_on_random_cohorts(pool: asyncpg.Pool) -> None:
    run = OnLoop(asyncio.get_running_loop())

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cohort=st.lists(patients(), max_size=12), month_list=st.lists(months, min_size=1, max_size=3))
    def check(cohort: list[dict[str, Any]], month_list: list[Month]) -> None:
        async def body() -> None:
            async with pool.acquire() as con:
                tree = await _tree(con)
                ids = [await _enrol(con, tree, p) for p in cohort]
                stored = await htn_db.histories(con, ids)
                for month in month_list:
                    rows = await htn_db.monthly_report(con, tree.province, month)
                    assert [r.facility_id for r in rows] == [tree.province, tree.district, tree.commune,
                                                             tree.sibling]
                    for row in rows:
                        places = _below(tree, row.facility_id)
                        mine = [stored[i] for i, p in zip(ids, cohort, strict=True) if p["where"] in places]
                        assert row.indicators == htn.monthly_indicators(mine, month), (row.facility_id, month)
                    # Both ways of computing a station's month (the current month's and the trend's).
                    stations = [tree.district, tree.commune, tree.sibling]
                    for latest_values in (True, False):
                        counts = await htn_indicators.counts_of(con, stations, [month], latest_values=latest_values)
                        for place in ("district", "commune", "sibling"):
                            mine = [stored[i] for i, p in zip(ids, cohort, strict=True) if p["where"] == place]
                            expected = htn.monthly_indicators(mine, month)
                            got_counts = counts.get((getattr(tree, place), month), (0,) * len(htn.COLUMNS))
                            assert htn.MonthlyIndicators(*got_counts) == expected, (place, latest_values)
                    got = await htn_db.quarterly_cohort(con, tree.province, month.year, (month.month - 1) // 3 + 1)
                    assert got == htn.quarterly_cohort(stored.values(), month.year, (month.month - 1) // 3 + 1)
        run(body())

    await asyncio.to_thread(check)


async def test_worklist_sql_equals_the_pure_rules_on_random_cohorts(pool: asyncpg.Pool) -> None:
    run = OnLoop(asyncio.get_running_loop())

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cohort=st.lists(patients(), max_size=10), today=st.dates(START, date(2027, 12, 31)))
    def check(cohort: list[dict[str, Any]], today: date) -> None:
        async def body() -> None:
            async with pool.acquire() as con:
                tree = await _tree(con)
                ids = [await _enrol(con, tree, p) for p in cohort]
                stored = await htn_db.histories(con, ids)
                got = await htn_db.worklist(con, tree.district, today)
                first = await htn_db.worklist(con, tree.district, today, limit=3)
            expected = htn.worklist(list(stored.items()), today)
            assert [(e.patient_id, e.reasons) for e in got] == [(r.patient_id, r.reasons) for r in expected]
            assert [e.patient_id for e in first] == [r.patient_id for r in expected[:3]]
        run(body())

    await asyncio.to_thread(check)


async def test_both_worklist_plans_equal_the_pure_rules_at_random_days(pool: asyncpg.Pool) -> None:
    """The large-scope plan (stored severity read in order, then the overdue-only rows) and the small-scope
    plan give the pure rules' rows in their order, for every scope of the tree, on random days (overdue
    changes with the day; a day before some events sends those patients through the per-reading path), and
    with a page limit that cuts inside the severe rows or needs the overdue-only ones."""
    run = OnLoop(asyncio.get_running_loop())

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cohort=st.lists(patients(lively=True), min_size=2, max_size=12), limit=st.integers(1, 6),
           data=st.data())
    def check(cohort: list[dict[str, Any]], limit: int, data: st.DataObject) -> None:
        async def build() -> tuple[Network, dict[int, PatientHistory], dict[int, str]]:
            async with pool.acquire() as con:
                tree = await _tree(con)
                ids = [await _enrol(con, tree, p) for p in cohort]
                return tree, await htn_db.histories(con, ids), {i: p["where"] for i, p in zip(ids, cohort, strict=True)}

        tree, stored, where = run(build())
        # Random days, and the edges: the day before, of and after a stored next visit, a reading or a visit.
        edges = [d + timedelta(days=k) for h in stored.values()
                 for d in [h.next_visit_on, *(r.taken_on for r in h.readings), *h.other_visits] if d is not None
                 for k in (-1, 0, 1)]
        any_day = st.dates(START, date(2027, 12, 31))
        days = data.draw(st.lists(st.one_of(st.sampled_from(edges), st.sampled_from(edges), any_day) if edges
                                  else any_day, min_size=1, max_size=4))

        async def body() -> None:
            async with pool.acquire() as con:
                for today in days:
                    for root in (tree.province, tree.district, tree.commune, tree.sibling):
                        below = _below(tree, root)
                        expected = htn.worklist([(i, h) for i, h in stored.items() if where[i] in below], today)
                        want = [(r.patient_id, r.reasons) for r in expected]
                        for ordered in (True, False, None):
                            got = await htn_db.worklist(con, root, today, ordered=ordered)
                            assert [(e.patient_id, e.reasons) for e in got] == want, (root, ordered)
                            page = await htn_db.worklist(con, root, today, limit=limit, ordered=ordered)
                            assert [(e.patient_id, e.reasons) for e in page] == want[:limit], (root, ordered)
        run(body())

    await asyncio.to_thread(check)


async def test_a_late_reading_changes_exactly_the_months_it_should(pool: asyncpg.Pool, network: Network) -> None:
    """Registered Jan 2025, seen in Jan 2025 only; in Sept 2025 a reading dated 15 June 2025 is entered.
    June–August 2025 go from missed visit to uncontrolled; the visit also keeps the patient under care
    until May 2026 (months_since < 12), which turns Jan–May 2026 from lost to follow-up to missed visit."""
    async with pool.acquire() as con:
        patient_id = await patients_db.create(con, facility_id=network.commune, name="Bệnh nhân muộn")
        await htn_db.enrol(con, patient_id=patient_id, facility_id=network.commune, staff_id=None,
                           today=date(2025, 1, 10), enrolment=htn_db.Enrolment(date(2025, 1, 10)))
        await htn_db.add_reading(con, patient_id=patient_id, taken_on=date(2025, 1, 10), systolic=150,
                                 diastolic=95, source=htn_db.Source.station, staff_id=None, today=date(2025, 1, 10))
        span = [Month(2025, 1).plus(i) for i in range(24)]

        async def states() -> list[htn.MonthlyIndicators]:
            return [(await htn_db.monthly_report(con, network.commune, m))[0].indicators for m in span]

        before = await states()
        await htn_db.add_reading(con, patient_id=patient_id, taken_on=date(2025, 6, 15), systolic=150,
                                 diastolic=95, source=htn_db.Source.station, staff_id=None, today=date(2025, 9, 1))
        after = await states()
        history: PatientHistory = (await htn_db.histories(con, [patient_id]))[patient_id]
    changed = [str(m) for m, b, a in zip(span, before, after, strict=True) if b != a]
    assert changed == ["2025-06", "2025-07", "2025-08", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]
    assert after[span.index(Month(2025, 6))].uncontrolled == 1
    assert before[span.index(Month(2025, 6))].missed_visit == 1
    assert after[span.index(Month(2026, 5))].missed_visit == 1
    assert before[span.index(Month(2026, 5))].lost_to_follow_up == 1
    assert after == [htn.monthly_indicators([history], m) for m in span]
