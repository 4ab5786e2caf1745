"""Hypertension register: enrolment, readings from every source, visits, call results, and the worklist
computed in SQL over a facility's subtree (the monthly indicators: db/htn_indicators.py, re-exported here).

The worklist is the SQL twin of care/hypertension.py (tests/integration/test_hypertension_sql.py holds
them equal on random cohorts), computed from the rows when asked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

import asyncpg

from care import htn_import
from care import hypertension as htn
from care.hypertension import PatientHistory, Reading
from care.text import normalize
from db import audit, messages, reviews
from db.errors import Conflict, DbError, NotFound
from db.htn_indicators import FacilityRow as FacilityRow
from db.htn_indicators import missing_station_months as missing_station_months
from db.htn_indicators import monthly_report as monthly_report
from db.htn_indicators import trend as trend


class Source(StrEnum):
    note = "note"
    station = "station"
    home = "home"
    import_ = "import"


RISK_FACTORS = ("diabetes", "cvd", "ckd", "smoking")
CALL_RESULTS = ("agreed", "remind_later", "died", "moved", "transferred", "refused", "wrong_number")
REMOVALS = ("moved", "transferred", "refused", "wrong_number")
REMIND_LATER_DAYS = 7
EARLIEST = date(2000, 1, 1)  # a register date before this is a typo (a year 0026, a 1/1/1900 default)


@dataclass(frozen=True)
class Drug:
    code: str
    name: str
    drug_class: str
    default_dose: str


@dataclass(frozen=True)
class MedicineLine:
    """One structured line: a protocol drug, its dose and how often ("5 mg", "1 lần/ngày")."""

    drug_code: str
    dose: str
    frequency: str

    def __post_init__(self) -> None:
        for name in ("dose", "frequency"):
            value = getattr(self, name).strip()
            if not 1 <= len(value) <= 40:
                raise DbError("bad_medicine", f"a medicine's {name} must be 1 to 40 characters")


@dataclass(frozen=True)
class Enrolment:
    registered_on: date
    diagnosed_on: date | None = None
    risk_factors: tuple[str, ...] = ()
    medicines: tuple[MedicineLine, ...] = ()
    next_visit_on: date | None = None
    patient_ref: str | None = None


async def drugs(con: asyncpg.Connection) -> list[Drug]:
    """The protocol's drug table (data), active lines, by name."""
    rows = await con.fetch("SELECT code, name, drug_class, default_dose FROM htn_drug WHERE active ORDER BY name")
    return [Drug(r["code"], r["name"], r["drug_class"], r["default_dose"]) for r in rows]


async def _check_drugs(con: asyncpg.Connection, lines: tuple[MedicineLine, ...]) -> None:
    known = {r[0] for r in await con.fetch("SELECT code FROM htn_drug WHERE active")}
    for line in lines:
        if line.drug_code not in known:
            raise DbError("unknown_drug", f"{line.drug_code!r} is not in the protocol's drug table")


