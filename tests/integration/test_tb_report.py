"""The TB cohort report's SQL (db/tb.py) equals the pure rules (care/tb.py) on random cohorts."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from care import tb
from care.tb import DoseStatus, Outcome, SputumResult, TbCase
from care.tb_import import ImportedCase
from db import tb as tb_db
from db.audit import SYSTEM
from db.errors import NotFound
from tests.integration.conftest import Network

QUARTER = "2026-Q1"
TAKEN = sorted(tb.TAKEN)
EDGE_GAPS = st.sampled_from([0, 1, 2, 58, 59, 60, 61])


# After the import, the calendar is edited: (first day after the start, days, new status or None to delete
# the days): back-dated doses filling a gap, corrections opening one, deletions.
Edit = tuple[int, int, DoseStatus | None]
Drawn = tuple[int, ImportedCase, Outcome | None, list[Edit], str | None]
EDITS = st.lists(st.tuples(st.integers(0, 260), st.sampled_from([1, 2, 59, 60, 61]) | st.integers(1, 70),
                           st.sampled_from([*TAKEN, DoseStatus.missed]) | st.none()), max_size=6)


@st.composite
def cases(draw: st.DrawFn, facilities: list[int]) -> Drawn:
    registered = date(2025, 12, 1) + timedelta(days=draw(st.integers(0, 150)))
    regimen = draw(st.sampled_from(sorted(tb.REGIMENS)))
    started: date | None = None
    if draw(st.integers(0, 4)):
        started = registered + timedelta(days=draw(EDGE_GAPS | st.integers(0, 90)))
    case = ImportedCase("x", "Bệnh nhân", None, None, None, registered, regimen, draw(st.booleans()), 0, started)
    if started is not None:
        day = started + timedelta(days=draw(st.sampled_from([0, 1, 59, 60])))
        end = tb.planned_end(started, tb.REGIMENS[regimen])
        while day < end + timedelta(days=10):
            for _ in range(draw(st.integers(1, 60))):
                case.doses[day] = draw(st.sampled_from(TAKEN))
                day += timedelta(days=1)
            for _ in range(draw(EDGE_GAPS | st.integers(0, 70))):
                if draw(st.booleans()):
                    case.doses[day] = DoseStatus.missed
                day += timedelta(days=1)
        month_4 = tb.add_months(started, 4)
        anchors = [started, month_4, end - timedelta(days=30), end + timedelta(days=14), started + timedelta(days=60)]
        for _ in range(draw(st.integers(0, 4))):
            shift = draw(st.sampled_from([-1, 0, 1]) | st.integers(-40, 40))
            on = draw(st.sampled_from(anchors)) + timedelta(days=shift)
            case.sputum.append(SputumResult(on, draw(st.booleans())))
    base = started or registered
    if draw(st.integers(0, 5)) == 0:
        case.died_on = base + timedelta(days=draw(st.integers(-5, 250)))
    if draw(st.integers(0, 7)) == 0:
        case.transferred_out_on = base + timedelta(days=draw(st.integers(0, 200)))
    if draw(st.integers(0, 7)) == 0:
        case.failure_on = base + timedelta(days=draw(st.integers(0, 200)))
    override = draw(st.sampled_from(list(Outcome))) if draw(st.integers(0, 9)) == 0 else None
    edits = draw(EDITS) if started is not None else []
    new_regimen = draw(st.sampled_from(sorted(tb.REGIMENS))) if started and draw(st.integers(0, 4)) == 0 else None
    return draw(st.sampled_from(facilities)), case, override, edits, new_regimen


async def _edit(con: asyncpg.Connection, case_id: int, case: ImportedCase, edits: list[Edit],
                new_regimen: str | None) -> None:
    """Back-dated doses, corrections and deletions after the import (and a regimen change, which moves the
    planned end), applied to the database and to `case` alike."""
    assert case.started_on is not None
    ended = min((d for d in (case.died_on, case.transferred_out_on) if d is not None), default=None)
    for offset, length, status in edits:
        days = [case.started_on + timedelta(days=offset + n) for n in range(length)]
        days = [d for d in days if ended is None or d <= ended]
        if status is None:
            await con.execute("DELETE FROM tb_dose WHERE case_id = $1 AND taken_on = ANY($2::date[])", case_id, days)
            for day in days:
                case.doses.pop(day, None)
        else:
            for day in days:
                await tb_db.record_dose(con, SYSTEM, case_id, day, status, today=date(2030, 1, 1))
                case.doses[day] = status
    if new_regimen is not None:
        await tb_db.change_regimen(con, SYSTEM, case_id, new_regimen, case.started_on, for_failure=False,
                                   reason="test")
        case.regimen = new_regimen


def pure(case: ImportedCase, override: Outcome | None) -> TbCase:
    return TbCase(case.registered_on, case.regimen, case.bacteriologically_confirmed, case.started_on,
                  frozenset(d for d, s in case.doses.items() if s in tb.TAKEN), tuple(case.sputum), case.died_on,
                  case.transferred_out_on, case.failure_on, override)


async def _compare(dsn: str, network: Network, drawn: list[Drawn], as_of: date) -> None:
    con = await asyncpg.connect(dsn)
    try:
        await con.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        transaction = con.transaction()
        await transaction.start()
        try:
            ids: dict[int, tuple[int, TbCase]] = {}
            for n, (facility, case, override, edits, new_regimen) in enumerate(drawn):
                case.register_ref = f"r{n}"
                (case_id,) = await tb_db.import_cases(con, SYSTEM, facility, [case])
                if override is not None:
                    await tb_db.set_outcome(con, SYSTEM, case_id, override, "test")
                if case.started_on is not None:
                    await _edit(con, case_id, case, edits, new_regimen)
                ids[case_id] = (facility, pure(case, override))
            in_sql = await tb_db.case_outcomes(con, network.province, QUARTER, as_of)
            first, after = tb.parse_quarter(QUARTER)
            expected = {i: tb.who_outcome(c, as_of) for i, (_, c) in ids.items() if first <= c.registered_on < after}
            assert in_sql == expected
            subtrees = {network.province: {network.province, network.district, network.commune, network.sibling},
                        network.district: {network.district, network.commune, network.sibling},
                        network.commune: {network.commune}, network.sibling: {network.sibling}}
            report = await tb_db.cohort_report(con, network.province, QUARTER, as_of)
            assert [r.facility_id for r in report][:2] == [network.province, network.district]
            for row in report:
                below = [c for f, c in ids.values() if f in subtrees[row.facility_id]]
                want = tb.cohort_row(below, QUARTER, as_of)
                assert (row.registered, row.counts) == (want.registered, want.counts), row.facility
            district = await tb_db.cohort_report(con, network.district, QUARTER, as_of)
            assert [r.facility_id for r in district][0] == network.district and len(district) == 3
            cohort = [c for _, c in ids.values() if first <= c.registered_on < after]
            assert await tb_db.adherence_distribution(con, network.province, QUARTER, as_of) == \
                tb.adherence_distribution(cohort, as_of)
            await _compare_worklist(con, network, ids, as_of)
        finally:
            await transaction.rollback()
    finally:
        await con.close()


async def _compare_worklist(con: asyncpg.Connection, network: Network, ids: dict[int, tuple[int, TbCase]],
                            today: date) -> None:
    """The worklist's cases (SQL outcome, the last 28 days of doses) and their flags equal the pure rules over
    the whole calendar."""
    on_treatment = await tb_db.cases_on_treatment(con, network.province, today)
    want = {i for i, (_, c) in ids.items()
            if c.started_on is not None and tb.who_outcome(c, today) is Outcome.still_on_treatment}
    assert {r.id for r in on_treatment} == want
    for r in on_treatment:
        full = await tb_db.get(con, r.id)
        assert full is not None and r.case.started_on is not None
        regimen = tb.REGIMENS[r.case.regimen]
        end = tb.planned_end(r.case.started_on, regimen)
        assert tb.flags(r.case.started_on, regimen, r.doses, r.case.sputum, today) == \
            tb.flags(r.case.started_on, regimen, full.doses, r.case.sputum, today)
        assert tb.adherence(r.case.started_on, end, r.doses, today) == \
            tb.adherence(r.case.started_on, end, full.doses, today)


async def test_report_sql_equals_the_pure_rules_on_random_cohorts(dsn: str, network: Network) -> None:
    facilities = [network.province, network.district, network.commune, network.sibling]

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(drawn=st.lists(cases(facilities), min_size=0, max_size=12),
           as_of=st.dates(date(2026, 1, 1), date(2027, 3, 1)))
    def check(drawn: list[Drawn], as_of: date) -> None:
        asyncio.run(_compare(dsn, network, drawn, as_of))

    await asyncio.to_thread(check)


async def test_report_of_an_unknown_facility_is_not_found(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con:
        with pytest.raises(NotFound):
            await tb_db.cohort_report(con, 999_999, QUARTER, date(2026, 6, 1))


async def _lost(con: asyncpg.Connection, network: Network, as_of: date) -> bool:
    outcomes = await tb_db.case_outcomes(con, network.commune, QUARTER, as_of)
    return list(outcomes.values()) == [Outcome.lost_to_follow_up]


async def test_corrections_and_deletions_open_and_close_a_60_day_gap(pool: asyncpg.Pool, network: Network) -> None:
    start = date(2026, 1, 5)
    case = ImportedCase("gap", "Bệnh nhân", None, None, None, start, tb.DEFAULT_REGIMEN, False, 0, start)
    case.doses.update({start + timedelta(days=n): DoseStatus.in_person for n in range(200)})
    as_of = date(2026, 12, 31)
    async with pool.acquire() as con:
        (case_id,) = await tb_db.import_cases(con, SYSTEM, network.commune, [case])
        assert not await _lost(con, network, as_of)
        # 60 days corrected to missed (each an UPDATE of the day's row): lost to follow-up.
        for n in range(10, 70):
            await tb_db.record_dose(con, SYSTEM, case_id, start + timedelta(days=n), DoseStatus.missed,
                                    today=as_of)
        assert await _lost(con, network, as_of)
        # One of them back-dated as taken: the gap is 59 days at most.
        await tb_db.record_dose(con, SYSTEM, case_id, start + timedelta(days=40), DoseStatus.self_reported,
                                today=as_of)
        assert not await _lost(con, network, as_of)
        # Deleting every day after day 40 leaves a trailing gap from day 41 to the planned end.
        await con.execute("DELETE FROM tb_dose WHERE case_id = $1 AND taken_on >= $2", case_id,
                          start + timedelta(days=41))
        assert await _lost(con, network, as_of)


async def _waiting_on_a_lock(watcher: asyncpg.Connection, pid: int) -> None:
    """Returns once backend `pid` waits on a lock (it is blocked where the test wants it)."""
    # PostgreSQL has no notification for "that backend now waits on a lock": poll its own state (not a timer).
    while not await watcher.fetchval(  # noqa: ASYNC110
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
        await asyncio.sleep(0.01)


async def test_two_writers_of_one_case_leave_its_figures_exact(pool: asyncpg.Pool, network: Network) -> None:
    """One transaction fills a 60-day hole while another writes an unrelated day of the same case: the second
    recomputes after the first commits and sees its dose (the trigger locks the case first), so the case is
    not left marked lost on a stale reading."""
    start = date(2026, 1, 5)
    case = ImportedCase("race", "Bệnh nhân", None, None, None, start, tb.DEFAULT_REGIMEN, False, 0, start)
    case.doses.update({start + timedelta(days=n): DoseStatus.in_person for n in range(200) if not 10 <= n < 70})
    as_of = date(2026, 12, 31)
    async with pool.acquire() as first, pool.acquire() as second, pool.acquire() as watcher:
        (case_id,) = await tb_db.import_cases(first, SYSTEM, network.commune, [case])
        assert await _lost(first, network, as_of)
        fill = first.transaction()
        await fill.start()
        await first.execute("INSERT INTO tb_dose (case_id, taken_on, status) VALUES ($1, $2, 'in_person')",
                            case_id, start + timedelta(days=40))
        unrelated = asyncio.create_task(second.execute(
            "INSERT INTO tb_dose (case_id, taken_on, status) VALUES ($1, $2, 'missed')",
            case_id, start + timedelta(days=250)))
        await asyncio.wait_for(_waiting_on_a_lock(watcher, second.get_server_pid()), timeout=30)
        await fill.commit()
        await asyncio.wait_for(unrelated, timeout=30)
        assert not await _lost(watcher, network, as_of)
        assert await watcher.fetchval("SELECT gap_lost_on FROM tb_case WHERE id = $1", case_id) is None
