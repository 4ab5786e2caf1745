"""Hypertension register: the monthly indicators of a facility and every facility below it, for the
dashboards and `donghanh report htn`, summed from each station's cached monthly counts.

Each station's counts for a month are computed by one SQL query (the SQL twin of
care.hypertension.monthly_indicators, held equal to it on random cohorts by
tests/integration/test_hypertension_sql.py) and stored in htn_station_month. Triggers (migration 0018)
delete a station's stored months that any write can change — a reading or visit dated in month m, however
late it is entered, deletes the station's months from m on — so a stored row is always what the query
would return now. A dashboard reads the stored rows of its subtree, computes only the missing ones, and
sums them up the tree: a province's month is 2,000 rows, not a million patients.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import asyncpg

from care import hypertension as htn
from care.hypertension import Month, MonthlyIndicators
from db.errors import NotFound

Counts = tuple[int, ...]  # the htn.COLUMNS in order
_ZERO: Counts = (0,) * len(htn.COLUMNS)
# Stations computed per transaction: a writer at one of them waits at most one chunk's computation.
_CHUNK = 200
# Advisory lock class of a station's cached months (migration 0018 takes it shared on every write).
_LOCK_CLASS = 18


@dataclass(frozen=True)
class FacilityRow:
    facility_id: int
    level: str
    name: str
    parent_id: int | None
    indicators: MonthlyIndicators


# Each station's own patients, one month: each patient's latest reading and latest visit as of the end of
# the month, classified as CLINICAL.md's operational rules say, counted per station.
# $1 the stations, $2 last day of M, $3 first day of M − 11 (12-month window), $4 first day of M − 2
# (3-month window).
_STATION_MONTH = """
WITH p AS (
    -- Up to date (latest event on or before the month's end): the enrolment row's latest values. Otherwise
    -- (a past month, for a patient seen since) probe the readings as of the month's end. A scalar subquery
    -- in a CASE branch runs only when the branch is taken, so the current month is one pass over the rows.
    SELECT e.facility_id, e.registered_on, e.died_on, e.last_bp_on, e.last_systolic, e.last_diastolic,
           e.last_visit_on, u.up_to_date,
           CASE WHEN NOT u.up_to_date THEN
               (SELECT ROW(b.taken_on, b.systolic, b.diastolic, b.id)::htn_day_reading FROM bp_reading b
                WHERE b.patient_id = e.patient_id AND b.taken_on <= $2 ORDER BY b.taken_on DESC, b.id DESC LIMIT 1)
           END AS past_bp,
           CASE WHEN NOT u.up_to_date THEN
               (SELECT max(v.visited_on) FROM htn_visit v WHERE v.patient_id = e.patient_id AND v.visited_on <= $2)
           END AS past_visit
    FROM htn_enrolment e
    CROSS JOIN LATERAL (SELECT coalesce(greatest(e.last_bp_on, e.last_visit_on) <= $2, true) AS up_to_date) u
    WHERE e.facility_id = ANY($1::bigint[]) AND e.registered_on <= $2
), q AS (
    SELECT facility_id, registered_on, died_on,
           CASE WHEN up_to_date THEN last_bp_on ELSE (past_bp).taken_on END AS bp_on,
           CASE WHEN up_to_date THEN last_systolic ELSE (past_bp).systolic END AS systolic,
           CASE WHEN up_to_date THEN last_diastolic ELSE (past_bp).diastolic END AS diastolic,
           CASE WHEN up_to_date THEN greatest(last_bp_on, last_visit_on)
                ELSE greatest((past_bp).taken_on, past_visit) END AS visit_on
    FROM p
), s AS (
    SELECT facility_id, registered_on, bp_on, systolic, diastolic, visit_on,
           coalesce(died_on <= $2, false) AS dead,
           coalesce(died_on <= $2, false) = false
               AND (registered_on >= $3 OR coalesce(visit_on >= $3, false)) AS under_care
    FROM q
)
SELECT facility_id,
    count(*) FILTER (WHERE NOT dead) AS registered,
    count(*) FILTER (WHERE under_care) AS under_care,
    count(*) FILTER (WHERE NOT dead AND NOT under_care) AS lost_to_follow_up,
    count(*) FILTER (WHERE dead) AS dead,
    count(*) FILTER (WHERE under_care AND registered_on < $4) AS denominator,
    count(*) FILTER (WHERE under_care AND registered_on < $4 AND visit_on >= $4 AND bp_on >= $4
                     AND systolic < 140 AND diastolic < 90) AS controlled,
    count(*) FILTER (WHERE under_care AND registered_on < $4 AND visit_on >= $4 AND bp_on >= $4
                     AND NOT (systolic < 140 AND diastolic < 90)) AS uncontrolled,
    count(*) FILTER (WHERE under_care AND registered_on < $4 AND (visit_on IS NULL OR visit_on < $4))
        AS missed_visit,
    count(*) FILTER (WHERE under_care AND registered_on < $4 AND visit_on >= $4
                     AND (bp_on IS NULL OR bp_on < $4)) AS visited_no_bp
FROM s GROUP BY facility_id
"""

# The same indicators for several months at once ($2, $3, $4: arrays of the three dates above, one per
# month; $5 the last month's last day): each patient's readings and visits read once, each valid from its
# date until the next one's (the latest of a day: a same-day earlier entry is valid for no day), instead of
# one probe per patient and month. For the trend of months never computed.
_STATION_MONTHS = """
WITH m(last_day, first12, first3) AS (
    SELECT * FROM unnest($2::date[], $3::date[], $4::date[])
), e AS (
    SELECT patient_id, facility_id, registered_on, died_on FROM htn_enrolment
    WHERE facility_id = ANY($1::bigint[]) AND registered_on <= $5
), r AS (
    SELECT b.patient_id, b.taken_on, b.systolic, b.diastolic,
           lead(b.taken_on) OVER (PARTITION BY b.patient_id ORDER BY b.taken_on, b.id) AS next_on
    FROM bp_reading b JOIN e ON e.patient_id = b.patient_id WHERE b.taken_on <= $5
), v AS (
    SELECT h.patient_id, h.visited_on,
           lead(h.visited_on) OVER (PARTITION BY h.patient_id ORDER BY h.visited_on) AS next_on
    FROM htn_visit h JOIN e ON e.patient_id = h.patient_id WHERE h.visited_on <= $5
), q AS (
    SELECT e.facility_id, e.registered_on, e.died_on, m.last_day, m.first12, m.first3,
           r.taken_on AS bp_on, r.systolic, r.diastolic, greatest(r.taken_on, v.visited_on) AS visit_on
    FROM e JOIN m ON e.registered_on <= m.last_day
    LEFT JOIN r ON r.patient_id = e.patient_id AND r.taken_on <= m.last_day
                   AND (r.next_on IS NULL OR r.next_on > m.last_day)
    LEFT JOIN v ON v.patient_id = e.patient_id AND v.visited_on <= m.last_day
                   AND (v.next_on IS NULL OR v.next_on > m.last_day)
), s AS (
    SELECT facility_id, last_day, first3, registered_on, bp_on, systolic, diastolic, visit_on,
           coalesce(died_on <= last_day, false) AS dead,
           coalesce(died_on <= last_day, false) = false
               AND (registered_on >= first12 OR coalesce(visit_on >= first12, false)) AS under_care
    FROM q
)
SELECT facility_id, last_day,
    count(*) FILTER (WHERE NOT dead) AS registered,
    count(*) FILTER (WHERE under_care) AS under_care,
    count(*) FILTER (WHERE NOT dead AND NOT under_care) AS lost_to_follow_up,
    count(*) FILTER (WHERE dead) AS dead,
    count(*) FILTER (WHERE under_care AND registered_on < first3) AS denominator,
    count(*) FILTER (WHERE under_care AND registered_on < first3 AND visit_on >= first3 AND bp_on >= first3
                     AND systolic < 140 AND diastolic < 90) AS controlled,
    count(*) FILTER (WHERE under_care AND registered_on < first3 AND visit_on >= first3 AND bp_on >= first3
                     AND NOT (systolic < 140 AND diastolic < 90)) AS uncontrolled,
    count(*) FILTER (WHERE under_care AND registered_on < first3 AND (visit_on IS NULL OR visit_on < first3))
        AS missed_visit,
    count(*) FILTER (WHERE under_care AND registered_on < first3 AND visit_on >= first3
                     AND (bp_on IS NULL OR bp_on < first3)) AS visited_no_bp
FROM s GROUP BY facility_id, last_day
"""

_STORE = """
INSERT INTO htn_station_month (facility_id, month, registered, under_care, lost_to_follow_up, dead, denominator,
                               controlled, uncontrolled, missed_visit, visited_no_bp)
SELECT f, $2, c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
FROM unnest($1::bigint[]) WITH ORDINALITY AS s(f, i)
CROSS JOIN LATERAL (SELECT $3::int[] AS a) x
CROSS JOIN LATERAL (SELECT a[(i - 1) * 9 + 1:i * 9] AS c) y
ON CONFLICT (facility_id, month) DO UPDATE SET
    registered = EXCLUDED.registered, under_care = EXCLUDED.under_care,
    lost_to_follow_up = EXCLUDED.lost_to_follow_up, dead = EXCLUDED.dead, denominator = EXCLUDED.denominator,
    controlled = EXCLUDED.controlled, uncontrolled = EXCLUDED.uncontrolled, missed_visit = EXCLUDED.missed_visit,
    visited_no_bp = EXCLUDED.visited_no_bp, computed_at = now()
"""


async def counts_of(con: asyncpg.Connection, stations: list[int], months: list[Month], *,
                    latest_values: bool) -> dict[tuple[int, Month], Counts]:
    """The stations' own counts for the months, computed (not stored), absent where a station has nobody
    registered by then. `latest_values`: one month read through each enrolment's latest values (probing the
    readings only for a patient seen since); otherwise every month from each patient's readings read once."""
    if latest_values:
        if len(months) != 1:
            raise ValueError("latest_values computes one month")
        month = months[0]
        rows = await con.fetch(_STATION_MONTH, stations, month.last_day, month.plus(-11).first_day,
                               month.plus(-2).first_day)
        return {(r["facility_id"], month): tuple(r[c] for c in htn.COLUMNS) for r in rows}
    async with con.transaction():
        await con.execute("SET LOCAL work_mem = '64MB'")
        rows = await con.fetch(_STATION_MONTHS, stations, [m.last_day for m in months],
                               [m.plus(-11).first_day for m in months], [m.plus(-2).first_day for m in months],
                               max(months).last_day)
    return {(r["facility_id"], Month.of(r["last_day"])): tuple(r[c] for c in htn.COLUMNS) for r in rows}


