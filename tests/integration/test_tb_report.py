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


@st.composite
def cases(draw: st.DrawFn, facilities: list[int]) -> tuple[int, ImportedCase, Outcome | None]:
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
    return draw(st.sampled_from(facilities)), case, override


def pure(case: ImportedCase, override: Outcome | None) -> TbCase:
    return TbCase(case.registered_on, case.regimen, case.bacteriologically_confirmed, case.started_on,
                  frozenset(d for d, s in case.doses.items() if s in tb.TAKEN), tuple(case.sputum), case.died_on,
                  case.transferred_out_on, case.failure_on, override)


async def _compare(dsn: str, network: Network, drawn: list[tuple[int, ImportedCase, Outcome | None]],
                   as_of: date) -> None:
    con = await asyncpg.connect(dsn)
    try:
        await con.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        transaction = con.transaction()
        await transaction.start()
        try:
            ids: dict[int, tuple[int, TbCase]] = {}
            for n, (facility, case, override) in enumerate(drawn):
                case.register_ref = f"r{n}"
                (case_id,) = await tb_db.import_cases(con, SYSTEM, facility, [case])
                if override is not None:
                    await tb_db.set_outcome(con, SYSTEM, case_id, override, "test")
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
        finally:
            await transaction.rollback()
    finally:
        await con.close()


async def test_report_sql_equals_the_pure_rules_on_random_cohorts(dsn: str, network: Network) -> None:
    facilities = [network.province, network.district, network.commune, network.sibling]

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(drawn=st.lists(cases(facilities), min_size=0, max_size=12),
           as_of=st.dates(date(2026, 1, 1), date(2027, 3, 1)))
    def check(drawn: list[tuple[int, ImportedCase, Outcome | None]], as_of: date) -> None:
        asyncio.run(_compare(dsn, network, drawn, as_of))

    await asyncio.to_thread(check)


async def test_report_of_an_unknown_facility_is_not_found(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con:
        with pytest.raises(NotFound):
            await tb_db.cohort_report(con, 999_999, QUARTER, date(2026, 6, 1))
