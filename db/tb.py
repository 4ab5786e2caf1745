"""TB register: cases, doses, sputum results, regimen changes, outcome overrides, and the quarterly cohort
report in SQL over a facility's subtree.

Every write is audited in the same transaction. The rules live in care/tb.py; `cohort_report` computes the
same outcomes in SQL (one pass over the cohort), and tests/integration/test_tb_report.py holds the two equal
on random cohorts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from care import tb
from care.tb import DoseStatus, Outcome, SputumResult, TbCase
from care.tb_import import ImportedCase
from db import audit, patients, reviews
from db.audit import Actor
from db.errors import Conflict, DbError, NotFound


@dataclass(frozen=True)
class CaseRecord:
    id: int
    patient_id: int
    facility_id: int
    register_ref: str | None
    case: TbCase
    site: str
    registration_type: str
    doses: dict[date, DoseStatus]
    outcome_override_reason: str | None


@dataclass(frozen=True)
class NewCase:
    registered_on: date
    regimen: str
    bacteriologically_confirmed: bool
    site: str = tb.Site.pulmonary
    registration_type: str = tb.RegistrationType.new
    diagnosed_on: date | None = None
    started_on: date | None = None
    register_ref: str | None = None


def _regimen(code: str) -> tb.Regimen:
    regimen = tb.REGIMENS.get(code)
    if regimen is None:
        raise DbError("unknown_regimen", f"unknown regimen {code!r}; known: {', '.join(tb.REGIMENS)}")
    return regimen


async def register(con: asyncpg.Connection, actor: Actor, patient_id: int, facility_id: int, new: NewCase) -> int:
    """A new case in the register (audited `tb.register`)."""
    regimen = _regimen(new.regimen)
    async with con.transaction():
        case_id: int = await con.fetchval(
            """INSERT INTO tb_case (patient_id, facility_id, register_ref, registered_on, diagnosed_on, site,
                                    registration_type, bacteriologically_confirmed, regimen, regimen_months,
                                    started_on)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
            patient_id, facility_id, new.register_ref, new.registered_on, new.diagnosed_on, str(new.site),
            str(new.registration_type), new.bacteriologically_confirmed, regimen.code, regimen.total_months,
            new.started_on)
        await audit.record(con, actor, "tb.register", "tb_case", case_id, {"regimen": regimen.code})
    return case_id


async def _locked(con: asyncpg.Connection, case_id: int) -> asyncpg.Record:
    row = await con.fetchrow("SELECT * FROM tb_case WHERE id = $1 FOR UPDATE", case_id)
    if row is None:
        raise NotFound("TB case", case_id)
    return row


def _ended_on(row: asyncpg.Record) -> date | None:
    """The day after which nothing more can be recorded: death or transfer out."""
    days = [d for d in (row["died_on"], row["transferred_out_on"]) if d is not None]
    return min(days) if days else None


async def start_treatment(con: asyncpg.Connection, actor: Actor, case_id: int, started_on: date,
                          today: date) -> None:
    """Set the treatment start (audited `tb.start`); refused in the future or when already started."""
    async with con.transaction():
        row = await _locked(con, case_id)
        if started_on > today:
            raise DbError("in_future", f"treatment start {started_on} is after today ({today})")
        if row["started_on"] is not None and row["started_on"] != started_on:
            raise Conflict("already_started", f"treatment already started on {row['started_on']}")
        await con.execute("UPDATE tb_case SET started_on = $2 WHERE id = $1", case_id, started_on)
        await audit.record(con, actor, "tb.start", "tb_case", case_id, {"started_on": started_on.isoformat()})


def _check_dose_day(row: asyncpg.Record, day: date, today: date) -> None:
    if day > today:
        raise DbError("in_future", f"a dose dated {day} is after today ({today})")
    if row["started_on"] is None:
        raise Conflict("not_started", "treatment has not started; record its start first")
    if day < row["started_on"]:
        raise DbError("before_start", f"a dose dated {day} is before the treatment start ({row['started_on']})")
    ended = _ended_on(row)
    if ended is not None and day > ended:
        raise Conflict("case_ended", f"the case ended on {ended}")


