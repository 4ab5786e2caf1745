"""The hypertension indicators against hand-worked examples, at every edge CLINICAL.md names."""

from __future__ import annotations

from datetime import date

import pytest

from care.hypertension import (
    Bucket,
    HypertensionError,
    Month,
    PatientHistory,
    Reading,
    Reason,
    bucket,
    check_reading,
    cohort_outcome,
    controlled,
    dead,
    hypertension_diagnosis,
    in_denominator,
    latest_reading,
    latest_visit,
    lost_to_follow_up,
    monthly_indicators,
    months_since,
    overdue,
    quarterly_cohort,
    registered,
    returned_to_care,
    under_care,
    urgent,
    worklist,
    worklist_reasons,
)

MARCH = Month(2026, 3)


def history(registered_on: date, *readings: tuple[date, int, int], other: tuple[date, ...] = (),
            died_on: date | None = None, drugs: int = 0, next_visit_on: date | None = None) -> PatientHistory:
    return PatientHistory(registered_on, tuple(Reading(d, s, di, i) for i, (d, s, di) in enumerate(readings)),
                          other, died_on, drugs, next_visit_on)


def test_month_parse_and_days() -> None:
    assert Month.parse("2026-02") == Month(2026, 2)
    assert Month(2026, 2).last_day == date(2026, 2, 28)
    assert Month(2024, 2).last_day == date(2024, 2, 29)
    assert Month(2026, 12).plus(1) == Month(2027, 1)
    assert Month(2026, 1).plus(-1) == Month(2025, 12)
    assert str(Month(2026, 3)) == "2026-03"
    for bad in ("2026-3", "2026-13", "26-03", "2026/03", "", "abcd-ef"):
        with pytest.raises(HypertensionError) as caught:
            Month.parse(bad)
        assert caught.value.field == "month"


def test_months_since_counts_calendar_months_not_days() -> None:
    # 31 Dec → March: 3 calendar months though only 60 days; 1 Dec → March: also 3.
    assert months_since(MARCH, date(2025, 12, 31)) == 3
    assert months_since(MARCH, date(2025, 12, 1)) == 3
    assert months_since(MARCH, date(2026, 1, 1)) == 2
    assert months_since(MARCH, date(2025, 3, 31)) == 12
    assert months_since(MARCH, date(2025, 4, 1)) == 11
    assert months_since(MARCH, date(2026, 3, 31)) == 0


@pytest.mark.parametrize(("systolic", "diastolic", "ok"), [
    (139, 89, True), (140, 89, False), (139, 90, False), (140, 90, False), (120, 80, True)])
def test_control_boundary(systolic: int, diastolic: int, ok: bool) -> None:
    assert controlled(systolic, diastolic) is ok


@pytest.mark.parametrize(("systolic", "diastolic", "flag"), [
    (179, 109, False), (180, 100, True), (170, 110, True), (180, 110, True)])
def test_urgent_boundary(systolic: int, diastolic: int, flag: bool) -> None:
    assert urgent(systolic, diastolic) is flag


@pytest.mark.parametrize(("systolic", "diastolic", "field"), [
    (59, 50, "systolic"), (261, 100, "systolic"), (120, 39, "diastolic"), (120, 261, "diastolic"),
    (100, 100, "systolic"), (90, 95, "systolic")])
def test_impossible_readings_are_refused_naming_the_field(systolic: int, diastolic: int, field: str) -> None:
    with pytest.raises(HypertensionError) as caught:
        check_reading(systolic, diastolic)
    assert caught.value.field == field
    assert caught.value.code == "impossible_reading"


@pytest.mark.parametrize(("systolic", "diastolic"), [(60, 40), (260, 259), (120, 80)])
def test_readings_at_the_bounds_are_accepted(systolic: int, diastolic: int) -> None:
    check_reading(systolic, diastolic)


def test_denominator_needs_exactly_three_calendar_months_since_registration() -> None:
    # Registered 31 Dec 2025: months_since = 3 for March → in; 1 Jan 2026: 2 → out.
    reading = (date(2026, 3, 10), 130, 80)
    assert in_denominator(history(date(2025, 12, 31), reading), MARCH)
    assert not in_denominator(history(date(2026, 1, 1), reading), MARCH)
    assert under_care(history(date(2026, 1, 1), reading), MARCH)


def test_under_care_ends_at_exactly_twelve_calendar_months() -> None:
    # Registered and last seen in March 2025: 12 months before March 2026 → lost to follow-up.
    old = history(date(2025, 3, 1), (date(2025, 3, 31), 150, 95))
    assert lost_to_follow_up(old, MARCH)
    assert not under_care(old, MARCH)
    assert bucket(old, MARCH) is None
    # Seen 1 April 2025: 11 months → still under care, and a missed visit.
    recent = history(date(2025, 3, 1), (date(2025, 4, 1), 150, 95))
    assert under_care(recent, MARCH)
    assert bucket(recent, MARCH) is Bucket.MISSED_VISIT
    # Registered 1 April 2025 with no visit at all: under care by registration (11 months), missed visit.
    assert bucket(history(date(2025, 4, 1)), MARCH) is Bucket.MISSED_VISIT
    assert lost_to_follow_up(history(date(2025, 3, 31)), MARCH)