async def _compute(con: asyncpg.Connection, stations: list[int],
                   months: list[Month]) -> dict[tuple[int, Month], Counts]:
    """Compute the stations' own counts for the months and store those no write is touching right now.

    The stations' locks are tried, not awaited (a dashboard never waits for a writer, and no lock order can
    deadlock); the counts are read in the next statement, with a snapshot taken once the locks are held.
    A station whose lock a writer holds is computed all the same but not stored.
    """
    out: dict[tuple[int, Month], Counts] = {}
    # The current month reads each enrolment's latest values (one pass over the rows); a past month would
    # probe each patient's readings as of its end, slower than reading them once (measured: BENCHMARKS.md).
    current = Month.of(date.today())
    for start in range(0, len(stations), _CHUNK):
        chunk = stations[start:start + _CHUNK]
        async with con.transaction():
            locked: list[int] = await con.fetchval(
                "SELECT coalesce(array_agg(s), '{}') FROM unnest($1::bigint[]) s "
                "WHERE pg_try_advisory_xact_lock($2, (s % 2147483647)::int)", chunk, _LOCK_CLASS)
            found = await counts_of(con, chunk, months, latest_values=months == [current])
            for month in months:
                counts = {s: found.get((s, month), _ZERO) for s in chunk}
                if locked:
                    await con.execute(_STORE, locked, month.first_day, [v for s in locked for v in counts[s]])
                out.update({(s, month): c for s, c in counts.items()})
    return out