async def record_dose(con: asyncpg.Connection, actor: Actor, case_id: int, day: date, status: DoseStatus,
                      today: date) -> None:
    """Record (or correct) one day of the calendar (audited `tb.dose`)."""
    async with con.transaction():
        row = await _locked(con, case_id)
        _check_dose_day(row, day, today)
        await con.execute(
            """INSERT INTO tb_dose (case_id, taken_on, status) VALUES ($1, $2, $3)
               ON CONFLICT (case_id, taken_on) DO UPDATE SET status = EXCLUDED.status, recorded_at = now()""",
            case_id, day, str(status))
        await audit.record(con, actor, "tb.dose", "tb_case", case_id, {"on": day.isoformat(), "status": str(status)})


async def record_sputum(con: asyncpg.Connection, actor: Actor, case_id: int, day: date, positive: bool,
                        today: date) -> int:
    """A sputum result (audited `tb.sputum`). Refused after the case ended (death, transfer out) or later than
    the last-month window (planned end + 14 days): error `case_ended`."""
    async with con.transaction():
        row = await _locked(con, case_id)
        if day > today:
            raise DbError("in_future", f"a result dated {day} is after today ({today})")
        ended = _ended_on(row)
        if row["started_on"] is not None:
            last = tb.add_months(row["started_on"], row["regimen_months"]) + timedelta(days=tb.CURE_WINDOW_AFTER)
            ended = min(ended, last) if ended else last
        if ended is not None and day > ended:
            raise Conflict("case_ended", f"the case ended on {ended}; a result dated {day} cannot be added")
        result_id: int = await con.fetchval(
            "INSERT INTO tb_sputum (case_id, taken_on, positive) VALUES ($1, $2, $3) RETURNING id",
            case_id, day, positive)
        await audit.record(con, actor, "tb.sputum", "tb_case", case_id, {"on": day.isoformat()})
    return result_id


async def record_end(con: asyncpg.Connection, actor: Actor, case_id: int, event: str, day: date) -> None:
    """A death (`died`) or a transfer out (`transferred_out`) on `day` (audited `tb.died` / `tb.transferred_out`)."""
    column = {"died": "died_on", "transferred_out": "transferred_out_on"}.get(event)
    if column is None:
        raise DbError("bad_event", f"unknown end event {event!r}")
    async with con.transaction():
        await _locked(con, case_id)
        # The column name comes from the fixed mapping above, never from input.
        await con.execute(f"UPDATE tb_case SET {column} = $2 WHERE id = $1", case_id, day)
        await audit.record(con, actor, f"tb.{event}", "tb_case", case_id, {"on": day.isoformat()})