def test_last_day_of_the_month_belongs_to_the_month() -> None:
    h = history(date(2025, 10, 1), (date(2026, 3, 31), 150, 95))
    assert latest_visit(h, MARCH) == date(2026, 3, 31)
    assert bucket(h, MARCH) is Bucket.UNCONTROLLED
    # The same reading does not exist yet for February.
    assert bucket(h, Month(2026, 2)) is Bucket.MISSED_VISIT


def test_february_window() -> None:
    feb = Month(2026, 2)
    # 30 Nov 2025 → Feb 2026 is 3 calendar months: outside the 3-month window even though < 90 days.
    h = history(date(2025, 6, 1), (date(2025, 11, 30), 130, 80))
    assert months_since(feb, date(2025, 11, 30)) == 3
    assert bucket(h, feb) is Bucket.MISSED_VISIT
    # 1 Dec 2025 → 2 months: controlled.
    assert bucket(history(date(2025, 6, 1), (date(2025, 12, 1), 130, 80)), feb) is Bucket.CONTROLLED
    # 28 Feb 2026 is the end of February (not a leap year).
    assert bucket(history(date(2025, 6, 1), (date(2026, 2, 28), 130, 80)), feb) is Bucket.CONTROLLED
    assert bucket(history(date(2025, 6, 1), (date(2026, 3, 1), 130, 80)), feb) is Bucket.MISSED_VISIT


def test_a_reading_after_the_reference_month_does_not_exist_yet() -> None:
    h = history(date(2025, 6, 1), (date(2026, 1, 15), 150, 95), (date(2026, 4, 1), 120, 70))
    assert latest_reading(h, MARCH) == Reading(date(2026, 1, 15), 150, 95, 0)
    assert bucket(h, MARCH) is Bucket.UNCONTROLLED
    assert bucket(h, Month(2026, 4)) is Bucket.CONTROLLED
    # Registered after the month: not registered, not counted anywhere.
    late = history(date(2026, 4, 1))
    assert not registered(late, MARCH)
    assert monthly_indicators([late], MARCH).registered == 0


def test_a_visit_without_bp_counts_as_a_visit_not_as_a_reading() -> None:
    h = history(date(2025, 6, 1), (date(2025, 11, 20), 130, 80), other=(date(2026, 2, 10),))
    assert latest_visit(h, MARCH) == date(2026, 2, 10)
    assert bucket(h, MARCH) is Bucket.VISITED_NO_BP


def test_latest_reading_decides_control_and_same_day_later_entry_wins() -> None:
    h = history(date(2025, 6, 1), (date(2026, 2, 1), 150, 95), (date(2026, 3, 5), 139, 89))
    assert bucket(h, MARCH) is Bucket.CONTROLLED
    h = history(date(2025, 6, 1), (date(2026, 3, 5), 139, 89), (date(2026, 3, 5), 140, 90))
    assert bucket(h, MARCH) is Bucket.UNCONTROLLED


def test_dead_patients_leave_every_count_but_dead() -> None:
    h = history(date(2025, 6, 1), (date(2026, 3, 1), 150, 95), died_on=date(2026, 3, 31))
    assert dead(h, MARCH) and not registered(h, MARCH) and not under_care(h, MARCH)
    assert not dead(h, Month(2026, 2))
    assert bucket(h, Month(2026, 2)) is Bucket.MISSED_VISIT


def test_monthly_indicators_hand_worked_cohort() -> None:
    cohort = [
        history(date(2025, 1, 1), (date(2026, 3, 2), 130, 80)),                 # controlled
        history(date(2025, 1, 1), (date(2026, 1, 2), 140, 90)),                 # uncontrolled (Jan in window)
        history(date(2025, 1, 1), (date(2025, 12, 31), 120, 80)),               # missed visit (3 months)
        history(date(2025, 1, 1), (date(2025, 9, 1), 120, 80), other=(date(2026, 2, 1),)),  # visited, no BP
        history(date(2026, 2, 1), (date(2026, 3, 1), 120, 80)),                 # under care, not in denominator
        history(date(2024, 1, 1), (date(2025, 3, 31), 120, 80)),                # lost to follow-up
        history(date(2024, 1, 1), died_on=date(2026, 1, 1)),                    # dead
        history(date(2026, 4, 1)),                                              # not yet registered
    ]
    got = monthly_indicators(cohort, MARCH)
    assert got.registered == 6
    assert (got.under_care, got.lost_to_follow_up, got.dead) == (5, 1, 1)
    assert got.denominator == 4
    assert (got.controlled, got.uncontrolled, got.missed_visit, got.visited_no_bp) == (1, 1, 1, 1)
    assert got.rate(got.controlled) == 0.25
    assert monthly_indicators([], MARCH).rate(0) is None


