"""care.triage.evidence: which check-in answers are highlighted as having raised the suggested level."""

from __future__ import annotations

import pytest

from care.triage import _EVIDENCE, REASON_CODES, CheckIn, KeyGroup, Symptom, assess, evidence


def highlighted(checkin: CheckIn) -> dict[str, str]:
    result = assess(checkin)
    return evidence(result.reasons, [s.value for s in checkin.symptoms])


def test_every_rule_says_which_answers_it_reads() -> None:
    assert set(_EVIDENCE) == set(REASON_CODES)


def test_no_symptoms_and_normal_readings_highlight_nothing() -> None:
    assert highlighted(CheckIn(spo2=98, systolic=120, diastolic=80, days_ill=2)) == {}


def test_symptoms_alone_are_highlighted_when_they_are_the_only_reason() -> None:
    assert highlighted(CheckIn(symptoms=frozenset({Symptom.cough, Symptom.runny_nose}))) == {
        "symptoms.cough": "raised", "symptoms.runny_nose": "raised"}


def test_at_higher_levels_only_the_answers_that_made_the_difference_are_highlighted() -> None:
    checkin = CheckIn(symptoms=frozenset({Symptom.fever, Symptom.cough}), days_ill=3, spo2=97)
    assert highlighted(checkin) == {"symptoms.fever": "raised", "days_ill": "raised"}


@pytest.mark.parametrize(("spo2", "expected"), [(93, {"spo2": "danger"}), (94, {"spo2": "raised"}),
                                                (95, {"spo2": "raised"}), (96, {})])
def test_spo2_at_each_boundary(spo2: int, expected: dict[str, str]) -> None:
    assert highlighted(CheckIn(spo2=spo2)) == expected


@pytest.mark.parametrize(("bp", "expected"), [((159, 99), {}), ((160, 90), {"bp": "raised"}),
                                              ((179, 109), {"bp": "raised"}), ((180, 100), {"bp": "raised"})])
def test_blood_pressure_without_symptoms_is_raised_not_danger(bp: tuple[int, int],
                                                              expected: dict[str, str]) -> None:
    assert highlighted(CheckIn(systolic=bp[0], diastolic=bp[1])) == expected


def test_very_high_blood_pressure_with_target_organ_symptoms_marks_both_as_danger() -> None:
    checkin = CheckIn(symptoms=frozenset({Symptom.headache, Symptom.cough}), systolic=185, diastolic=115)
    assert highlighted(checkin) == {"bp": "danger", "symptoms.headache": "danger"}


def test_a_danger_sign_stays_danger_when_a_lesser_rule_reads_the_same_answer() -> None:
    checkin = CheckIn(symptoms=frozenset({Symptom.chest_pain, Symptom.mild_breathlessness}), age=70,
                      key_groups=frozenset({KeyGroup.pregnant}))
    assert highlighted(checkin) == {"symptoms.chest_pain": "danger", "symptoms.mild_breathlessness": "raised",
                                    "key_groups": "raised", "age": "raised"}


def test_reasons_from_an_unknown_rule_version_are_ignored() -> None:
    assert evidence(["retired_rule", "low_spo2"], ["not_a_symptom"]) == {"spo2": "danger"}