async def change_regimen(con: asyncpg.Connection, actor: Actor, case_id: int, to_regimen: str, day: date, *,
                         for_failure: bool, reason: str, staff_id: int | None = None) -> None:
    """Change the regimen with a reason (audited `tb.regimen_change`); for failure, the outcome is failed."""
    regimen = _regimen(to_regimen)
    reason = reason.strip()
    if not reason:
        raise DbError("reason_required", "a regimen change needs a reason")
    async with con.transaction():
        row = await _locked(con, case_id)
        await con.execute(
            """INSERT INTO tb_regimen_change (case_id, changed_on, from_regimen, to_regimen, for_failure, reason,
                                              staff_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            case_id, day, row["regimen"], regimen.code, for_failure, reason[:500], staff_id)
        await con.execute("UPDATE tb_case SET regimen = $2, regimen_months = $3 WHERE id = $1",
                          case_id, regimen.code, regimen.total_months)
        await audit.record(con, actor, "tb.regimen_change", "tb_case", case_id,
                           {"from": row["regimen"], "to": regimen.code, "for_failure": for_failure,
                            "reason": reason[:500]})


async def set_outcome(con: asyncpg.Connection, actor: Actor, case_id: int, outcome: Outcome | None,
                      reason: str) -> None:
    """A clinician sets (or, with None, clears) the case's outcome, with a reason (audited `tb.outcome`)."""
    reason = reason.strip()
    if not reason:
        raise DbError("reason_required", "setting an outcome needs a reason")
    async with con.transaction():
        await _locked(con, case_id)
        await con.execute(
            "UPDATE tb_case SET outcome_override = $2, outcome_override_reason = $3 WHERE id = $1",
            case_id, str(outcome) if outcome else None, reason[:500] if outcome else None)
        await audit.record(con, actor, "tb.outcome", "tb_case", case_id,
                           {"outcome": str(outcome) if outcome else None, "reason": reason[:500]})


async def write_review(con: asyncpg.Connection, staff_id: int, case_id: int, text: str, now: datetime) -> uuid.UUID:
    """The TB specialist's review of a case, kept as a signed note version (db/reviews.py, service
    'tb_review', the case's ICD-10 code): hashed, append-only, in the patient's history. One transaction;
    audited "tb.review". Returns the consultation id."""
    reviews.checked_text(text)
    async with con.transaction():
        row = await _locked(con, case_id)
        signed = await reviews.sign_review(
            con, patient_id=row["patient_id"], facility_id=row["facility_id"], staff_id=staff_id,
            service="tb_review", text=text,
            diagnoses=(tb.icd10_code(row["site"], row["bacteriologically_confirmed"]),), follow_up_on=None, now=now)
        await audit.record(con, Actor.staff(staff_id), "tb.review", "tb_case", case_id,
                           {"consultation": str(signed.consultation_id), "sha256": signed.content_sha256})
    return signed.consultation_id


_CASE_COLUMNS_NO_DOSES = """c.id, c.patient_id, c.facility_id, c.register_ref, c.registered_on, c.regimen,
    c.bacteriologically_confirmed, c.started_on, c.died_on, c.transferred_out_on, c.outcome_override,
    c.outcome_override_reason, c.site, c.registration_type,
    (SELECT min(changed_on) FROM tb_regimen_change r WHERE r.case_id = c.id AND r.for_failure) AS failure_on,
    coalesce((SELECT array_agg(ARRAY[s.taken_on::text, s.positive::text]) FROM tb_sputum s
              WHERE s.case_id = c.id), '{}') AS sputum"""
_CASE_COLUMNS = _CASE_COLUMNS_NO_DOSES + """,
    coalesce((SELECT array_agg(ARRAY[d.taken_on::text, d.status]) FROM tb_dose d
              WHERE d.case_id = c.id), '{}') AS doses"""


def _record(row: asyncpg.Record) -> CaseRecord:
    doses = {date.fromisoformat(d): DoseStatus(s) for d, s in row.get("doses", ())}
    sputum = tuple(sorted((SputumResult(date.fromisoformat(d), p == "true") for d, p in row["sputum"]),
                          key=lambda r: r.on))
    case = TbCase(row["registered_on"], row["regimen"], row["bacteriologically_confirmed"], row["started_on"],
                  frozenset(d for d, s in doses.items() if s in tb.TAKEN), sputum, row["died_on"],
                  row["transferred_out_on"], row["failure_on"],
                  Outcome(row["outcome_override"]) if row["outcome_override"] else None)
    return CaseRecord(row["id"], row["patient_id"], row["facility_id"], row["register_ref"], case, row["site"],
                      row["registration_type"], doses, row["outcome_override_reason"])


async def get(con: asyncpg.Connection, case_id: int) -> CaseRecord | None:
    row = await con.fetchrow(f"SELECT {_CASE_COLUMNS} FROM tb_case c WHERE c.id = $1", case_id)
    return _record(row) if row else None


async def cases_in_subtree(con: asyncpg.Connection, facility_id: int, *,
                           registered: tuple[date, date] | None = None, doses: bool = True) -> list[CaseRecord]:
    """Every case of the facility and those below it (registered in [first, after) if given), fully loaded;
    with `doses=False`, without their doses (what the month-2 conversion needs, not a scan of every dose)."""
    first, after = registered or (date.min, date.max)
    columns = _CASE_COLUMNS if doses else _CASE_COLUMNS_NO_DOSES
    rows = await con.fetch(
        f"""SELECT {columns} FROM tb_case c WHERE c.facility_id IN (SELECT facility_subtree($1))
            AND c.registered_on >= $2 AND c.registered_on < $3 ORDER BY c.id""",
        facility_id, first, after)
    return [_record(r) for r in rows]


async def cases_on_treatment(con: asyncpg.Connection, facility_id: int, today: date) -> list[CaseRecord]:
    """The worklist's cases: those of the facility and below whose outcome today is `still_on_treatment` (the
    report's SQL, one row per case), each with only the doses of the last 28 days and today. That is all the
    flags read: the 28-day adherence, and the missed run, which is >= 3 on the truncated days exactly when it
    is on all of them (`doses` of a record from here is that window, not the whole calendar)."""
    rows = await con.fetch(
        _OUTCOMES + f"""
        SELECT {_CASE_COLUMNS_NO_DOSES},
               coalesce((SELECT array_agg(ARRAY[d.taken_on::text, d.status]) FROM tb_dose d
                         WHERE d.case_id = c.id AND d.taken_on BETWEEN $4 - $5::int AND $4), '{{}}') AS doses
        FROM outcomes o JOIN tb_case c ON c.id = o.id
        WHERE o.outcome = 'still_on_treatment' AND c.started_on IS NOT NULL ORDER BY c.id""",
        facility_id, date.min, date.max, today, tb.ADHERENCE_WINDOW_DAYS)
    return [_record(r) for r in rows]


async def worklist_labels(con: asyncpg.Connection, case_ids: list[int]) -> dict[int, tuple[str, str]]:
    """What a worklist row shows to know the person: each case's patient name and its station's name."""
    rows = await con.fetch(
        """SELECT c.id, p.name, f.name AS facility FROM tb_case c JOIN patient p ON p.id = c.patient_id
           JOIN facility f ON f.id = c.facility_id WHERE c.id = ANY($1::bigint[])""", case_ids)
    return {r["id"]: (r["name"], r["facility"]) for r in rows}


REPORT_COLUMNS = ("facility_id", "facility", "quarter", "registered", "cured", "completed", "failed", "died",
                  "lost_to_follow_up", "not_evaluated", "still_on_treatment", "treatment_success_rate")


@dataclass(frozen=True)
class ReportRow:
    facility_id: int
    facility: str
    depth: int
    quarter: str
    registered: int
    counts: dict[Outcome, int]

    @property
    def success_rate(self) -> float | None:
        return tb.treatment_success_rate(self.counts, self.registered)


# The outcome rules of care/tb.py (CLINICAL.md "Operational rules"), per case of the cohort, as of $4.
# `s` is the start if it happened by $4; `pe` its planned end. The 60-day gap is the case's `gap_lost_on`,
# kept by triggers as doses are written (migration 0020): "longest gap in [s, least($4, pe)] >= 60" is
# exactly "gap_lost_on <= $4", so the report reads one row per case and no dose.
_COHORT = """
WITH RECURSIVE tree(id, name, path) AS (
    SELECT id, name, ARRAY[id] FROM facility WHERE id = $1
    UNION ALL SELECT f.id, f.name, t.path || f.id FROM facility f JOIN tree t ON f.parent_id = t.id
), cohort AS (
    SELECT c.id, c.facility_id, c.registered_on, c.bacteriologically_confirmed, c.died_on, c.transferred_out_on,
           c.outcome_override, k.s, (k.s + make_interval(months => c.regimen_months))::date AS pe,
           (c.started_on + make_interval(months => c.regimen_months))::date AS pe_any,
           c.gap_lost_on, c.taken_in_course, f.failure_on
    FROM tb_case c CROSS JOIN LATERAL (SELECT CASE WHEN c.started_on <= $4 THEN c.started_on END AS s) k
    LEFT JOIN (SELECT case_id, min(changed_on) AS failure_on FROM tb_regimen_change WHERE for_failure
               GROUP BY case_id) f ON f.case_id = c.id
    WHERE c.facility_id IN (SELECT id FROM tree) AND c.registered_on >= $2 AND c.registered_on < $3
)"""

_OUTCOMES = _COHORT + """, smears AS (
    SELECT k.id,
           bool_or(r.positive AND r.taken_on >= (k.s + make_interval(months => 4))::date) AS positive_m5,
           min(r.taken_on) FILTER (WHERE NOT r.positive) AS first_negative,
           min(r.taken_on) FILTER (WHERE NOT r.positive AND r.taken_on BETWEEN k.pe - 30 AND k.pe + 14)
               AS last_month_negative
    FROM cohort k JOIN tb_sputum r ON r.case_id = k.id AND r.taken_on <= $4
    GROUP BY k.id
), outcomes AS MATERIALIZED (
    SELECT k.id, k.facility_id, CASE
        WHEN k.outcome_override IS NOT NULL THEN k.outcome_override
        WHEN k.died_on <= $4 AND (k.pe_any IS NULL OR k.died_on <= k.pe_any) THEN 'died'
        WHEN k.transferred_out_on <= $4 THEN 'not_evaluated'
        WHEN k.failure_on <= $4 OR coalesce(m.positive_m5, false) THEN 'failed'
        WHEN (k.s IS NULL AND $4 > k.registered_on + 60) OR k.s > k.registered_on + 60
             OR (k.s IS NOT NULL AND k.gap_lost_on <= $4) THEN 'lost_to_follow_up'
        WHEN k.bacteriologically_confirmed AND k.pe <= $4 AND m.first_negative < m.last_month_negative
            THEN 'cured'
        WHEN k.pe <= $4 THEN 'completed'
        ELSE 'still_on_treatment' END AS outcome
    FROM cohort k LEFT JOIN smears m ON m.id = k.id
)
"""

# Counted per facility first (a few rows per facility), then rolled up the tree.
_REPORT = _OUTCOMES + """, counted AS (
    SELECT facility_id, outcome, count(*) AS n FROM outcomes GROUP BY facility_id, outcome
)
SELECT t.id, t.name, cardinality(t.path) - 1 AS depth, o.outcome, coalesce(sum(o.n), 0)::bigint AS n
FROM tree t
LEFT JOIN tree below ON t.id = ANY(below.path)
LEFT JOIN counted o ON o.facility_id = below.id
GROUP BY t.id, t.name, t.path, o.outcome
ORDER BY t.path
"""


async def cohort_report(con: asyncpg.Connection, facility_id: int, quarter: str, as_of: date) -> list[ReportRow]:
    """The quarterly cohort report for the facility and each facility below it, each counting its own cases and
    those below; rows in tree order. DbError `not_found` for an unknown facility."""
    first, after = tb.parse_quarter(quarter)
    rows = await con.fetch(_REPORT, facility_id, first, after, as_of)
    if not rows:
        raise NotFound("facility", facility_id)
    out: dict[int, ReportRow] = {}
    for r in rows:
        row = out.setdefault(r["id"], ReportRow(r["id"], r["name"], r["depth"], quarter, 0,
                                                dict.fromkeys(Outcome, 0)))
        if r["outcome"] is not None:
            row.counts[Outcome(r["outcome"])] += r["n"]
            out[r["id"]] = ReportRow(row.facility_id, row.facility, row.depth, quarter, row.registered + r["n"],
                                     row.counts)
    return list(out.values())


_ADHERENCE = _COHORT + """, shares AS (
    -- After the planned end, the kept count; before it (a case still running as of $4), its doses so far.
    SELECT CASE WHEN $4 >= k.pe THEN k.taken_in_course
                ELSE (SELECT count(*) FROM tb_dose d WHERE d.case_id = k.id AND d.taken_on >= k.s
                      AND d.taken_on < $4 AND d.status <> 'missed')::int END AS taken,
           least($4 - 1, k.pe - 1) - k.s + 1 AS days
    FROM cohort k WHERE k.s < $4
)
SELECT CASE WHEN 10 * taken < 8 * days THEN 'under_80' WHEN 10 * taken < 9 * days THEN '80_to_89'
            ELSE '90_and_over' END AS band, count(*) AS n
FROM shares GROUP BY 1
"""


async def adherence_distribution(con: asyncpg.Connection, facility_id: int, quarter: str,
                                 as_of: date) -> dict[str, int]:
    """care.tb.adherence_distribution of the quarter's cohort in the facility and below, in SQL: cases by
    overall adherence band (the bands of care.tb.ADHERENCE_BANDS, compared in integers)."""
    first, after = tb.parse_quarter(quarter)
    rows = await con.fetch(_ADHERENCE, facility_id, first, after, as_of)
    counts = {band: 0 for band, _ in tb.ADHERENCE_BANDS}
    counts.update({r["band"]: r["n"] for r in rows})
    return counts


async def case_outcomes(con: asyncpg.Connection, facility_id: int, quarter: str,
                        as_of: date) -> dict[int, Outcome]:
    """Each cohort case's outcome as the report's SQL computes it (tests compare it case by case)."""
    first, after = tb.parse_quarter(quarter)
    rows = await con.fetch(_OUTCOMES + "SELECT id, outcome FROM outcomes", facility_id, first, after, as_of)
    return {r["id"]: Outcome(r["outcome"]) for r in rows}


async def import_cases(con: asyncpg.Connection, actor: Actor, facility_id: int,
                       cases: list[ImportedCase]) -> list[int]:
    """Create the patients and their cases (ids returned in order) with every event, in one transaction
    with one audit event (`tb.import`); nothing is written when a `patient_ref` is already in the facility's
    register (DbError `already_registered`, naming the refs) or the facility does not exist (`not_found`)."""
    async with con.transaction():
        if not await con.fetchval("SELECT EXISTS (SELECT 1 FROM facility WHERE id = $1)", facility_id):
            raise NotFound("facility", facility_id)
        taken = await con.fetch(
            "SELECT register_ref FROM tb_case WHERE facility_id = $1 AND register_ref = ANY($2::text[])",
            facility_id, [c.register_ref for c in cases])
        if taken:
            refs = sorted(r["register_ref"] for r in taken)
            raise Conflict("already_registered", f"patient_ref already in this facility's register: {', '.join(refs)}")
        doses: list[tuple[int, date, str]] = []
        ids: list[int] = []
        sputum: list[tuple[int, date, bool]] = []
        for c in cases:
            patient_id = await patients.create(con, facility_id=facility_id, name=c.name, sex=c.sex,
                                               birth_year=c.birth_year, phone=c.phone)
            regimen = _regimen(c.regimen)
            case_id: int = await con.fetchval(
                """INSERT INTO tb_case (patient_id, facility_id, register_ref, registered_on,
                                        bacteriologically_confirmed, regimen, regimen_months, started_on, died_on,
                                        transferred_out_on)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
                patient_id, facility_id, c.register_ref, c.registered_on, c.bacteriologically_confirmed,
                regimen.code, regimen.total_months, c.started_on, c.died_on, c.transferred_out_on)
            ids.append(case_id)
            if c.failure_on is not None:
                await con.execute(
                    """INSERT INTO tb_regimen_change (case_id, changed_on, from_regimen, to_regimen, for_failure,
                                                      reason)
                       VALUES ($1, $2, $3, $3, true, 'imported: regimen changed for failure')""",
                    case_id, c.failure_on, regimen.code)
            doses += [(case_id, d, str(s)) for d, s in c.doses.items()]
            sputum += [(case_id, r.on, r.positive) for r in c.sputum]
        if doses:
            await con.copy_records_to_table("tb_dose", records=doses, columns=("case_id", "taken_on", "status"))
        if sputum:
            await con.copy_records_to_table("tb_sputum", records=sputum, columns=("case_id", "taken_on", "positive"))
        await audit.record(con, actor, "tb.import", "facility", facility_id,
                           {"cases": len(cases), "doses": len(doses), "sputum": len(sputum)})
    return ids


# --- Video-observed doses -----------------------------------------------------------------------------------


async def case_for_patient(con: asyncpg.Connection, patient_id: int) -> CaseRecord | None:
    """The patient's current case: the latest one not ended by death or transfer out."""
    row = await con.fetchrow(
        f"""SELECT {_CASE_COLUMNS} FROM tb_case c
            WHERE c.patient_id = $1 AND c.died_on IS NULL AND c.transferred_out_on IS NULL
            ORDER BY c.registered_on DESC, c.id DESC LIMIT 1""", patient_id)
    return _record(row) if row else None


@dataclass(frozen=True)
class Upload:
    id: uuid.UUID
    case_id: int
    dose_on: date
    size: int
    replace: bool
    clip_id: int | None


def _upload(row: asyncpg.Record) -> Upload:
    return Upload(row["id"], row["case_id"], row["dose_on"], row["size"], row["replace"], row["clip_id"])


async def begin_upload(con: asyncpg.Connection, case_id: int, dose_on: date, size: int, today: date, *,
                       replace: bool = False) -> Upload:
    """A new upload for the day's clip. DbError `in_future`, `before_start`, `not_started`, `case_ended`."""
    async with con.transaction():
        row = await _locked(con, case_id)
        _check_dose_day(row, dose_on, today)
        upload = await con.fetchrow(
            "INSERT INTO tb_upload (id, case_id, dose_on, size, replace) VALUES ($1, $2, $3, $4, $5) RETURNING *",
            uuid.uuid4(), case_id, dose_on, size, replace)
    return _upload(upload)


async def get_upload(con: asyncpg.Connection, upload_id: uuid.UUID) -> Upload | None:
    row = await con.fetchrow("SELECT * FROM tb_upload WHERE id = $1", upload_id)
    return _upload(row) if row else None


@dataclass(frozen=True)
class StoredClip:
    sha256: str
    path: str  # relative to the data dir
    sheet_path: str
    bytes: int
    duration_s: float
    width: int
    height: int


async def store_clip(con: asyncpg.Connection, actor: Actor, upload_id: uuid.UUID, clip: StoredClip) -> tuple[int, bool]:
    """Record a checked clip for its upload's day (audited `tb.clip`): (clip id, whether it is the day's clip
    under review). The first clip of a day is; a second one is kept but not reviewed unless the upload asked to
    replace the first (and the first is still pending). The day becomes `video_pending` with its current clip.
    Idempotent: an upload stored already returns its clip."""
    async with con.transaction():
        upload = await con.fetchrow("SELECT * FROM tb_upload WHERE id = $1 FOR UPDATE", upload_id)
        if upload is None:
            raise NotFound("upload", upload_id)
        if upload["clip_id"] is not None:
            current = await con.fetchval("SELECT current FROM tb_clip WHERE id = $1", upload["clip_id"])
            return upload["clip_id"], bool(current)
        await _locked(con, upload["case_id"])
        existing = await con.fetchrow(
            "SELECT id, review FROM tb_clip WHERE case_id = $1 AND dose_on = $2 AND current FOR UPDATE",
            upload["case_id"], upload["dose_on"])
        current = existing is None or (upload["replace"] and existing["review"] == "pending")
        if current and existing is not None:
            await con.execute("UPDATE tb_clip SET current = false WHERE id = $1", existing["id"])
        clip_id: int = await con.fetchval(
            """INSERT INTO tb_clip (case_id, dose_on, sha256, path, sheet_path, bytes, duration_s, width, height,
                                    current)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
            upload["case_id"], upload["dose_on"], clip.sha256, clip.path, clip.sheet_path, clip.bytes,
            clip.duration_s, clip.width, clip.height, current)
        await con.execute("UPDATE tb_upload SET clip_id = $2 WHERE id = $1", upload_id, clip_id)
        if current:
            await con.execute(
                """INSERT INTO tb_dose (case_id, taken_on, status) VALUES ($1, $2, 'video_pending')
                   ON CONFLICT (case_id, taken_on) DO UPDATE SET status = 'video_pending', recorded_at = now()""",
                upload["case_id"], upload["dose_on"])
        await audit.record(con, actor, "tb.clip", "tb_case", upload["case_id"],
                           {"clip": clip_id, "on": upload["dose_on"].isoformat(), "current": current,
                            "sha256": clip.sha256})
    return clip_id, current


@dataclass(frozen=True)
class Clip:
    id: int
    case_id: int
    patient_id: int
    facility_id: int
    dose_on: date
    path: str
    sheet_path: str
    duration_s: float
    current: bool
    review: str
    review_reason: str | None
    deleted: bool


_CLIP = """SELECT k.id, k.case_id, c.patient_id, c.facility_id, k.dose_on, k.path, k.sheet_path, k.duration_s,
                  k.current, k.review, k.review_reason, k.deleted_at IS NOT NULL AS deleted
           FROM tb_clip k JOIN tb_case c ON c.id = k.case_id"""


def _clip(row: asyncpg.Record) -> Clip:
    return Clip(*row.values())


async def get_clip(con: asyncpg.Connection, clip_id: int) -> Clip | None:
    row = await con.fetchrow(_CLIP + " WHERE k.id = $1", clip_id)
    return _clip(row) if row else None


async def pending_clips(con: asyncpg.Connection, facility_id: int, limit: int = 100) -> list[Clip]:
    """Clips waiting for review in the facility and those below it, oldest day first."""
    rows = await con.fetch(
        _CLIP + """ WHERE k.current AND k.review = 'pending' AND k.deleted_at IS NULL
                    AND c.facility_id IN (SELECT facility_subtree($1)) ORDER BY k.dose_on, k.id LIMIT $2""",
        facility_id, limit)
    return [_clip(r) for r in rows]


async def review_clip(con: asyncpg.Connection, staff_id: int, clip_id: int, confirmed: bool, reason: str) -> None:
    """Confirm or reject the day's clip (audited `tb.clip_review`): the day becomes `video` or `missed`.
    A rejection needs a reason. Conflict `already_reviewed`, `not_current` (a kept second clip)."""
    reason = reason.strip()
    if not confirmed and not reason:
        raise DbError("reason_required", "rejecting a clip needs a reason")
    async with con.transaction():
        row = await con.fetchrow("SELECT * FROM tb_clip WHERE id = $1 FOR UPDATE", clip_id)
        if row is None:
            raise NotFound("clip", clip_id)
        if not row["current"]:
            raise Conflict("not_current", "this clip is a second clip for its day; the first one is reviewed")
        if row["review"] != "pending":
            raise Conflict("already_reviewed", f"the clip was already {row['review']}")
        review = "confirmed" if confirmed else "rejected"
        await con.execute(
            """UPDATE tb_clip SET review = $2, review_reason = $3, reviewed_by = $4, reviewed_at = now()
               WHERE id = $1""", clip_id, review, reason[:500] or None, staff_id)
        await con.execute("UPDATE tb_dose SET status = $3, recorded_at = now() WHERE case_id = $1 AND taken_on = $2",
                          row["case_id"], row["dose_on"], "video" if confirmed else "missed")
        await audit.record(con, Actor.staff(staff_id), "tb.clip_review", "tb_case", row["case_id"],
                           {"clip": clip_id, "review": review, "reason": reason[:500]})


async def expired_clips(con: asyncpg.Connection, reviewed_before: datetime) -> list[tuple[int, str, str]]:
    """(id, path, sheet path) of reviewed clips whose review is older than the retention limit."""
    rows = await con.fetch(
        """SELECT id, path, sheet_path FROM tb_clip
           WHERE deleted_at IS NULL AND reviewed_at IS NOT NULL AND reviewed_at < $1 ORDER BY id""",
        reviewed_before)
    return [(r["id"], r["path"], r["sheet_path"]) for r in rows]


async def mark_clip_deleted(con: asyncpg.Connection, clip_id: int, retention_days: int) -> None:
    """The clip's files are gone (retention): record it (audited `tb.clip_deleted` by the system)."""
    async with con.transaction():
        case_id = await con.fetchval(
            "UPDATE tb_clip SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING case_id", clip_id)
        if case_id is not None:
            await audit.record(con, audit.SYSTEM, "tb.clip_deleted", "tb_case", case_id,
                               {"clip": clip_id, "retention_days": retention_days})


async def path_in_use(con: asyncpg.Connection, path: str) -> bool:
    """Another clip not deleted still points at this content-addressed file."""
    return bool(await con.fetchval("SELECT EXISTS (SELECT 1 FROM tb_clip WHERE path = $1 AND deleted_at IS NULL)",
                                   path))


async def clip_reviews(con: asyncpg.Connection, case_id: int) -> dict[date, tuple[str, str | None]]:
    """Each day's reviewed-or-pending clip: (review, reason), for the patient's calendar."""
    rows = await con.fetch("SELECT dose_on, review, review_reason FROM tb_clip WHERE case_id = $1 AND current",
                           case_id)
    return {r["dose_on"]: (r["review"], r["review_reason"]) for r in rows}