async def station_months(con: asyncpg.Connection, stations: list[int],
                         months: Iterable[Month]) -> dict[tuple[int, Month], Counts]:
    """Each station's own counts for each month: the stored rows, the missing ones computed (and stored).

    Run it outside a REPEATABLE READ transaction: a stored row must be computed from a snapshot taken after
    its station's lock (each statement's own, under READ COMMITTED)."""
    wanted = sorted(set(months))
    rows = await con.fetch(
        "SELECT facility_id, month, registered, under_care, lost_to_follow_up, dead, denominator, controlled, "
        "uncontrolled, missed_visit, visited_no_bp FROM htn_station_month "
        "WHERE facility_id = ANY($1::bigint[]) AND month = ANY($2::date[])",
        stations, [m.first_day for m in wanted])
    out = {(r["facility_id"], Month.of(r["month"])): tuple(r[c] for c in htn.COLUMNS) for r in rows}
    gaps = [m for m in wanted if any((s, m) not in out for s in stations)]
    if gaps:
        # Every station missing any of those months computes them all (a stored one again, identically): one
        # pass over those stations' patients rather than one per month.
        missing = [s for s in stations if any((s, m) not in out for m in gaps)]
        out.update(await _compute(con, missing, gaps))
    return out


async def _subtree(con: asyncpg.Connection, root: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await con.fetch(
        "SELECT f.id, f.level, f.name, f.parent_id FROM facility f "
        "WHERE f.id IN (SELECT facility_subtree($1)) ORDER BY f.id", root)
    if not rows:
        raise NotFound("facility", root)
    return rows


def _add(a: Counts, b: Counts) -> Counts:
    return tuple(x + y for x, y in zip(a, b, strict=True))


async def monthly_report(con: asyncpg.Connection, root: int, month: Month) -> list[FacilityRow]:
    """For `root` and every facility below it, the month's indicators over its own patients and those of
    every facility below it (the report's rows, root first, then by id). NotFound for an unknown root."""
    tree = await _subtree(con, root)
    ids = [r["id"] for r in tree]
    own = await station_months(con, ids, [month])
    parent = {r["id"]: r["parent_id"] for r in tree}
    total = {i: _ZERO for i in ids}
    for i in ids:
        # Each station's counts go to itself and every ancestor up to the root (a tree: at most its depth).
        node: int | None = i
        seen = 0
        while node is not None and node in total and seen <= len(ids):
            total[node] = _add(total[node], own[(i, month)])
            node = None if node == root else parent[node]
            seen += 1
    out = [FacilityRow(r["id"], r["level"], r["name"], r["parent_id"],
                       MonthlyIndicators(*total[r["id"]])) for r in tree]
    return sorted(out, key=lambda row: (row.facility_id != root, row.facility_id))


# The root's totals per month from the stored rows, and how many stations each month has stored.
_TOTALS = """
SELECT month, count(*) AS stored, sum(registered) AS registered, sum(under_care) AS under_care,
       sum(lost_to_follow_up) AS lost_to_follow_up, sum(dead) AS dead, sum(denominator) AS denominator,
       sum(controlled) AS controlled, sum(uncontrolled) AS uncontrolled, sum(missed_visit) AS missed_visit,
       sum(visited_no_bp) AS visited_no_bp
FROM htn_station_month WHERE facility_id = ANY($1::bigint[]) AND month BETWEEN $2 AND $3
GROUP BY month
"""


async def trend(con: asyncpg.Connection, root: int, last: Month,
                months: int = 12) -> list[tuple[Month, MonthlyIndicators]]:
    """The root's indicators for each of the `months` months ending with `last` (the dashboard's chart):
    summed in SQL where every station's month is stored, computed for the stations missing otherwise."""
    ids = [r["id"] for r in await _subtree(con, root)]
    span = [last.plus(-i) for i in range(months - 1, -1, -1)]
    totals: dict[Month, Counts] = {}
    for r in await con.fetch(_TOTALS, ids, span[0].first_day, last.first_day):
        if r["stored"] == len(ids):
            totals[Month.of(r["month"])] = tuple(int(r[c]) for c in htn.COLUMNS)
    incomplete = [m for m in span if m not in totals]
    if incomplete:
        own = await station_months(con, ids, incomplete)
        for month in incomplete:
            total = _ZERO
            for i in ids:
                total = _add(total, own[(i, month)])
            totals[month] = total
    return [(month, MonthlyIndicators(*totals[month])) for month in span]


async def missing_station_months(con: asyncpg.Connection, root: int, last: Month, months: int = 12) -> int:
    """How many (station, month) pairs of the trend's span under `root` are not stored: each would be
    computed by the next trend (the dashboard draws it at once when they are few)."""
    count: int = await con.fetchval(
        """SELECT count(*) FROM facility_subtree($1) s
           CROSS JOIN generate_series($2::date, $3::date, interval '1 month') m
           WHERE NOT EXISTS (SELECT 1 FROM htn_station_month h WHERE h.facility_id = s AND h.month = m::date)""",
        root, last.plus(1 - months).first_day, last.first_day)
    return count
