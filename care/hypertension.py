"""Hypertension register: the indicators a HEARTS programme reads, as pure, named functions.

Every definition follows ../shared/CLINICAL.md ("Hypertension follow-up", "Operational rules"), which
follows Simple.org's reporting_patient_states and the DHIS2 hypertension package; each function cites its
source in one line. db/hypertension.py computes the same indicators in SQL for the dashboards, and an
integration test holds the two equal on random cohorts.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import IntEnum, StrEnum


class HypertensionError(ValueError):
    """A refused input, naming the field (`systolic`, `diastolic`, `taken_on`, …)."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True, order=True)
class Month:
    """A reference month; every window is measured back from its last day."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1900 <= self.year <= 2200:
            raise HypertensionError("bad_month", "month", f"month must be YYYY-MM, got {self.year}-{self.month}")

    @classmethod
    def parse(cls, text: str) -> Month:
        """'2026-03' → Month(2026, 3); anything else is refused naming the field."""
        parts = text.strip().split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or len(parts[0]) != 4 or len(parts[1]) != 2:
            raise HypertensionError("bad_month", "month", f"month must be YYYY-MM, got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Reading:
    """One blood pressure reading; `id` orders two readings of the same day (the later entry wins)."""

    taken_on: date
    systolic: int
    diastolic: int
    id: int = 0


@dataclass(frozen=True)
class PatientHistory:
    """What the indicators need about one enrolled patient: every dated event, whenever it was entered."""

    registered_on: date
    readings: tuple[Reading, ...] = ()
    # Visits without a BP: a station visit with no reading, a prescription changed, an appointment booked.
    other_visits: tuple[date, ...] = ()
    died_on: date | None = None
    drugs: int = 0
    next_visit_on: date | None = None


# --- bounds -----------------------------------------------------------------------------------------

# DHIS2 hypertension package (validation rules): systolic 60–260, diastolic 40–260, systolic > diastolic.
SYSTOLIC_BOUNDS = (60, 260)
DIASTOLIC_BOUNDS = (40, 260)


def check_reading(systolic: int, diastolic: int) -> None:
    """Refuse an impossible reading, naming the field (CLINICAL.md bounds, from the DHIS2 package)."""
    low, high = SYSTOLIC_BOUNDS
    if not low <= systolic <= high:
        raise HypertensionError("impossible_reading", "systolic",
                                f"systolic must be between {low} and {high} mmHg, got {systolic}")
    low, high = DIASTOLIC_BOUNDS
    if not low <= diastolic <= high:
        raise HypertensionError("impossible_reading", "diastolic",
                                f"diastolic must be between {low} and {high} mmHg, got {diastolic}")
    if systolic <= diastolic:
        raise HypertensionError("impossible_reading", "systolic",
                                f"systolic ({systolic}) must be higher than diastolic ({diastolic})")


# --- control and urgency ----------------------------------------------------------------------------

def controlled(systolic: int, diastolic: int) -> bool:
    """BP < 140/90: systolic < 140 and diastolic < 90 (WHO HEARTS; Simple's bp_controlled)."""
    return systolic < 140 and diastolic < 90


def urgent(systolic: int, diastolic: int) -> bool:
    """BP ≥ 180/110: same-day review (CLINICAL.md; triage NC3, care/triage.py's bp_urgent_*)."""
    return systolic >= 180 or diastolic >= 110


# --- windows ----------------------------------------------------------------------------------------

def months_since(month: Month, day: date) -> int:
    """(M.year − d.year) × 12 + (M.month − d.month): Simple's calendar-month difference."""
    return (month.year - day.year) * 12 + (month.month - day.month)


def _known(month: Month, days: Iterable[date]) -> list[date]:
    """Events dated after the end of the month do not exist yet (CLINICAL.md operational rules)."""
    end = month.last_day
    return [d for d in days if d <= end]


def latest_reading(history: PatientHistory, month: Month) -> Reading | None:
    """The latest BP dated on or before the end of the month (same day: the later entry)."""
    end = month.last_day
    known = [r for r in history.readings if r.taken_on <= end]
    return max(known, key=lambda r: (r.taken_on, r.id)) if known else None


def latest_visit(history: PatientHistory, month: Month) -> date | None:
    """A visit is the latest of a BP, a prescription change, an appointment booked (Simple)."""
    known = _known(month, [r.taken_on for r in history.readings] + list(history.other_visits))
    return max(known) if known else None


# --- patient states (Simple's reporting_patient_states) ---------------------------------------------

def dead(history: PatientHistory, month: Month) -> bool:
    """Died on or before the end of the month."""
    return history.died_on is not None and history.died_on <= month.last_day


def registered(history: PatientHistory, month: Month) -> bool:
    """Registered on or before the end of the month and not dead (CLINICAL.md operational rules)."""
    return history.registered_on <= month.last_day and not dead(history, month)


def under_care(history: PatientHistory, month: Month) -> bool:
    """Not dead; registered < 12 months ago or a visit < 12 months ago (Simple's htn_care_state)."""
    if not registered(history, month):
        return False
    visit = latest_visit(history, month)
    return months_since(month, history.registered_on) < 12 or (visit is not None and months_since(month, visit) < 12)


def lost_to_follow_up(history: PatientHistory, month: Month) -> bool:
    """Registered, not dead, not under care: no visit and no registration in the last 12 months (Simple)."""
    return registered(history, month) and not under_care(history, month)


def in_denominator(history: PatientHistory, month: Month) -> bool:
    """Under care and registered ≥ 3 calendar months before the month (Simple's adjusted registrations)."""
    return under_care(history, month) and months_since(month, history.registered_on) >= 3


class Bucket(StrEnum):
    """The four mutually exclusive outcomes over the denominator, tested in this order (Simple)."""

    MISSED_VISIT = "missed_visit"
    VISITED_NO_BP = "visited_no_bp"
    CONTROLLED = "controlled"
    UNCONTROLLED = "uncontrolled"


def bucket(history: PatientHistory, month: Month) -> Bucket | None:
    """The patient's bucket for the month, or None outside the denominator (Simple's htn_treatment_outcome)."""
    if not in_denominator(history, month):
        return None
    visit = latest_visit(history, month)
    if visit is None or months_since(month, visit) >= 3:
        return Bucket.MISSED_VISIT
    reading = latest_reading(history, month)
    if reading is None or months_since(month, reading.taken_on) >= 3:
        return Bucket.VISITED_NO_BP
    return Bucket.CONTROLLED if controlled(reading.systolic, reading.diastolic) else Bucket.UNCONTROLLED


@dataclass(frozen=True)
class MonthlyIndicators:
    """One facility's counts for one month (the report's columns after facility and month)."""

    registered: int = 0
    under_care: int = 0
    lost_to_follow_up: int = 0
    dead: int = 0
    denominator: int = 0
    controlled: int = 0
    uncontrolled: int = 0
    missed_visit: int = 0
    visited_no_bp: int = 0

    def rate(self, count: int) -> float | None:
        """count / denominator, None when nobody is in the denominator."""
        return count / self.denominator if self.denominator else None


COLUMNS = ("registered", "under_care", "lost_to_follow_up", "dead", "denominator",
           "controlled", "uncontrolled", "missed_visit", "visited_no_bp")


def monthly_indicators(histories: Iterable[PatientHistory], month: Month) -> MonthlyIndicators:
    """The monthly indicators over a cohort (each patient counted once, in one bucket)."""
    counts = dict.fromkeys(COLUMNS, 0)
    for h in histories:
        if h.registered_on > month.last_day:
            continue
        if dead(h, month):
            counts["dead"] += 1
            continue
        counts["registered"] += 1
        counts["under_care" if under_care(h, month) else "lost_to_follow_up"] += 1
        outcome = bucket(h, month)
        if outcome is not None:
            counts["denominator"] += 1
            counts[outcome.value] += 1
    return MonthlyIndicators(**counts)


# --- quarterly cohort -------------------------------------------------------------------------------

def quarter_of(day: date) -> tuple[int, int]:
    """(year, quarter 1–4)."""
    return day.year, (day.month - 1) // 3 + 1


def quarter_months(year: int, quarter: int) -> tuple[Month, Month, Month]:
    first = Month(year, 3 * (quarter - 1) + 1)
    return first, first.plus(1), first.plus(2)


def cohort_outcome(history: PatientHistory, year: int, quarter: int) -> Bucket | None:
    """Registered in quarter Q, judged by the latest visit in Q+1 (Simple's quarterly cohort report).

    None when not registered in Q, or dead by the end of Q+1 (reported apart, as Simple does).
    """
    if quarter_of(history.registered_on) != (year, quarter):
        return None
    start = quarter_months(year, quarter)[2].plus(1)
    end = start.plus(2)
    if dead(history, end):
        return None
    lo, hi = start.first_day, end.last_day
    visits = [r.taken_on for r in history.readings if lo <= r.taken_on <= hi]
    visits += [d for d in history.other_visits if lo <= d <= hi]
    if not visits:
        return Bucket.MISSED_VISIT
    readings = [r for r in history.readings if lo <= r.taken_on <= hi]
    if not readings:
        return Bucket.VISITED_NO_BP
    last = max(readings, key=lambda r: (r.taken_on, r.id))
    return Bucket.CONTROLLED if controlled(last.systolic, last.diastolic) else Bucket.UNCONTROLLED


def quarterly_cohort(histories: Iterable[PatientHistory], year: int, quarter: int) -> dict[Bucket, int]:
    """Counts of each outcome for the cohort registered in (year, quarter)."""
    counts = dict.fromkeys(Bucket, 0)
    for h in histories:
        outcome = cohort_outcome(h, year, quarter)
        if outcome is not None:
            counts[outcome] += 1
    return counts


# --- follow-up, overdue and the specialist's worklist ----------------------------------------------

NEXT_VISIT_DAYS = 28      # DHIS2 hypertension package default follow-up interval.
RETURN_TO_CARE_DAYS = 15  # Simple: a BP recorded within 15 days of the call/reminder = returned to care.
MANY_DRUGS = 3            # HEARTS: on ≥ 3 antihypertensives and still uncontrolled → specialist review.


def overdue(next_visit_on: date | None, last_visit_on: date | None, today: date) -> bool:
    """A scheduled visit date has passed with no visit on or after it (Simple's overdue list)."""
    if next_visit_on is None or next_visit_on >= today:
        return False
    return last_visit_on is None or last_visit_on < next_visit_on


def returned_to_care(called_on: date, readings_on: Iterable[date]) -> bool:
    """A BP recorded within 15 days after the call or reminder (Simple's returned-to-care)."""
    return any(0 <= (d - called_on).days <= RETURN_TO_CARE_DAYS for d in readings_on)


class Reason(IntEnum):
    """Why a patient is on the specialist's worklist; a lower value is more severe (sorted first)."""

    URGENT = 1             # latest BP ≥ 180/110
    MANY_DRUGS = 2         # ≥ 3 drugs and still uncontrolled
    UNCONTROLLED_TWICE = 3  # uncontrolled at two consecutive visits
    OVERDUE = 4            # scheduled visit passed with no visit

    @property
    def code(self) -> str:
        return self.name.lower()


def visit_readings(readings: Sequence[Reading]) -> list[Reading]:
    """One reading per visit day (the day's latest entry), oldest first."""
    by_day: dict[date, Reading] = {}
    for r in sorted(readings, key=lambda r: (r.taken_on, r.id)):
        by_day[r.taken_on] = r
    return [by_day[d] for d in sorted(by_day)]


def worklist_reasons(history: PatientHistory, today: date) -> list[Reason]:
    """The CLINICAL.md worklist reasons that apply today, most severe first."""
    per_visit = visit_readings([r for r in history.readings if r.taken_on <= today])
    if history.died_on is not None and history.died_on <= today:
        return []
    reasons: list[Reason] = []
    latest = per_visit[-1] if per_visit else None
    if latest is not None and urgent(latest.systolic, latest.diastolic):
        reasons.append(Reason.URGENT)
    if latest is not None and history.drugs >= MANY_DRUGS and not controlled(latest.systolic, latest.diastolic):
        reasons.append(Reason.MANY_DRUGS)
    if len(per_visit) >= 2 and not any(controlled(r.systolic, r.diastolic) for r in per_visit[-2:]):
        reasons.append(Reason.UNCONTROLLED_TWICE)
    visits = [r.taken_on for r in per_visit] + [d for d in history.other_visits if d <= today]
    if overdue(history.next_visit_on, max(visits) if visits else None, today):
        reasons.append(Reason.OVERDUE)
    return reasons


@dataclass(frozen=True, order=True)
class WorklistRow:
    """Sort key first: the most severe reason, then the highest latest systolic, then the patient id."""

    severity: int
    minus_systolic: int
    patient_id: int
    reasons: tuple[Reason, ...] = field(compare=False)


def worklist(histories: Iterable[tuple[int, PatientHistory]], today: date) -> list[WorklistRow]:
    """Patients with at least one reason, sorted by severity (most severe first)."""
    rows = []
    for patient_id, h in histories:
        reasons = worklist_reasons(h, today)
        if reasons:
            per_visit = visit_readings([r for r in h.readings if r.taken_on <= today])
            systolic = per_visit[-1].systolic if per_visit else 0
            rows.append(WorklistRow(min(reasons), -systolic, patient_id, tuple(reasons)))
    return sorted(rows)


# ICD-10 I10–I15: hypertensive diseases (essential, heart, kidney, heart and kidney, secondary). A signed
# note with one of them offers enrolment in the register.
HYPERTENSION_CODES = ("I10", "I11", "I12", "I13", "I15")


def hypertension_diagnosis(code: str) -> bool:
    """An ICD-10 code in I10–I15 (I14 does not exist), with or without a subcode: I10, I11.9, I13.0."""
    return code.strip().upper().split(".")[0] in HYPERTENSION_CODES
