"""TB register rules against hand-worked cases, at every edge CLINICAL.md names."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from care.tb import (
    DEFAULT_REGIMEN,
    REGIMENS,
    DoseStatus,
    Flag,
    Outcome,
    SputumResult,
    TbCase,
    add_months,
    adherence,
    adherence_distribution,
    cohort_row,
    consecutive_missed,
    flags,
    longest_gap,
    month_2_conversion,
    overall_adherence,
    parse_quarter,
    phase_dates,
    planned_end,
    sputum_tests_due,
    treatment_success_rate,
    who_outcome,
)

HRZE = REGIMENS["2HRZE/4HR"]
HPZM = REGIMENS["2HPZM/2HPM"]
START = date(2026, 1, 5)
END = date(2026, 7, 5)  # START + 6 months


def daily(first: date, last: date) -> frozenset[date]:
    return frozenset(first + timedelta(days=i) for i in range((last - first).days + 1))


def case(**kw: object) -> TbCase:
    values: dict[str, object] = {"registered_on": date(2026, 1, 2), "regimen": DEFAULT_REGIMEN,
                                 "bacteriologically_confirmed": True, "started_on": START,
                                 "doses_taken": daily(START, END)}
    values.update(kw)
    return TbCase(**values)  # type: ignore[arg-type]


# --- calendar arithmetic


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2026, 1, 31), 1, date(2026, 2, 28)),
    (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
    (date(2026, 1, 31), 2, date(2026, 3, 31)),
    (date(2026, 8, 31), 6, date(2027, 2, 28)),
    (date(2026, 11, 15), 3, date(2027, 2, 15)),
    (date(2026, 3, 31), 1, date(2026, 4, 30)),
])
def test_add_months_clamps_to_the_last_day_of_a_shorter_month(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


def test_planned_end_is_start_plus_the_regimens_months() -> None:
    assert planned_end(START, HRZE) == END
    assert planned_end(date(2026, 8, 31), HRZE) == date(2027, 2, 28)
    assert planned_end(START, HPZM) == date(2026, 5, 5)


def test_phase_dates_follow_from_the_start() -> None:
    phases = phase_dates(date(2025, 12, 31), HRZE)
    assert [(p.phase.name, p.starts_on, p.ends_on) for p in phases] == [
        ("intensive", date(2025, 12, 31), date(2026, 2, 28)),
        ("continuation", date(2026, 2, 28), date(2026, 6, 30))]


# --- sputum schedule


def test_sputum_due_month_2_5_and_last_when_month_2_negative() -> None:
    tests = sputum_tests_due(START, HRZE, [SputumResult(date(2026, 3, 5), False)])
    assert [(t.month, t.due_on) for t in tests] == [(2, date(2026, 3, 5)), (5, date(2026, 6, 5)),
                                                    (6, date(2026, 7, 5))]
    assert tests[0].result == SputumResult(date(2026, 3, 5), False)


def test_a_positive_month_2_smear_adds_a_month_3_test() -> None:
    tests = sputum_tests_due(START, HRZE, [SputumResult(date(2026, 3, 3), True)])
    assert [t.month for t in tests] == [2, 3, 5, 6]
    assert tests[1].due_on == date(2026, 4, 5) and tests[1].result is None


def test_four_month_regimen_has_tests_at_month_2_and_its_last_month() -> None:
    assert [t.month for t in sputum_tests_due(START, HPZM, [])] == [2, 4]


def test_sputum_overdue_after_seven_days_of_grace() -> None:
    (month_2, *_) = sputum_tests_due(START, HRZE, [])
    assert not month_2.overdue(date(2026, 3, 12)) and month_2.overdue(date(2026, 3, 13))
    assert Flag.sputum_overdue in flags(START, HRZE, dict.fromkeys(daily(START, date(2026, 3, 13)),
                                                                   DoseStatus.in_person), [], date(2026, 3, 13))


def test_a_result_counts_from_fourteen_days_before_the_due_date() -> None:
    assert sputum_tests_due(START, HRZE, [SputumResult(date(2026, 2, 19), False)])[0].result is not None
    assert sputum_tests_due(START, HRZE, [SputumResult(date(2026, 2, 18), False)])[0].result is None


# --- adherence and flags


def test_adherence_over_the_28_full_days_before_today() -> None:
    as_of = date(2026, 3, 1)
    doses = dict.fromkeys(daily(START, as_of), DoseStatus.video)
    assert adherence(START, END, doses, as_of) == 1.0
    for i in range(3):
        doses[as_of - timedelta(days=1 + 2 * i)] = DoseStatus.missed
    assert adherence(START, END, doses, as_of) == pytest.approx(25 / 28)


def test_adherence_only_counts_days_on_treatment() -> None:
    doses = {START: DoseStatus.in_person, START + timedelta(days=1): DoseStatus.missed}
    assert adherence(START, END, doses, START + timedelta(days=2)) == 0.5
    assert adherence(START, END, doses, START) is None


def test_low_adherence_flag_below_ninety_percent() -> None:
    as_of = date(2026, 3, 1)
    doses = dict.fromkeys(daily(START, as_of), DoseStatus.self_reported)
    doses[date(2026, 2, 10)] = doses[date(2026, 2, 20)] = DoseStatus.missed  # 26/28 = 92.9%
    assert Flag.low_adherence not in flags(START, HRZE, doses, [], as_of)
    doses[date(2026, 2, 12)] = DoseStatus.missed  # 25/28 = 89.3%
    assert Flag.low_adherence in flags(START, HRZE, doses, [], as_of)


def test_three_consecutive_missed_doses_flag() -> None:
    as_of = date(2026, 2, 1)
    doses = dict.fromkeys(daily(START, as_of - timedelta(days=3)), DoseStatus.in_person)
    doses[as_of - timedelta(days=2)] = doses[as_of - timedelta(days=1)] = DoseStatus.missed
    assert consecutive_missed(START, doses, as_of) == 2  # today not recorded yet: not counted
    assert Flag.missed_doses not in flags(START, HRZE, doses, [], as_of)
    doses[as_of] = DoseStatus.missed
    assert consecutive_missed(START, doses, as_of) == 3
    assert Flag.missed_doses in flags(START, HRZE, doses, [], as_of)
    doses[as_of] = DoseStatus.video_pending
    assert consecutive_missed(START, doses, as_of) == 0


def test_positive_smear_flag_from_month_2_until_a_later_negative() -> None:
    doses = dict.fromkeys(daily(START, date(2026, 4, 1)), DoseStatus.in_person)
    positive = [SputumResult(date(2026, 3, 4), True)]
    assert Flag.positive_smear in flags(START, HRZE, doses, positive, date(2026, 3, 10))
    converted = [*positive, SputumResult(date(2026, 4, 3), False)]
    assert Flag.positive_smear not in flags(START, HRZE, doses, converted, date(2026, 4, 4))
    early = [SputumResult(date(2026, 1, 5), True)]  # diagnosis smear, not a follow-up
    assert Flag.positive_smear not in flags(START, HRZE, doses, early, date(2026, 1, 20))


def test_phase_ending_within_seven_days() -> None:
    doses = dict.fromkeys(daily(START, date(2026, 3, 1)), DoseStatus.in_person)
    assert Flag.phase_ending not in flags(START, HRZE, doses, [], date(2026, 2, 25))  # 8 days before 5 Mar
    assert Flag.phase_ending in flags(START, HRZE, doses, [], date(2026, 2, 26))  # 7 days before
    assert Flag.phase_ending in flags(START, HRZE, doses, [], date(2026, 3, 5))  # the day itself


# --- outcomes: each rule and its edges


def test_gap_counts_from_the_day_after_a_dose_or_from_the_start() -> None:
    assert longest_gap(START, [], START) == 1
    assert longest_gap(START, [START + timedelta(days=60)], START + timedelta(days=60)) == 60
    assert longest_gap(START, [START, START + timedelta(days=60)], START + timedelta(days=60)) == 59


def test_gap_of_exactly_59_days_is_not_lost_60_is() -> None:
    before = daily(START, date(2026, 2, 1))
    resumed = date(2026, 2, 1) + timedelta(days=60)  # 59 days with no dose in between
    assert who_outcome(case(doses_taken=before | daily(resumed, END)), END) == Outcome.completed
    assert who_outcome(case(doses_taken=before | daily(resumed, END), sputum=_cure_smears()), END) == Outcome.cured
    late = resumed + timedelta(days=1)  # 60 days
    assert who_outcome(case(doses_taken=before | daily(late, END)), END) == Outcome.lost_to_follow_up


def test_trailing_gap_counts_up_to_the_judging_date() -> None:
    stopped = daily(START, date(2026, 2, 1))
    assert who_outcome(case(doses_taken=stopped), date(2026, 4, 1)) == Outcome.still_on_treatment  # 59 days
    assert who_outcome(case(doses_taken=stopped), date(2026, 4, 2)) == Outcome.lost_to_follow_up  # 60 days


def test_not_started_within_60_days_of_registration() -> None:
    registered = date(2026, 1, 2)
    waiting = case(started_on=None, doses_taken=frozenset())
    assert who_outcome(waiting, registered + timedelta(days=60)) == Outcome.still_on_treatment
    assert who_outcome(waiting, registered + timedelta(days=61)) == Outcome.lost_to_follow_up
    late = registered + timedelta(days=61)
    assert who_outcome(case(started_on=late, doses_taken=daily(late, late)), late) == Outcome.lost_to_follow_up
    ok = registered + timedelta(days=60)
    assert who_outcome(case(started_on=ok, doses_taken=daily(ok, ok)), ok) == Outcome.still_on_treatment


def test_positive_smear_the_day_before_month_4_is_not_failure_the_day_of_is() -> None:
    month_4 = date(2026, 5, 5)
    before = case(sputum=(SputumResult(month_4 - timedelta(days=1), True),))
    assert who_outcome(before, END) == Outcome.completed
    assert who_outcome(case(sputum=(SputumResult(month_4, True),)), END) == Outcome.failed
    assert who_outcome(case(sputum=(SputumResult(month_4, True),)), month_4 - timedelta(days=1)) \
        == Outcome.still_on_treatment  # not yet dated as of then


def test_regimen_changed_for_failure_is_failed() -> None:
    assert who_outcome(case(failure_change_on=date(2026, 3, 20)), date(2026, 3, 20)) == Outcome.failed
    assert who_outcome(case(failure_change_on=date(2026, 3, 20)), date(2026, 3, 19)) == Outcome.still_on_treatment


def _cure_smears(last: date = END - timedelta(days=5)) -> tuple[SputumResult, ...]:
    return (SputumResult(date(2026, 3, 5), False), SputumResult(last, False))


def test_negative_on_planned_end_minus_30_and_plus_14_days_counts_for_cure() -> None:
    for last in (END - timedelta(days=30), END + timedelta(days=14)):
        assert who_outcome(case(sputum=_cure_smears(last)), END + timedelta(days=14)) == Outcome.cured
    for last in (END - timedelta(days=31), END + timedelta(days=15)):
        assert who_outcome(case(sputum=_cure_smears(last)), END + timedelta(days=15)) == Outcome.completed


def test_cure_needs_an_earlier_negative_and_confirmation() -> None:
    only_last = (SputumResult(END - timedelta(days=3), False),)
    assert who_outcome(case(sputum=only_last), END) == Outcome.completed
    two_in_window = (SputumResult(END - timedelta(days=20), False), SputumResult(END - timedelta(days=3), False))
    assert who_outcome(case(sputum=two_in_window), END) == Outcome.completed  # "earlier than the first of those"
    assert who_outcome(case(sputum=_cure_smears(), bacteriologically_confirmed=False), END) == Outcome.completed


def test_a_negative_dated_after_the_judging_date_does_not_exist_yet() -> None:
    smears = _cure_smears(END + timedelta(days=3))
    assert who_outcome(case(sputum=smears), END) == Outcome.completed
    assert who_outcome(case(sputum=smears), END + timedelta(days=3)) == Outcome.cured


def test_completed_on_the_planned_end_still_on_treatment_the_day_before() -> None:
    assert who_outcome(case(), END) == Outcome.completed
    assert who_outcome(case(), END - timedelta(days=1)) == Outcome.still_on_treatment


def test_death_before_or_during_treatment_only() -> None:
    assert who_outcome(case(died_on=END), END + timedelta(days=1)) == Outcome.died
    assert who_outcome(case(died_on=END + timedelta(days=1)), END + timedelta(days=1)) == Outcome.completed
    assert who_outcome(case(started_on=None, died_on=date(2026, 1, 3)), date(2026, 1, 3)) == Outcome.died
    assert who_outcome(case(died_on=date(2026, 3, 1)), date(2026, 2, 28)) == Outcome.still_on_treatment


def test_precedence_died_then_not_evaluated_then_failed_then_lost_then_cured() -> None:
    failing = (SputumResult(date(2026, 6, 1), True),)
    gap = daily(START, date(2026, 2, 1))
    everything = case(died_on=date(2026, 6, 20), transferred_out_on=date(2026, 6, 10), sputum=failing,
                      doses_taken=gap)
    judged = date(2026, 7, 1)
    assert who_outcome(everything, judged) == Outcome.died
    assert who_outcome(case(transferred_out_on=date(2026, 6, 10), sputum=failing, doses_taken=gap),
                       judged) == Outcome.not_evaluated
    assert who_outcome(case(sputum=failing, doses_taken=gap), judged) == Outcome.failed
    assert who_outcome(case(sputum=_cure_smears(), doses_taken=gap), END) == Outcome.lost_to_follow_up
    assert who_outcome(case(sputum=_cure_smears()), END) == Outcome.cured


def test_a_clinicians_override_wins() -> None:
    assert who_outcome(case(outcome_override=Outcome.failed), END) == Outcome.failed


# --- the quarterly report


def test_parse_quarter() -> None:
    assert parse_quarter("2026-Q1") == (date(2026, 1, 1), date(2026, 4, 1))
    assert parse_quarter("2026-Q4") == (date(2026, 10, 1), date(2027, 1, 1))
    for bad in ("2026-Q5", "2026Q1", "26-Q1", "2026-q1", ""):
        with pytest.raises(ValueError, match="quarter"):
            parse_quarter(bad)


def test_cohort_row_counts_the_quarters_registrations() -> None:
    cases = [case(sputum=_cure_smears()), case(), case(registered_on=date(2026, 3, 31), started_on=None),
             case(registered_on=date(2026, 4, 1))]
    row = cohort_row(cases, "2026-Q1", END)
    assert row.registered == 3
    assert row.counts[Outcome.cured] == 1 and row.counts[Outcome.completed] == 1
    assert row.counts[Outcome.lost_to_follow_up] == 1
    assert row.success_rate == pytest.approx(2 / 3)


def test_treatment_success_rate_of_an_empty_cohort_is_none() -> None:
    assert treatment_success_rate({}, 0) is None
    assert treatment_success_rate({Outcome.cured: 3, Outcome.completed: 1, Outcome.failed: 1}, 5) == 0.8


def test_month_2_conversion_counts_confirmed_cases_with_a_month_2_result() -> None:
    converted = case(sputum=(SputumResult(date(2026, 3, 5), False),))
    positive = case(sputum=(SputumResult(date(2026, 3, 1), True),))
    untested = case()
    unconfirmed = case(bacteriologically_confirmed=False, sputum=(SputumResult(date(2026, 3, 5), False),))
    assert month_2_conversion([converted, positive, untested, unconfirmed]) == (1, 2)


def test_adherence_distribution_bands_at_80_and_90_percent() -> None:
    as_of = START + timedelta(days=10)  # 10 days on treatment
    ten = daily(START, START + timedelta(days=9))
    nine = ten - {START}
    eight = nine - {START + timedelta(days=1)}
    seven = eight - {START + timedelta(days=2)}
    assert overall_adherence(case(doses_taken=nine), as_of) == 0.9
    counts = adherence_distribution([case(doses_taken=d) for d in (ten, nine, eight, seven)]
                                    + [case(started_on=None)], as_of)
    assert counts == {"under_80": 1, "80_to_89": 1, "90_and_over": 2}