async def _start_medicines(con: asyncpg.Connection, patient_id: int, lines: tuple[MedicineLine, ...],
                           on: date, staff_id: int | None) -> None:
    await con.executemany(
        """INSERT INTO htn_medicine (patient_id, drug_code, dose, frequency, started_on, changed_by)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [(patient_id, m.drug_code, m.dose.strip(), m.frequency.strip(), on, staff_id) for m in lines])


async def enrol(con: asyncpg.Connection, *, patient_id: int, facility_id: int, enrolment: Enrolment,
                staff_id: int | None, today: date) -> None:
    """Put a patient in the register of `facility_id` with their medicines and next visit (28 days by
    default); audited "htn.enrol". Conflict `already_enrolled`, DbError `unknown_drug` / `bad_risk_factor`."""
    bad = [f for f in enrolment.risk_factors if f not in RISK_FACTORS]
    if bad:
        raise DbError("bad_risk_factor", f"unknown risk factor {bad[0]!r}")
    if enrolment.registered_on > today:
        raise DbError("bad_date", "registered_on is after today")
    async with con.transaction():
        await _check_drugs(con, enrolment.medicines)
        next_visit = enrolment.next_visit_on or today + timedelta(days=htn.NEXT_VISIT_DAYS)
        try:
            await con.execute(
                """INSERT INTO htn_enrolment (patient_id, facility_id, patient_ref, registered_on, diagnosed_on,
                                              risk_factors, next_visit_on, enrolled_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                patient_id, facility_id, enrolment.patient_ref, enrolment.registered_on, enrolment.diagnosed_on,
                list(enrolment.risk_factors), next_visit, staff_id)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("already_enrolled", f"patient {patient_id} is already in a hypertension register") from e
        except asyncpg.ForeignKeyViolationError as e:
            raise NotFound("patient", patient_id) from e
        await _start_medicines(con, patient_id, enrolment.medicines, enrolment.registered_on, staff_id)
        actor = audit.Actor.staff(staff_id) if staff_id is not None else audit.SYSTEM
        await audit.record(con, actor, "htn.enrol", "patient", patient_id,
                           {"facility": facility_id, "medicines": len(enrolment.medicines)})


async def enrolled_facility(con: asyncpg.Connection, patient_id: int) -> int | None:
    """The facility whose register the patient is on (None: not enrolled)."""
    value: int | None = await con.fetchval("SELECT facility_id FROM htn_enrolment WHERE patient_id = $1",
                                           patient_id)
    return value


@dataclass(frozen=True)
class Added:
    reading_id: int
    created: bool  # False: the same idempotency key was sent before (a resend after a drop)


async def add_reading(con: asyncpg.Connection, *, patient_id: int, taken_on: date, systolic: int, diastolic: int,
                      source: Source, staff_id: int | None, today: date, idempotency_key: str | None = None,
                      reschedule: bool = False) -> Added:
    """Store one reading (bounds: care.hypertension.check_reading, naming the field); audited "htn.reading".

    A home reading needs an idempotency key: the same key again returns the first reading, unchanged. With
    `reschedule` (a station visit), the next visit moves to 28 days after the reading.
    """
    htn.check_reading(systolic, diastolic)
    if taken_on > today:
        raise htn.HypertensionError("future_date", "taken_on", "the reading's date is after today")
    if taken_on < EARLIEST:
        raise htn.HypertensionError("bad_date", "taken_on", f"the reading's date is before {EARLIEST.isoformat()}")
    if source is Source.note:
        raise DbError("bad_source", "note readings come from signed notes")
    async with con.transaction():
        row = await con.fetchrow(
            """INSERT INTO bp_reading (patient_id, taken_on, systolic, diastolic, source, entered_by, idempotency_key)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (patient_id, idempotency_key) DO NOTHING RETURNING id""",
            patient_id, taken_on, systolic, diastolic, source.value, staff_id, idempotency_key)
        if row is None:
            existing: int = await con.fetchval(
                "SELECT id FROM bp_reading WHERE patient_id = $1 AND idempotency_key = $2", patient_id,
                idempotency_key)
            return Added(existing, False)
        if reschedule:
            await con.execute("UPDATE htn_enrolment SET next_visit_on = $2 WHERE patient_id = $1",
                              patient_id, taken_on + timedelta(days=htn.NEXT_VISIT_DAYS))
        actor = audit.Actor.staff(staff_id) if staff_id is not None else audit.Actor.patient(patient_id)
        await audit.record(con, actor, "htn.reading", "patient", patient_id,
                           {"reading": row["id"], "source": source.value})
    return Added(row["id"], True)


async def add_visit(con: asyncpg.Connection, *, patient_id: int, visited_on: date, staff_id: int | None,
                    today: date, kind: str = "station", reschedule: bool = True) -> None:
    """A visit without a BP (it still counts as a visit); the next visit moves 28 days on."""
    if visited_on > today:
        raise htn.HypertensionError("future_date", "visited_on", "the visit's date is after today")
    if visited_on < EARLIEST:
        raise htn.HypertensionError("bad_date", "visited_on", f"the visit's date is before {EARLIEST.isoformat()}")
    async with con.transaction():
        try:
            await con.execute(
                "INSERT INTO htn_visit (patient_id, visited_on, kind, entered_by) VALUES ($1, $2, $3, $4)",
                patient_id, visited_on, kind, staff_id)
        except asyncpg.ForeignKeyViolationError as e:
            raise Conflict("not_enrolled", f"patient {patient_id} is not in a hypertension register") from e
        if reschedule:
            await con.execute("UPDATE htn_enrolment SET next_visit_on = $2 WHERE patient_id = $1",
                              patient_id, visited_on + timedelta(days=htn.NEXT_VISIT_DAYS))
        actor = audit.Actor.staff(staff_id) if staff_id is not None else audit.SYSTEM
        await audit.record(con, actor, "htn.visit", "patient", patient_id, {"kind": kind})


async def change_medicines(con: asyncpg.Connection, *, patient_id: int, lines: tuple[MedicineLine, ...],
                           staff_id: int, today: date) -> None:
    """Replace the current medicines (stopped today, new lines start today); a prescription change is a
    visit (Simple). Audited "htn.medicines" with the drug codes before and after."""
    async with con.transaction():
        if await con.fetchval("SELECT 1 FROM htn_enrolment WHERE patient_id = $1 FOR UPDATE", patient_id) is None:
            raise Conflict("not_enrolled", f"patient {patient_id} is not in a hypertension register")
        await _check_drugs(con, lines)
        before = await con.fetch(
            "UPDATE htn_medicine SET stopped_on = $2 WHERE patient_id = $1 AND stopped_on IS NULL "
            "RETURNING drug_code", patient_id, today)
        await _start_medicines(con, patient_id, lines, today, staff_id)
        await con.execute("INSERT INTO htn_visit (patient_id, visited_on, kind, entered_by) "
                          "VALUES ($1, $2, 'prescription', $3)", patient_id, today, staff_id)
        await audit.record(con, audit.Actor.staff(staff_id), "htn.medicines", "patient", patient_id,
                           {"before": sorted(r[0] for r in before), "after": sorted(m.drug_code for m in lines)})


async def record_call(con: asyncpg.Connection, *, patient_id: int, result: str, staff_id: int | None,
                      today: date) -> None:
    """A call (or SMS) result on the overdue list: remind later hides the patient for 7 days; died records
    the death; moved/transferred/refused/wrong number remove them until their next visit. Audited."""
    if result not in (*CALL_RESULTS, "sms"):
        raise DbError("bad_call_result", f"unknown call result {result!r}")
    remind_on = today + timedelta(days=REMIND_LATER_DAYS) if result == "remind_later" else None
    async with con.transaction():
        try:
            await con.execute("INSERT INTO htn_call (patient_id, called_on, result, remind_on, staff_id) "
                              "VALUES ($1, $2, $3, $4, $5)", patient_id, today, result, remind_on, staff_id)
        except asyncpg.ForeignKeyViolationError as e:
            raise Conflict("not_enrolled", f"patient {patient_id} is not in a hypertension register") from e
        if result == "died":
            await con.execute("UPDATE htn_enrolment SET died_on = $2 WHERE patient_id = $1 AND died_on IS NULL",
                              patient_id, today)
        elif result in REMOVALS:
            await con.execute("UPDATE htn_enrolment SET removed_on = $2, removed_reason = $3 WHERE patient_id = $1",
                              patient_id, today, result)
        actor = audit.Actor.staff(staff_id) if staff_id is not None else audit.SYSTEM
        await audit.record(con, actor, "htn.call", "patient", patient_id, {"result": result})


# --- reading back ------------------------------------------------------------------------------------

async def histories(con: asyncpg.Connection, patient_ids: list[int]) -> dict[int, PatientHistory]:
    """Each enrolled patient's full history, as care.hypertension reads it."""
    rows = await con.fetch(
        """SELECT e.patient_id, e.registered_on, e.died_on, e.next_visit_on,
                  (SELECT count(*) FROM htn_medicine m WHERE m.patient_id = e.patient_id AND m.stopped_on IS NULL)
                      AS drugs,
                  ARRAY(SELECT ROW(b.taken_on, b.systolic, b.diastolic, b.id) FROM bp_reading b
                        WHERE b.patient_id = e.patient_id ORDER BY b.taken_on, b.id) AS readings,
                  ARRAY(SELECT v.visited_on FROM htn_visit v WHERE v.patient_id = e.patient_id
                        ORDER BY v.visited_on) AS visits
           FROM htn_enrolment e WHERE e.patient_id = ANY($1::bigint[])""", patient_ids)
    return {r["patient_id"]: PatientHistory(
        r["registered_on"], tuple(Reading(t[0], t[1], t[2], t[3]) for t in r["readings"]), tuple(r["visits"]),
        r["died_on"], r["drugs"], r["next_visit_on"]) for r in rows}


@dataclass(frozen=True)
class WorklistEntry:
    patient_id: int
    name: str
    facility_id: int
    facility: str
    reasons: tuple[htn.Reason, ...]
    systolic: int | None
    diastolic: int | None
    taken_on: date | None
    next_visit_on: date | None


# Candidates: the latest visit-day reading is uncontrolled, or the scheduled visit has passed with no visit
# since. Every worklist reason implies one of the two, so the Python rules below see every patient they
# could flag. Per patient: the two latest visit days' readings (a day's latest entry), the current drugs.
_WORKLIST = """
SELECT * FROM (
SELECT e.patient_id, pt.name, e.facility_id, f.name AS facility, e.registered_on, e.died_on, e.next_visit_on,
       r.readings,
       (SELECT count(*) FROM htn_medicine m WHERE m.patient_id = e.patient_id AND m.stopped_on IS NULL) AS drugs,
       greatest((r.readings[1]).taken_on, (SELECT max(v.visited_on) FROM htn_visit v
                                         WHERE v.patient_id = e.patient_id AND v.visited_on <= $2)) AS visit_on
FROM htn_enrolment e
JOIN patient pt ON pt.id = e.patient_id
JOIN facility f ON f.id = e.facility_id
CROSS JOIN LATERAL (
    SELECT ARRAY(SELECT ROW(d.taken_on, d.systolic, d.diastolic, d.id)::htn_day_reading FROM (
        SELECT DISTINCT ON (b.taken_on) b.taken_on, b.systolic, b.diastolic, b.id FROM bp_reading b
        WHERE b.patient_id = e.patient_id AND b.taken_on <= $2
        ORDER BY b.taken_on DESC, b.id DESC LIMIT 2) d ORDER BY d.taken_on DESC) AS readings) r
WHERE e.facility_id IN (SELECT facility_subtree($1)) AND (e.died_on IS NULL OR e.died_on > $2)
  -- Only rows with events dated after `today` (rare: a clock moved back); the rest take the fast path.
  AND greatest(e.last_bp_on, e.last_visit_on) > $2
) w
WHERE NOT coalesce((readings[1]).systolic < 140 AND (readings[1]).diastolic < 90, true)
   OR (next_visit_on < $2 AND (visit_on IS NULL OR visit_on < next_visit_on))
"""


# The fast path, for every patient whose latest event is on or before `today` (everyone, in practice): the
# reasons from the enrolment row's latest and previous-day readings, drug count and next visit — the same
# rules as care.hypertension.worklist_reasons — ordered by severity in SQL, so a page reads only its rows.
_FAST_COLUMNS = """
    e.patient_id, pt.name, e.facility_id, f.name AS facility, e.next_visit_on,
    e.last_bp_on, e.last_systolic, e.last_diastolic,
    coalesce(e.last_systolic >= 180 OR e.last_diastolic >= 110, false) AS urgent,
    coalesce(e.drugs >= 3 AND NOT (e.last_systolic < 140 AND e.last_diastolic < 90), false) AS many_drugs,
    coalesce(NOT (e.last_systolic < 140 AND e.last_diastolic < 90)
             AND NOT (e.prev_systolic < 140 AND e.prev_diastolic < 90), false) AS twice,
    coalesce(e.next_visit_on < $2 AND coalesce(greatest(e.last_bp_on, e.last_visit_on) < e.next_visit_on, true),
             false) AS overdue
FROM htn_enrolment e
JOIN patient pt ON pt.id = e.patient_id
JOIN facility f ON f.id = e.facility_id"""

_FAST_ROWS = "(e.died_on IS NULL OR e.died_on > $2) AND coalesce(greatest(e.last_bp_on, e.last_visit_on) <= $2, true)"

# A small scope (a district, a commune): its rows through the facility index, classified and sorted.
_WORKLIST_FAST = f"""
SELECT * FROM (
    SELECT {_FAST_COLUMNS}
    WHERE e.facility_id IN (SELECT facility_subtree($1)) AND {_FAST_ROWS}
) w
WHERE urgent OR many_drugs OR twice OR overdue
ORDER BY CASE WHEN urgent THEN 1 WHEN many_drugs THEN 2 WHEN twice THEN 3 ELSE 4 END,
         coalesce(last_systolic, 0) DESC, patient_id
LIMIT $3
"""

# A large scope (a province): the stored severity (migration 0022: the same three rules, most severe first)
# read in the worklist's order through its partial index, stopping at the page's last row; then, only if the
# page is not full, the patients who are overdue and nothing else (severity NULL), by the next-visit index.
# $1: the scope's facility ids.
_WORKLIST_SEVERE = f"""
SELECT {_FAST_COLUMNS}
WHERE e.severity IS NOT NULL AND e.facility_id = ANY($1::bigint[]) AND {_FAST_ROWS}
ORDER BY e.severity, coalesce(e.last_systolic, 0) DESC, e.patient_id
LIMIT $3
"""

_WORKLIST_OVERDUE_ONLY = f"""
SELECT {_FAST_COLUMNS}
WHERE e.severity IS NULL AND e.next_visit_on < $2 AND e.facility_id = ANY($1::bigint[]) AND {_FAST_ROWS}
  AND coalesce(greatest(e.last_bp_on, e.last_visit_on) < e.next_visit_on, true)
ORDER BY coalesce(e.last_systolic, 0) DESC, e.patient_id
LIMIT $3
"""

# A scope counts as large from a tenth of all facilities on (a province; a district is a hundredth): reading
# the severity index in order then finds a page's rows within some ten thousand index entries, where the
# scope's own rows would be a tenth of the register or more. Either plan returns the same rows; this only
# picks the faster one.
_LARGE_SCOPE = """
SELECT s.ids, cardinality(s.ids) * 10 >= (SELECT count(*) FROM facility) AS large
FROM (SELECT array_agg(id) AS ids FROM facility_subtree($1) id) s
"""


async def worklist(con: asyncpg.Connection, root: int, today: date, limit: int = 500, *,
                   ordered: bool | None = None) -> list[WorklistEntry]:
    """The specialist's worklist over `root` and every facility below it, most severe first (at most `limit`).

    `ordered` forces the large-scope plan (True) or the small-scope one (False); by default the scope's
    size chooses. Both give the same rows in the same order.
    """
    scope = await con.fetchrow(_LARGE_SCOPE, root)
    if ordered is None:
        ordered = bool(scope["large"])
    if ordered:
        fast = list(await con.fetch(_WORKLIST_SEVERE, scope["ids"], today, limit))
        if len(fast) < limit:
            fast += await con.fetch(_WORKLIST_OVERDUE_ONLY, scope["ids"], today, limit - len(fast))
    else:
        fast = list(await con.fetch(_WORKLIST_FAST, root, today, limit))
    entries = []
    for r in fast:
        reasons = tuple(reason for reason, flag in ((htn.Reason.URGENT, r["urgent"]),
                                                     (htn.Reason.MANY_DRUGS, r["many_drugs"]),
                                                     (htn.Reason.UNCONTROLLED_TWICE, r["twice"]),
                                                     (htn.Reason.OVERDUE, r["overdue"])) if flag)
        entries.append(WorklistEntry(r["patient_id"], r["name"], r["facility_id"], r["facility"], reasons,
                                     r["last_systolic"], r["last_diastolic"], r["last_bp_on"], r["next_visit_on"]))
    for r in await con.fetch(_WORKLIST, root, today):
        days = [Reading(t["taken_on"], t["systolic"], t["diastolic"], t["id"]) for t in r["readings"]]
        history = PatientHistory(r["registered_on"], tuple(reversed(days)),
                                 (r["visit_on"],) if r["visit_on"] is not None else (), r["died_on"], r["drugs"],
                                 r["next_visit_on"])
        found = htn.worklist_reasons(history, today)
        if found:
            latest = days[0] if days else None
            entries.append(WorklistEntry(
                r["patient_id"], r["name"], r["facility_id"], r["facility"], tuple(found),
                latest.systolic if latest else None, latest.diastolic if latest else None,
                latest.taken_on if latest else None, r["next_visit_on"]))
    return sorted(entries, key=lambda e: (min(e.reasons), -(e.systolic or 0), e.patient_id))[:limit]


# --- paper register import ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Imported:
    created: int   # new patients in the registry
    matched: int   # existing patients found by their register number at the facility
    visits: int    # visits without a BP stored
    readings: int  # readings stored (a reading already imported before is not stored twice)


async def import_register(con: asyncpg.Connection, *, facility_id: int, patients: list[htn_import.ImportPatient],
                          staff_id: int | None, today: date) -> Imported:
    """Create or match each patient (by patient_ref at the facility), enrol them, store their visits and
    readings: all in one transaction (audited "htn.import"), so a failure leaves nothing imported.
    Importing the same file again stores nothing new."""
    created = matched = visits = readings = 0
    async with con.transaction():
        level = await con.fetchval("SELECT level FROM facility WHERE id = $1", facility_id)
        if level is None:
            raise NotFound("facility", facility_id)
        for p in patients:
            patient_id = await con.fetchval(
                "SELECT patient_id FROM htn_enrolment WHERE facility_id = $1 AND patient_ref = $2",
                facility_id, p.patient_ref)
            if patient_id is None:
                patient_id = await con.fetchval(
                    """INSERT INTO patient (facility_id, name, search_name, sex, birth_year, phone)
                       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                    facility_id, p.name, normalize(p.name), p.sex, p.birth_year, p.phone)
                await con.execute(
                    """INSERT INTO htn_enrolment (patient_id, facility_id, patient_ref, registered_on, next_visit_on,
                                                  enrolled_by) VALUES ($1, $2, $3, $4, $5, $6)""",
                    patient_id, facility_id, p.patient_ref, p.registered_on,
                    max([p.registered_on, *(v.visited_on for v in p.visits)]) + timedelta(days=htn.NEXT_VISIT_DAYS),
                    staff_id)
                created += 1
            else:
                matched += 1
            for v in p.visits:
                if v.systolic is None or v.diastolic is None:
                    inserted = await con.fetchval(
                        """INSERT INTO htn_visit (patient_id, visited_on, kind, entered_by)
                           SELECT $1, $2, 'station', $3 WHERE NOT EXISTS (
                               SELECT 1 FROM htn_visit WHERE patient_id = $1 AND visited_on = $2)
                           RETURNING id""", patient_id, v.visited_on, staff_id)
                    visits += inserted is not None
                else:
                    key = f"import-{v.visited_on:%Y%m%d}-{v.systolic}-{v.diastolic}"
                    inserted = await con.fetchval(
                        """INSERT INTO bp_reading (patient_id, taken_on, systolic, diastolic, source, entered_by,
                                                   idempotency_key) VALUES ($1, $2, $3, $4, 'import', $5, $6)
                           ON CONFLICT (patient_id, idempotency_key) DO NOTHING RETURNING id""",
                        patient_id, v.visited_on, v.systolic, v.diastolic, staff_id, key)
                    readings += inserted is not None
        result = Imported(created, matched, visits, readings)
        actor = audit.Actor.staff(staff_id) if staff_id is not None else audit.SYSTEM
        await audit.record(con, actor, "htn.import", "facility", facility_id,
                           {"created": created, "matched": matched, "visits": visits, "readings": readings})
    return result


# --- the station's overdue list, the chart, the specialist's review -----------------------------------

@dataclass(frozen=True)
class OverdueEntry:
    patient_id: int
    name: str
    phone: str | None
    facility: str
    next_visit_on: date
    last_visit_on: date | None
    last_call: str | None


# Overdue: the scheduled date has passed with no visit on or after it (care.hypertension.overdue). Hidden:
# the dead, those removed by a call result (until a visit after the removal), and "remind later" until
# its date. A patient leaves the list only by a visit (returning to care) or a removal.
_OVERDUE = """
SELECT * FROM (
    SELECT e.patient_id, p.name, p.phone, f.name AS facility, e.next_visit_on, e.removed_on,
           greatest((SELECT max(b.taken_on) FROM bp_reading b WHERE b.patient_id = e.patient_id),
                    (SELECT max(v.visited_on) FROM htn_visit v WHERE v.patient_id = e.patient_id)) AS last_visit_on,
           c.result AS last_call, c.remind_on
    FROM htn_enrolment e
    JOIN patient p ON p.id = e.patient_id
    JOIN facility f ON f.id = e.facility_id
    LEFT JOIN LATERAL (SELECT result, remind_on FROM htn_call WHERE patient_id = e.patient_id
                       ORDER BY at DESC LIMIT 1) c ON true
    WHERE e.facility_id IN (SELECT facility_subtree($1)) AND e.died_on IS NULL AND e.next_visit_on < $2
) o
WHERE (last_visit_on IS NULL OR last_visit_on < next_visit_on)
  AND (removed_on IS NULL OR last_visit_on > removed_on)
  AND (remind_on IS NULL OR remind_on <= $2 OR last_call <> 'remind_later')
ORDER BY next_visit_on, patient_id
LIMIT 500
"""


async def overdue_list(con: asyncpg.Connection, root: int, today: date) -> list[OverdueEntry]:
    """The station's overdue list over `root` and below, longest overdue first (at most 500)."""
    rows = await con.fetch(_OVERDUE, root, today)
    return [OverdueEntry(r["patient_id"], r["name"], r["phone"], r["facility"], r["next_visit_on"],
                         r["last_visit_on"], r["last_call"]) for r in rows]


async def send_reminder(con: asyncpg.Connection, *, patient_id: int, body: str, lang: str, staff_id: int,
                        today: date, now: datetime) -> bool:
    """Queue an SMS reminder in the outbox (one per patient and day) and record it as a call result 'sms'.
    Conflict `no_phone` without a mobile number; False when today's reminder was queued already."""
    async with con.transaction():
        phone = await con.fetchval(
            "SELECT p.phone FROM htn_enrolment e JOIN patient p ON p.id = e.patient_id WHERE e.patient_id = $1",
            patient_id)
        if phone is None:
            raise Conflict("no_phone", f"patient {patient_id} has no phone number for an SMS")
        message_id = await messages.schedule(con, patient_id=patient_id, to_phone=phone, lang=lang,
                                             kind="htn_reminder", body=body,
                                             dedupe_key=f"htn_reminder:{patient_id}:{today.isoformat()}", due_at=now)
        if message_id is None:
            return False
        await record_call(con, patient_id=patient_id, result="sms", staff_id=staff_id, today=today)
    return True


@dataclass(frozen=True)
class MedicinePeriod:
    drug: str
    dose: str
    frequency: str
    started_on: date
    stopped_on: date | None


@dataclass(frozen=True)
class ChartReading:
    taken_on: date
    systolic: int
    diastolic: int
    source: str


@dataclass(frozen=True)
class Chart:
    patient_id: int
    facility_id: int
    registered_on: date
    diagnosed_on: date | None
    risk_factors: tuple[str, ...]
    next_visit_on: date | None
    died_on: date | None
    readings: list[ChartReading]
    medicines: list[MedicinePeriod]
    visits: list[tuple[date, str]]


async def chart(con: asyncpg.Connection, patient_id: int) -> Chart | None:
    """Everything the patient's chart shows (None: not enrolled)."""
    e = await con.fetchrow("SELECT * FROM htn_enrolment WHERE patient_id = $1", patient_id)
    if e is None:
        return None
    readings = await con.fetch("SELECT taken_on, systolic, diastolic, source FROM bp_reading WHERE patient_id = $1 "
                               "ORDER BY taken_on, id", patient_id)
    meds = await con.fetch("SELECT d.name, m.dose, m.frequency, m.started_on, m.stopped_on FROM htn_medicine m "
                           "JOIN htn_drug d ON d.code = m.drug_code WHERE m.patient_id = $1 "
                           "ORDER BY m.started_on, m.id", patient_id)
    visits = await con.fetch("SELECT visited_on, kind FROM htn_visit WHERE patient_id = $1 "
                             "UNION ALL SELECT taken_on, 'bp_' || source FROM bp_reading WHERE patient_id = $1 "
                             "ORDER BY 1 DESC LIMIT 50", patient_id)
    return Chart(patient_id, e["facility_id"], e["registered_on"], e["diagnosed_on"], tuple(e["risk_factors"]),
                 e["next_visit_on"], e["died_on"],
                 [ChartReading(r["taken_on"], r["systolic"], r["diastolic"], r["source"]) for r in readings],
                 [MedicinePeriod(*m) for m in meds], [(v[0], v[1]) for v in visits])


async def write_review(con: asyncpg.Connection, *, patient_id: int, staff_id: int, text: str,
                       follow_up_on: date | None, now: datetime) -> uuid.UUID:
    """The specialist's review of a register patient, kept as a signed consult note (db/reviews.py: an
    ended, chat-only consultation, service 'htn_review', with version 1 of its note), so it sits in the
    patient's record with every other signed note. One transaction; audited "htn.review". Returns the
    consultation id."""
    reviews.checked_text(text)
    async with con.transaction():
        facility_id = await con.fetchval("SELECT facility_id FROM htn_enrolment WHERE patient_id = $1", patient_id)
        if facility_id is None:
            raise Conflict("not_enrolled", f"patient {patient_id} is not in a hypertension register")
        signed = await reviews.sign_review(con, patient_id=patient_id, facility_id=facility_id, staff_id=staff_id,
                                           service="htn_review", text=text, diagnoses=("I10",),
                                           follow_up_on=follow_up_on, now=now)
        if follow_up_on is not None:
            await con.execute("UPDATE htn_enrolment SET next_visit_on = $2 WHERE patient_id = $1",
                              patient_id, follow_up_on)
        await audit.record(con, audit.Actor.staff(staff_id), "htn.review", "patient", patient_id,
                           {"consultation": str(signed.consultation_id)})
    return signed.consultation_id


# Registered in the quarter, not dead by the end of the next one; judged by the latest visit and the
# latest BP within the next quarter (care.hypertension.cohort_outcome). $2/$3: the cohort quarter,
# $4/$5: the next quarter (first and last day).
_COHORT = """
SELECT count(*) FILTER (WHERE visit_on IS NULL) AS missed_visit,
       count(*) FILTER (WHERE visit_on IS NOT NULL AND bp_on IS NULL) AS visited_no_bp,
       count(*) FILTER (WHERE bp_on IS NOT NULL AND systolic < 140 AND diastolic < 90) AS controlled,
       count(*) FILTER (WHERE bp_on IS NOT NULL AND NOT (systolic < 140 AND diastolic < 90)) AS uncontrolled
FROM (
    SELECT lb.taken_on AS bp_on, lb.systolic, lb.diastolic,
           greatest(lb.taken_on, (SELECT max(v.visited_on) FROM htn_visit v WHERE v.patient_id = e.patient_id
                                  AND v.visited_on BETWEEN $4 AND $5)) AS visit_on
    FROM htn_enrolment e
    LEFT JOIN LATERAL (SELECT b.taken_on, b.systolic, b.diastolic FROM bp_reading b
                       WHERE b.patient_id = e.patient_id AND b.taken_on BETWEEN $4 AND $5
                       ORDER BY b.taken_on DESC, b.id DESC LIMIT 1) lb ON true
    WHERE e.facility_id IN (SELECT facility_subtree($1)) AND e.registered_on BETWEEN $2 AND $3
      AND (e.died_on IS NULL OR e.died_on > $5)
) c
"""


async def quarterly_cohort(con: asyncpg.Connection, root: int, year: int, quarter: int) -> dict[htn.Bucket, int]:
    """The quarterly cohort report over `root` and below: outcomes in Q+1 of those registered in Q."""
    months = htn.quarter_months(year, quarter)
    following = months[2].plus(1)
    row = await con.fetchrow(_COHORT, root, months[0].first_day, months[2].last_day, following.first_day,
                             following.plus(2).last_day)
    return {b: row[b.value] for b in htn.Bucket}


async def register_state(con: asyncpg.Connection, patient_id: int) -> str:
    """'enrolled', 'offer' (not enrolled, and a signed note carries an I10–I15 diagnosis) or 'none'."""
    if await enrolled_facility(con, patient_id) is not None:
        return "enrolled"
    codes = await con.fetchval(
        "SELECT array_agg(DISTINCT d) FROM note_version nv JOIN consultation c ON c.id = nv.consultation_id, "
        "unnest(nv.diagnoses) d WHERE c.patient_id = $1", patient_id)
    return "offer" if any(htn.hypertension_diagnosis(c) for c in codes or []) else "none"