def test_quarterly_cohort_is_judged_in_the_next_quarter() -> None:
    # Registered Jan–Mar 2026 → judged by the latest visit in Apr–Jun 2026.
    cohort = [
        history(date(2026, 1, 5), (date(2026, 3, 30), 150, 95), (date(2026, 6, 30), 130, 80)),  # controlled
        history(date(2026, 3, 31), (date(2026, 4, 1), 130, 80), (date(2026, 5, 1), 150, 80)),  # uncontrolled
        history(date(2026, 2, 1), (date(2026, 3, 1), 130, 80), (date(2026, 7, 1), 130, 80)),  # missed visit
        history(date(2026, 2, 1), other=(date(2026, 5, 1),)),                                 # visited, no BP
        history(date(2026, 4, 1), (date(2026, 5, 1), 130, 80)),                               # next cohort
        history(date(2026, 2, 1), died_on=date(2026, 6, 1)),                                  # dead: apart
    ]
    got = quarterly_cohort(cohort, 2026, 1)
    assert got == {Bucket.CONTROLLED: 1, Bucket.UNCONTROLLED: 1, Bucket.MISSED_VISIT: 1, Bucket.VISITED_NO_BP: 1}
    # Registered in Q2 with a reading in Q2 only: judged in Q3, a missed visit.
    assert cohort_outcome(cohort[4], 2026, 2) is Bucket.MISSED_VISIT


def test_overdue_and_return_to_care() -> None:
    today = date(2026, 3, 10)
    assert overdue(date(2026, 3, 9), date(2026, 2, 9), today)
    assert not overdue(date(2026, 3, 10), date(2026, 2, 9), today)   # due today: not yet overdue
    assert not overdue(date(2026, 3, 9), date(2026, 3, 9), today)    # came on the day
    assert overdue(date(2026, 3, 9), None, today)
    assert not overdue(None, None, today)
    assert returned_to_care(date(2026, 3, 1), [date(2026, 3, 16)])
    assert not returned_to_care(date(2026, 3, 1), [date(2026, 3, 17), date(2026, 2, 28)])


def test_worklist_reasons_and_order() -> None:
    today = date(2026, 3, 10)
    urgent_one = history(date(2025, 1, 1), (date(2026, 3, 1), 182, 100), next_visit_on=date(2026, 3, 29))
    assert worklist_reasons(urgent_one, today) == [Reason.URGENT]
    twice = history(date(2025, 1, 1), (date(2026, 2, 1), 150, 85), (date(2026, 3, 1), 139, 90),
                    next_visit_on=date(2026, 3, 29))
    assert worklist_reasons(twice, today) == [Reason.UNCONTROLLED_TWICE]
    # Two readings the same day are one visit: not "two consecutive visits".
    same_day = history(date(2025, 1, 1), (date(2026, 3, 1), 150, 95), (date(2026, 3, 1), 150, 95),
                       next_visit_on=date(2026, 3, 29))
    assert worklist_reasons(same_day, today) == []
    better = history(date(2025, 1, 1), (date(2026, 2, 1), 150, 95), (date(2026, 3, 1), 139, 89),
                     next_visit_on=date(2026, 3, 29))
    assert worklist_reasons(better, today) == []
    drugs = history(date(2025, 1, 1), (date(2026, 3, 1), 145, 85), drugs=3, next_visit_on=date(2026, 3, 29))
    assert worklist_reasons(drugs, today) == [Reason.MANY_DRUGS]
    assert worklist_reasons(history(date(2025, 1, 1), (date(2026, 3, 1), 145, 85), drugs=2), today) == []
    late = history(date(2025, 1, 1), (date(2026, 1, 1), 130, 80), next_visit_on=date(2026, 1, 29))
    assert worklist_reasons(late, today) == [Reason.OVERDUE]
    everything = history(date(2025, 1, 1), (date(2026, 1, 1), 190, 115), (date(2026, 1, 2), 185, 100),
                         drugs=4, next_visit_on=date(2026, 1, 29))
    assert worklist_reasons(everything, today) == [
        Reason.URGENT, Reason.MANY_DRUGS, Reason.UNCONTROLLED_TWICE, Reason.OVERDUE]
    # A reading dated after today is not counted yet.
    future = history(date(2025, 1, 1), (date(2026, 3, 20), 190, 115), next_visit_on=date(2026, 3, 29))
    assert worklist_reasons(future, today) == []
    rows = worklist([(1, late), (2, twice), (3, urgent_one), (4, better), (5, drugs)], today)
    assert [r.patient_id for r in rows] == [3, 5, 2, 1]
    assert rows[0].reasons == (Reason.URGENT,)


@pytest.mark.parametrize(("code", "offered"), [("I10", True), ("i11.9", True), ("I13.0", True), ("I15", True),
                                               ("I14", False), ("I16", False), ("E11", False), ("I1", False)])
def test_i10_to_i15_offer_the_register(code: str, offered: bool) -> None:
    assert hypertension_diagnosis(code) is offered
