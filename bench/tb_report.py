"""The TB quarterly cohort report (issue 11) over a synthetic province: N cases registered in one quarter,
their daily doses (5% missed at random, 3% of cases stopping after 40 days), sputum results, under 1
province → 10 districts → 100 communes. Times `db.tb.cohort_report` for the province (every row rolled up)
cold and warm, and a commune; the report page's adherence distribution for the province; the worklist's query
(cases on treatment with their last 28 days of doses) for a commune mid-treatment; baseline: a plain
`count(*)` over every dose row in the same run. The build's dose insert includes the triggers that keep each
case's gap and doses taken (migration 0020).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402

from bench.harness import command_line, embedded_database, finish, load_average, machine, now_iso  # noqa: E402


def _step(name: str, started: list[float]) -> None:
    now = time.perf_counter()
    print(f"  built {name} in {now - started[0]:.1f} s", file=sys.stderr, flush=True)
    started[0] = now


async def build(con: asyncpg.Connection, cases: int) -> dict[str, int]:
    started = [time.perf_counter()]
    province = await con.fetchval("INSERT INTO facility (name, level) VALUES ('Tỉnh', 'province') RETURNING id")
    await con.execute("""INSERT INTO facility (name, level, parent_id)
                         SELECT 'Huyện ' || g, 'district', $1 FROM generate_series(1, 10) g""", province)
    await con.execute("""INSERT INTO facility (name, level, parent_id)
                         SELECT 'Xã ' || d.id || '.' || g, 'commune', d.id
                         FROM facility d, generate_series(1, 10) g WHERE d.level = 'district'""")
    await con.execute("""INSERT INTO patient (facility_id, name, search_name)
                         SELECT f.id, 'BN', 'bn' FROM generate_series(1, $1) g
                         JOIN LATERAL (SELECT id FROM facility WHERE level = 'commune'
                                       ORDER BY id OFFSET g % 100 LIMIT 1) f ON true""", cases)
    _step("patients", started)
    await con.execute("""INSERT INTO tb_case (patient_id, facility_id, registered_on, bacteriologically_confirmed,
                                              regimen, regimen_months, started_on)
                         SELECT p.id, p.facility_id, date '2026-01-01' + (p.id % 90)::int, p.id % 3 > 0,
                                '2HRZE/4HR', 6, date '2026-01-01' + (p.id % 90)::int + (p.id % 7)::int
                         FROM patient p""")
    _step("cases", started)
    await con.execute("""INSERT INTO tb_dose (case_id, taken_on, status)
                         SELECT c.id, c.started_on + g, CASE WHEN random() < 0.05 THEN 'missed'
                                                             ELSE 'in_person' END
                         FROM tb_case c, generate_series(0, 182) g
                         WHERE c.id % 33 > 0 OR g < 40""")
    _step("doses", started)
    await con.execute("""INSERT INTO tb_sputum (case_id, taken_on, positive)
                         SELECT c.id, c.started_on + m * 30, random() < 0.04
                         FROM tb_case c, unnest(ARRAY[2, 5, 6]) m""")
    await con.execute("ANALYZE")
    return {"province": province,
            "commune": await con.fetchval("SELECT min(id) FROM facility WHERE level = 'commune'"),
            "doses": await con.fetchval("SELECT count(*) FROM tb_dose")}


async def run(dsn: str, cases: int, repeat: int) -> dict[str, Any]:
    from db import tb as tb_db
    from db.migrate import migrate
    from db.pool import create_pool

    con = await asyncpg.connect(dsn)
    await migrate(con)
    t0 = time.perf_counter()
    ids = await build(con, cases)
    build_s = time.perf_counter() - t0
    await con.close()
    pool = await create_pool(dsn, min_size=1, max_size=1)
    as_of = date(2026, 12, 31)
    try:
        async with pool.acquire() as c:
            t0 = time.perf_counter()
            rows = await tb_db.cohort_report(c, ids["province"], "2026-Q1", as_of)
            cold = time.perf_counter() - t0
            warm, commune, scan, bands, worklist = [], [], [], [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await c.fetchval("SELECT count(*) FROM tb_dose")
                scan.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await tb_db.cohort_report(c, ids["province"], "2026-Q1", as_of)
                warm.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await tb_db.cohort_report(c, ids["commune"], "2026-Q1", as_of)
                commune.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await tb_db.adherence_distribution(c, ids["province"], "2026-Q1", as_of)
                bands.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                on_treatment = await tb_db.cases_on_treatment(c, ids["commune"], date(2026, 4, 15))
                worklist.append(time.perf_counter() - t0)
            size = await c.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await pool.close()
    top = rows[0]
    return {"cases": cases, "dose_rows": ids["doses"], "facilities_in_report": len(rows),
            "build_s": round(build_s, 1), "province_report_cold_s": round(cold, 3),
            "province_report_warm_s": round(statistics.median(warm), 3),
            "commune_report_warm_s": round(statistics.median(commune), 3),
            "province_adherence_distribution_s": round(statistics.median(bands), 3),
            "commune_worklist_cases_s": round(statistics.median(worklist), 3),
            "commune_worklist_cases": len(on_treatment),
            "baseline_count_all_doses_s": round(statistics.median(scan), 3),
            "ratio_province_report_over_count": round(statistics.median(warm) / statistics.median(scan), 2),
            "database_mib": round(size / 2**20),
            "registered": top.registered, "treatment_success_rate": round(top.success_rate or 0, 3),
            **{f"outcome_{o}": n for o, n in top.counts.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "tb_report", "date": now_iso(), "machine": machine(),
                              "command": command_line(argv), "load_average_before": load_average(),
                              "method": __doc__.replace("\n", " ").strip()}
    with embedded_database() as (dsn, _):
        result.update(asyncio.run(run(dsn, args.cases, args.repeat)))
    finish(Path(__file__).resolve().parent / "results" / "tb_report.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
