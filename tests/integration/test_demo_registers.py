"""The demo's registers are alive: after `serve --demo` seeds, the hypertension specialist's worklist shows
every reason, the commune's dashboard counts controlled, uncontrolled and missed-visit patients, and the TB
specialist's worklist shows the demo's cases with their flags, whatever day the demo runs."""

from __future__ import annotations

from datetime import date
from html import escape

import asyncpg

from care import tb
from care.appointments import FACILITY_TZ
from care.hypertension import Month, Reason
from db import demo
from db import hypertension as htn_db
from db import tb as tb_db
from tests.conftest import RunningApp
from tests.integration.test_http import signed_in
from web.keys import clock_key


async def _facility_of(con: asyncpg.Connection, username: str) -> int:
    facility: int = await con.fetchval("SELECT facility_id FROM staff WHERE username = $1", username)
    return facility


async def _names(con: asyncpg.Connection, ids: list[int]) -> dict[int, str]:
    return {r["id"]: r["name"] for r in await con.fetch("SELECT id, name FROM patient WHERE id = ANY($1)", ids)}


async def _tb_flags(con: asyncpg.Connection, root: int, today: date) -> dict[str, list[tb.Flag]]:
    """What /staff/tb lists: cases on treatment with at least one flag, by patient name."""
    records = await tb_db.cases_in_subtree(con, root)
    names = await _names(con, [r.patient_id for r in records])
    out = {}
    for r in records:
        start = r.case.started_on
        if start is None or tb.who_outcome(r.case, today) is not tb.Outcome.still_on_treatment:
            continue
        flags = tb.flags(start, tb.REGIMENS[r.case.regimen], r.doses, r.case.sputum, today)
        if flags:
            out[names[r.patient_id]] = flags
    return out


async def test_demo_registers_show_every_reason(running_app: RunningApp) -> None:
    app = running_app
    today = app.app[clock_key].now().astimezone(FACILITY_TZ).date()
    async with app.pool.acquire() as con:
        district, province = await _facility_of(con, "bs.timmach"), await _facility_of(con, "bs.lao")
        commune = await _facility_of(con, "yta.hoa")
        worklist = {e.name: set(e.reasons) for e in await htn_db.worklist(con, district, today)}
        report = await htn_db.monthly_report(con, commune, Month.of(today))
        overdue = {e.name for e in await htn_db.overdue_list(con, commune, today)}
        tb_rows = await _tb_flags(con, province, today)
        sources = {r[0] for r in await con.fetch(
            "SELECT DISTINCT source FROM bp_reading b JOIN htn_enrolment e USING (patient_id)")}
        assert not await demo.seed(con)  # once only

    assert worklist == {
        "Giàng A Páo": {Reason.URGENT, Reason.UNCONTROLLED_TWICE},
        "Trần Thị Hoa": {Reason.MANY_DRUGS, Reason.UNCONTROLLED_TWICE, Reason.OVERDUE},
        "Nguyễn Văn An": {Reason.OVERDUE},
    }
    assert overdue == {"Trần Thị Hoa", "Nguyễn Văn An"}
    counts = report[0].indicators
    assert (counts.denominator, counts.controlled, counts.uncontrolled, counts.missed_visit) == (3, 1, 1, 1)
    assert sources == {"note", "station", "home", "import"}

    assert tb_rows == {
        "Hờ Thị Dính": [tb.Flag.phase_ending],
        "Lý A Chư": [tb.Flag.missed_doses, tb.Flag.low_adherence],
    }

    # The pages the specialists open show the same rows.
    timmach, lao = await signed_in(app, "bs.timmach"), await signed_in(app, "bs.lao")
    try:
        page = await (await timmach.http.get(f"{app.url}/staff/htn/worklist")).text()
        for reason in ("urgent", "many_drugs", "uncontrolled_twice", "overdue"):
            assert f'data-reason="{reason}"' in page, reason
        page = await (await lao.http.get(f"{app.url}/staff/tb")).text()
        assert page.count("<tr data-case=") == 2
        async with app.pool.acquire() as con:  # each row names the person and their station, not a number
            names = await con.fetch(
                "SELECT p.name, f.name AS station FROM tb_case c JOIN patient p ON p.id = c.patient_id"
                " JOIN facility f ON f.id = c.facility_id WHERE c.started_on IS NOT NULL")
        for row in names:
            assert escape(row["name"]) in page and escape(row["station"]) in page
        assert 'data-flag="missed_doses"' in page and 'data-flag="phase_ending"' in page
    finally:
        await timmach.http.close()
        await lao.http.close()
