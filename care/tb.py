"""TB treatment register: regimens as data, the schedule that follows from a start date, adherence, the
specialist's flags and the WHO cohort outcome, as pure functions (CLINICAL.md, "Tuberculosis follow-up" and
"Operational rules for the registers' reports"). db/tb.py computes the same report in SQL; an integration
test holds the two equal on random cohorts.

Example::

    >>> start = date(2026, 1, 31)
    >>> planned_end(start, REGIMENS["2HRZE/4HR"])
    datetime.date(2026, 7, 31)
    >>> add_months(start, 1)
    datetime.date(2026, 2, 28)
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

# --- Regimens (data, not code) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str  # intensive | continuation
    months: int
    drugs: tuple[str, ...]


@dataclass(frozen=True)
class Regimen:
    code: str
    phases: tuple[Phase, ...]
    min_age: int = 0

    @property
    def total_months(self) -> int:
        return sum(p.months for p in self.phases)


# WHO consolidated guidelines, module 4 (2022): 2HRZE/4HR standard; 2HPZM/2HPM (4 months, age ≥ 12).
REGIMENS: dict[str, Regimen] = {
    "2HRZE/4HR": Regimen("2HRZE/4HR", (
        Phase("intensive", 2, ("isoniazid", "rifampicin", "pyrazinamide", "ethambutol")),
        Phase("continuation", 4, ("isoniazid", "rifampicin")))),
    "2HPZM/2HPM": Regimen("2HPZM/2HPM", (
        Phase("intensive", 2, ("isoniazid", "rifapentine", "pyrazinamide", "moxifloxacin")),
        Phase("continuation", 2, ("isoniazid", "rifapentine", "moxifloxacin"))), min_age=12),
}
DEFAULT_REGIMEN = "2HRZE/4HR"


class Site(StrEnum):
    pulmonary = "pulmonary"
    extrapulmonary = "extrapulmonary"


class RegistrationType(StrEnum):
    """WHO 2013 registration groups."""

    new = "new"
    relapse = "relapse"
    after_failure = "after_failure"
    after_loss_to_follow_up = "after_loss_to_follow_up"
    other_previously_treated = "other_previously_treated"
    transferred_in = "transferred_in"


class DoseStatus(StrEnum):
    """One day of the calendar. A rejected video becomes `missed` (the clip's review keeps the reason)."""

    in_person = "in_person"
    video = "video"  # observed by video, confirmed by a reviewer
    video_pending = "video_pending"  # clip received, not yet reviewed: counts as taken until rejected
    self_reported = "self_reported"
    missed = "missed"


TAKEN = frozenset({DoseStatus.in_person, DoseStatus.video, DoseStatus.video_pending, DoseStatus.self_reported})


class Outcome(StrEnum):
    cured = "cured"
    completed = "completed"
    failed = "failed"
    died = "died"
    lost_to_follow_up = "lost_to_follow_up"
    not_evaluated = "not_evaluated"
    still_on_treatment = "still_on_treatment"


# CLINICAL.md operational rules: when several apply, the first in this order wins.
OUTCOME_PRECEDENCE: tuple[Outcome, ...] = (
    Outcome.died, Outcome.not_evaluated, Outcome.failed, Outcome.lost_to_follow_up, Outcome.cured,
    Outcome.completed, Outcome.still_on_treatment)

# --- Calendar arithmetic ---------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """`day` + `months` calendar months: same day number, clamped to a shorter month's last day (CLINICAL.md)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def planned_end(start: date, regimen: Regimen) -> date:
    """Treatment start + the regimen's total calendar months (CLINICAL.md; 2HRZE/4HR → 6)."""
    return add_months(start, regimen.total_months)


@dataclass(frozen=True)
class PhaseDates:
    phase: Phase
    starts_on: date
    ends_on: date  # the first day after the phase (the next phase's start; the planned end for the last)


def phase_dates(start: date, regimen: Regimen) -> list[PhaseDates]:
    """Each phase's first day and end, in calendar months from the treatment start."""
    out, months = [], 0
    for phase in regimen.phases:
        out.append(PhaseDates(phase, add_months(start, months), add_months(start, months + phase.months)))
        months += phase.months
    return out


# --- Sputum follow-up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SputumResult:
    on: date
    positive: bool


# Product rule: a result counts for a test dated from 14 days before its due date; a test is overdue when
# 7 days have passed after its due date with no such result.
SPUTUM_EARLY_DAYS = 14
SPUTUM_GRACE_DAYS = 7


@dataclass(frozen=True)
class SputumTest:
    month: int  # end of this treatment month
    due_on: date
    result: SputumResult | None

    def overdue(self, as_of: date) -> bool:
        return self.result is None and as_of > self.due_on + timedelta(days=SPUTUM_GRACE_DAYS)


def _result_for(due_on: date, until: date | None, results: Sequence[SputumResult]) -> SputumResult | None:
    opens = due_on - timedelta(days=SPUTUM_EARLY_DAYS)
    found = [r for r in results if r.on >= opens and (until is None or r.on < until)]
    return min(found, key=lambda r: r.on) if found else None


def sputum_tests_due(start: date, regimen: Regimen, results: Sequence[SputumResult]) -> list[SputumTest]:
    """Smears due: end of month 2; month 3 if month 2 was positive; month 5; last month (WHO 2013, CLINICAL.md)."""
    last = regimen.total_months
    months = sorted({m for m in (2, 5, last) if m <= last})
    tests: list[SputumTest] = []
    i = 0
    while i < len(months):
        month = months[i]
        due = add_months(start, month)
        following = months[i + 1] if i + 1 < len(months) else None
        until = add_months(start, following) - timedelta(days=SPUTUM_EARLY_DAYS) if following else None
        result = _result_for(due, until, results)
        tests.append(SputumTest(month, due, result))
        if month == 2 and result is not None and result.positive and 3 not in months:
            months.insert(i + 1, 3)
        i += 1
    return tests


# --- Adherence and flags ----------------------------------------------------------------------------------

ADHERENCE_WINDOW_DAYS = 28
ADHERENCE_FLAG_BELOW = 0.90  # CLINICAL.md: pooled digital-adherence projects, ≥ 90% over 28 days
MISSED_RUN_FLAG = 3  # CLINICAL.md: ≥ 3 consecutive missed doses
PHASE_END_WITHIN_DAYS = 7  # CLINICAL.md: specialist's worklist, within 7 days of the end of a phase


def adherence(start: date, end: date, doses: Mapping[date, DoseStatus], as_of: date) -> float | None:
    """Share of days with a dose taken over the 28 full days before `as_of`, within treatment; None if none."""
    first = max(start, as_of - timedelta(days=ADHERENCE_WINDOW_DAYS))
    last = min(as_of - timedelta(days=1), end - timedelta(days=1))
    days = (last - first).days + 1
    if days <= 0:
        return None
    taken = sum(1 for d, s in doses.items() if first <= d <= last and s in TAKEN)
    return taken / days


def consecutive_missed(start: date, doses: Mapping[date, DoseStatus], as_of: date) -> int:
    """Days in a row without a dose taken, back from `as_of` (today counts only once recorded as missed)."""
    day = as_of if doses.get(as_of) == DoseStatus.missed else as_of - timedelta(days=1)
    if doses.get(as_of) in TAKEN:
        return 0
    run = 0
    while day >= start and doses.get(day) not in TAKEN:
        run, day = run + 1, day - timedelta(days=1)
    return run


class Flag(StrEnum):
    missed_doses = "missed_doses"
    low_adherence = "low_adherence"
    positive_smear = "positive_smear"
    sputum_overdue = "sputum_overdue"
    phase_ending = "phase_ending"


def positive_smear_at_month_2_or_later(start: date, results: Sequence[SputumResult]) -> bool:
    """The latest result from the month-2 test on is positive (not yet converted) (CLINICAL.md)."""
    opens = add_months(start, 2) - timedelta(days=SPUTUM_EARLY_DAYS)
    later = [r for r in results if r.on >= opens]
    return bool(later) and max(later, key=lambda r: r.on).positive


def phase_ending_within(start: date, regimen: Regimen, as_of: date, days: int = PHASE_END_WITHIN_DAYS) -> bool:
    """A phase ends within `days` days from `as_of` (its end date in [as_of, as_of + days])."""
    return any(as_of <= p.ends_on <= as_of + timedelta(days=days) for p in phase_dates(start, regimen))


def flags(start: date, regimen: Regimen, doses: Mapping[date, DoseStatus], results: Sequence[SputumResult],
          as_of: date) -> list[Flag]:
    """The specialist's flags for a case on treatment, in a fixed order (CLINICAL.md)."""
    end = planned_end(start, regimen)
    out: list[Flag] = []
    if consecutive_missed(start, doses, as_of) >= MISSED_RUN_FLAG:
        out.append(Flag.missed_doses)
    share = adherence(start, end, doses, as_of)
    if share is not None and share < ADHERENCE_FLAG_BELOW:
        out.append(Flag.low_adherence)
    if positive_smear_at_month_2_or_later(start, results):
        out.append(Flag.positive_smear)
    if any(t.overdue(as_of) for t in sputum_tests_due(start, regimen, results)):
        out.append(Flag.sputum_overdue)
    if phase_ending_within(start, regimen, as_of):
        out.append(Flag.phase_ending)
    return out


def icd10_code(site: str, bacteriologically_confirmed: bool) -> str:
    """The ICD-10 code a TB note carries for the case (WHO ICD-10 A15–A19): A15.0 pulmonary, bacteriologically
    confirmed; A16.2 pulmonary without confirmation; A18 extrapulmonary (other organs)."""
    if site == Site.extrapulmonary:
        return "A18"
    return "A15.0" if bacteriologically_confirmed else "A16.2"


# --- WHO outcome (operational rules) ----------------------------------------------------------------------

NOT_STARTED_LOST_DAYS = 60  # product rule for "did not start": not started within 60 days of registration
GAP_LOST_DAYS = 60  # product rule for "interrupted 2 consecutive months": 60 days with no dose taken
FAILURE_MONTHS = 4  # a positive dated on or after start + 4 months (month 5 or later)
CURE_WINDOW_BEFORE, CURE_WINDOW_AFTER = 30, 14  # last month of treatment: planned end − 30 … + 14 days


@dataclass(frozen=True)
class TbCase:
    """What the outcome needs of one case; events dated after the judging date are ignored."""

    registered_on: date
    regimen: str
    bacteriologically_confirmed: bool
    started_on: date | None = None
    doses_taken: frozenset[date] = field(default_factory=frozenset)
    sputum: tuple[SputumResult, ...] = ()
    died_on: date | None = None
    transferred_out_on: date | None = None
    failure_change_on: date | None = None
    outcome_override: Outcome | None = None


def longest_gap(start: date, taken: Iterable[date], until: date) -> int:
    """Most consecutive days in [start, until] with no dose taken (from the day after a dose, or the start)."""
    previous = start - timedelta(days=1)
    longest = 0
    for day in sorted(d for d in taken if start <= d <= until):
        longest = max(longest, (day - previous).days - 1)
        previous = day
    return max(longest, (until - previous).days)


def died(case: TbCase, as_of: date) -> bool:
    """A death dated before or during treatment, on or before the judging date (CLINICAL.md)."""
    if case.died_on is None or case.died_on > as_of:
        return False
    return case.started_on is None or case.died_on <= planned_end(case.started_on, REGIMENS[case.regimen])


def not_evaluated(case: TbCase, as_of: date) -> bool:
    """Transferred out, on or before the judging date (CLINICAL.md)."""
    return case.transferred_out_on is not None and case.transferred_out_on <= as_of


def failed(case: TbCase, as_of: date) -> bool:
    """A positive dated on or after start + 4 months, or the regimen changed for failure (WHO 2021)."""
    if case.failure_change_on is not None and case.failure_change_on <= as_of:
        return True
    if case.started_on is None:
        return False
    from_month_5 = add_months(case.started_on, FAILURE_MONTHS)
    return any(r.positive and from_month_5 <= r.on <= as_of for r in case.sputum)


def lost_to_follow_up(case: TbCase, as_of: date) -> bool:
    """Not started within 60 days of registration, or ≥ 60 consecutive days with no dose taken (CLINICAL.md)."""
    deadline = case.registered_on + timedelta(days=NOT_STARTED_LOST_DAYS)
    if case.started_on is None or case.started_on > as_of:
        return as_of > deadline
    if case.started_on > deadline:
        return True
    until = min(as_of, planned_end(case.started_on, REGIMENS[case.regimen]))
    return longest_gap(case.started_on, case.doses_taken, until) >= GAP_LOST_DAYS


def cured(case: TbCase, as_of: date) -> bool:
    """Confirmed at start, ended, a negative in the last month and an earlier negative (WHO 2013, CLINICAL.md)."""
    if not case.bacteriologically_confirmed or case.started_on is None:
        return False
    end = planned_end(case.started_on, REGIMENS[case.regimen])
    if end > as_of:
        return False
    negatives = sorted(r.on for r in case.sputum if not r.positive and r.on <= as_of)
    window = [d for d in negatives
              if end - timedelta(days=CURE_WINDOW_BEFORE) <= d <= end + timedelta(days=CURE_WINDOW_AFTER)]
    return bool(window) and any(d < window[0] for d in negatives)


def ended(case: TbCase, as_of: date) -> bool:
    """Started, and the planned end is on or before the judging date."""
    return case.started_on is not None and planned_end(case.started_on, REGIMENS[case.regimen]) <= as_of


def who_outcome(case: TbCase, as_of: date) -> Outcome:
    """The WHO outcome as of `as_of`: a clinician's override, else the first rule that applies (CLINICAL.md)."""
    if case.outcome_override is not None:
        return case.outcome_override
    for outcome, applies in ((Outcome.died, died), (Outcome.not_evaluated, not_evaluated),
                             (Outcome.failed, failed), (Outcome.lost_to_follow_up, lost_to_follow_up),
                             (Outcome.cured, cured), (Outcome.completed, ended)):
        if applies(case, as_of):
            return outcome
    return Outcome.still_on_treatment


# --- Quarterly cohort report ------------------------------------------------------------------------------


def parse_quarter(text: str) -> tuple[date, date]:
    """'2026-Q1' → (first day, first day of the next quarter); ValueError otherwise."""
    year, sep, q = text.partition("-Q")
    if not (sep and year.isdigit() and len(year) == 4 and q in {"1", "2", "3", "4"}):
        raise ValueError(f"quarter must look like 2026-Q1, got {text!r}")
    first = date(int(year), 3 * int(q) - 2, 1)
    return first, add_months(first, 3)


@dataclass(frozen=True)
class CohortRow:
    registered: int
    counts: dict[Outcome, int]

    @property
    def success_rate(self) -> float | None:
        return treatment_success_rate(self.counts, self.registered)


def treatment_success_rate(counts: Mapping[Outcome, int], registered: int) -> float | None:
    """(cured + completed) / cases registered in the cohort (WHO 2013); None for an empty cohort."""
    if registered == 0:
        return None
    return (counts.get(Outcome.cured, 0) + counts.get(Outcome.completed, 0)) / registered


def cohort_row(cases: Iterable[TbCase], quarter: str, as_of: date) -> CohortRow:
    """Outcome counts for the cases registered in `quarter`, judged as of `as_of`."""
    first, after = parse_quarter(quarter)
    counts = dict.fromkeys(Outcome, 0)
    registered = 0
    for case in cases:
        if first <= case.registered_on < after:
            registered += 1
            counts[who_outcome(case, as_of)] += 1
    return CohortRow(registered, counts)


# --- Cohort indicators beyond the outcomes ---------------------------------------------------------------


def month_2_conversion(cases: Iterable[TbCase]) -> tuple[int, int]:
    """(negative, tested) month-2 smears of bacteriologically confirmed cases: sputum conversion (WHO 2013)."""
    negative = tested = 0
    for case in cases:
        if not case.bacteriologically_confirmed or case.started_on is None:
            continue
        test = sputum_tests_due(case.started_on, REGIMENS[case.regimen], case.sputum)[0]
        if test.result is not None:
            tested += 1
            negative += not test.result.positive
    return negative, tested


ADHERENCE_BANDS: tuple[tuple[str, float], ...] = (("under_80", 0.80), ("80_to_89", 0.90), ("90_and_over", 2.0))


def overall_adherence(case: TbCase, as_of: date) -> float | None:
    """Doses taken / days from the start to the earlier of the day before `as_of` and the planned end."""
    if case.started_on is None or case.started_on >= as_of:
        return None
    last = min(as_of - timedelta(days=1), planned_end(case.started_on, REGIMENS[case.regimen]) - timedelta(days=1))
    days = (last - case.started_on).days + 1
    return sum(1 for d in case.doses_taken if case.started_on <= d <= last) / days


def adherence_distribution(cases: Iterable[TbCase], as_of: date) -> dict[str, int]:
    """Cases by overall adherence band: under 80%, 80–89%, 90% and over (digital-adherence projects' 90%)."""
    counts = {band: 0 for band, _ in ADHERENCE_BANDS}
    for case in cases:
        share = overall_adherence(case, as_of)
        if share is not None:
            counts[next(band for band, below in ADHERENCE_BANDS if share < below)] += 1
    return counts
