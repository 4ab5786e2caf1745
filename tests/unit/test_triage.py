"""care.triage: the suggested queue level, with a test at every threshold boundary."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from care.triage import (
    DANGER_SIGN_CODES,
    REASON_CODES,
    CheckIn,
    CheckInError,
    KeyGroup,
    Symptom,
    TriageLevel,
    TriageResult,
    TriageThresholds,
    assess,
)

NO_SYMPTOMS: frozenset[Symptom] = frozenset()


def symptoms(*items: Symptom) -> frozenset[Symptom]:
    return frozenset(items)


def groups(*items: KeyGroup) -> frozenset[KeyGroup]:
    return frozenset(items)


# --- Levels and enums -------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "rank", "colour"),
    [
        (TriageLevel.NC0, 0, "green"),
        (TriageLevel.NC1, 1, "green"),
        (TriageLevel.NC2, 2, "yellow"),
        (TriageLevel.NC3, 3, "red"),
        (TriageLevel.NC4, 4, "red"),
    ],
)
def test_level_has_rank_and_screen_colour(level: TriageLevel, rank: int, colour: str) -> None:
    assert level.value == level.name
    assert level.rank == rank
    assert level.colour == colour


def test_symptom_list_covers_primary_care_self_report_and_value_is_name() -> None:
    assert {s.value for s in Symptom} == {
        "fever", "cough", "sore_throat", "runny_nose", "headache", "fatigue", "diarrhoea",
        "vomiting", "loss_of_smell", "mild_breathlessness", "severe_breathlessness", "chest_pain",
        "confusion", "dizziness", "blurred_vision", "one_sided_weakness", "fainting", "bleeding",
        "other",
    }  # fmt: skip
    assert all(s.value == s.name for s in Symptom)


def test_key_groups_match_clinical_ledgers_and_value_is_name() -> None:
    assert {g.value for g in KeyGroup} == {
        "elderly_alone", "pregnant", "dialysis", "chemotherapy", "hypertension", "diabetes", "tb",
    }  # fmt: skip
    assert all(g.value == g.name for g in KeyGroup)


# --- Each level is reachable ----------------------------------------------------


def test_empty_check_in_is_nc0_with_no_reasons() -> None:
    result = assess(CheckIn())
    assert result == TriageResult(level=TriageLevel.NC0, danger_signs=(), reasons=())
    assert not result.emergency


def test_no_symptoms_and_normal_readings_is_nc0() -> None:
    result = assess(CheckIn(spo2=98, systolic=120, diastolic=80, days_ill=0, age=40))
    assert result.level is TriageLevel.NC0
    assert result.reasons == ()


def test_any_symptom_is_nc1() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.cough)))
    assert result.level is TriageLevel.NC1
    assert result.reasons == ("has_symptoms",)
    assert not result.emergency


def test_other_symptom_counts_as_a_symptom() -> None:
    assert assess(CheckIn(symptoms=symptoms(Symptom.other))).level is TriageLevel.NC1


def test_mild_breathlessness_is_nc2() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.mild_breathlessness)))
    assert result.level is TriageLevel.NC2
    assert "mild_breathlessness" in result.reasons
    assert result.danger_signs == ()


@pytest.mark.parametrize(
    "symptom",
    [
        Symptom.chest_pain,
        Symptom.severe_breathlessness,
        Symptom.confusion,
        Symptom.one_sided_weakness,
        Symptom.fainting,
    ],
)
def test_danger_symptom_alone_is_nc4_emergency(symptom: Symptom) -> None:
    result = assess(CheckIn(symptoms=symptoms(symptom)))
    assert result.level is TriageLevel.NC4
    assert result.danger_signs == (symptom.value,)
    assert result.emergency


# --- SpO2 boundaries: < 94 danger, 94–95 NC3, >= 96 normal ------------------------


def test_spo2_93_is_danger_sign_nc4() -> None:
    result = assess(CheckIn(spo2=93))
    assert result.level is TriageLevel.NC4
    assert result.danger_signs == ("low_spo2",)
    assert result.emergency


@pytest.mark.parametrize("spo2", [94, 95])
def test_spo2_94_and_95_are_nc3_same_day_not_emergency(spo2: int) -> None:
    result = assess(CheckIn(spo2=spo2))
    assert result.level is TriageLevel.NC3
    assert result.reasons == ("borderline_spo2",)
    assert not result.emergency


def test_spo2_96_without_symptoms_is_nc0() -> None:
    assert assess(CheckIn(spo2=96)).level is TriageLevel.NC0


def test_lowest_accepted_spo2_is_danger() -> None:
    assert assess(CheckIn(spo2=50)).danger_signs == ("low_spo2",)


# --- BP with symptoms: >= 180/120 is an emergency -----------------------------------


@pytest.mark.parametrize(("systolic", "diastolic"), [(180, 120), (180, 100), (170, 120), (220, 130)])
def test_bp_at_or_above_180_120_with_headache_is_hypertensive_emergency(
    systolic: int, diastolic: int
) -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.headache), systolic=systolic, diastolic=diastolic))
    assert result.level is TriageLevel.NC4
    assert result.danger_signs == ("hypertensive_emergency",)
    assert result.emergency


def test_bp_179_119_with_headache_is_urgent_nc3_not_emergency() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.headache), systolic=179, diastolic=119))
    assert result.level is TriageLevel.NC3
    assert result.danger_signs == ()
    assert "hypertensive_urgency" in result.reasons
    assert not result.emergency


@pytest.mark.parametrize(
    "symptom",
    [
        Symptom.headache,
        Symptom.chest_pain,
        Symptom.mild_breathlessness,
        Symptom.severe_breathlessness,
        Symptom.confusion,
        Symptom.blurred_vision,
        Symptom.one_sided_weakness,
        Symptom.dizziness,
    ],
)
def test_each_target_organ_symptom_makes_severe_bp_an_emergency(symptom: Symptom) -> None:
    result = assess(CheckIn(symptoms=symptoms(symptom), systolic=190, diastolic=125))
    assert "hypertensive_emergency" in result.danger_signs


def test_severe_bp_with_unrelated_symptom_is_urgent_not_emergency() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.runny_nose), systolic=190, diastolic=125))
    assert result.level is TriageLevel.NC3
    assert not result.emergency


# --- BP without symptoms: >= 180/110 same-day review (NC3) ---------------------------


@pytest.mark.parametrize(("systolic", "diastolic"), [(180, 110), (180, 90), (170, 110), (210, 130)])
def test_bp_at_or_above_180_110_without_symptoms_is_nc3_same_day(systolic: int, diastolic: int) -> None:
    result = assess(CheckIn(systolic=systolic, diastolic=diastolic))
    assert result.level is TriageLevel.NC3
    assert "hypertensive_urgency" in result.reasons
    assert not result.emergency


def test_bp_179_109_without_symptoms_is_nc2_not_urgent() -> None:
    result = assess(CheckIn(systolic=179, diastolic=109))
    assert result.level is TriageLevel.NC2
    assert result.reasons == ("high_bp",)


# --- BP >= 160/100 is worsening (NC2) ---------------------------------------------


@pytest.mark.parametrize(("systolic", "diastolic"), [(160, 100), (160, 90), (150, 100)])
def test_bp_at_or_above_160_100_is_nc2(systolic: int, diastolic: int) -> None:
    result = assess(CheckIn(systolic=systolic, diastolic=diastolic))
    assert result.level is TriageLevel.NC2
    assert result.reasons == ("high_bp",)


def test_bp_159_99_without_symptoms_is_nc0() -> None:
    assert assess(CheckIn(systolic=159, diastolic=99)).level is TriageLevel.NC0


# --- Fever duration: >= 3 days is worsening -------------------------------------------


def test_fever_for_2_days_is_nc1() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.fever), days_ill=2))
    assert result.level is TriageLevel.NC1


def test_fever_for_3_days_is_nc2() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.fever), days_ill=3))
    assert result.level is TriageLevel.NC2
    assert "prolonged_fever" in result.reasons


def test_fever_with_unknown_duration_is_nc1() -> None:
    assert assess(CheckIn(symptoms=symptoms(Symptom.fever))).level is TriageLevel.NC1


def test_long_illness_without_fever_is_nc1() -> None:
    assert assess(CheckIn(symptoms=symptoms(Symptom.cough), days_ill=10)).level is TriageLevel.NC1


# --- Age and key groups: symptoms in a vulnerable person are worsening -----------------


def test_symptomatic_64_year_old_is_nc1() -> None:
    assert assess(CheckIn(symptoms=symptoms(Symptom.cough), age=64)).level is TriageLevel.NC1


def test_symptomatic_65_year_old_is_nc2() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.cough), age=65))
    assert result.level is TriageLevel.NC2
    assert "elderly_with_symptoms" in result.reasons


def test_65_year_old_without_symptoms_is_nc0() -> None:
    assert assess(CheckIn(age=65)).level is TriageLevel.NC0


@pytest.mark.parametrize(
    "group", [KeyGroup.pregnant, KeyGroup.dialysis, KeyGroup.chemotherapy, KeyGroup.elderly_alone]
)
def test_symptom_in_vulnerable_key_group_is_nc2(group: KeyGroup) -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.fatigue), key_groups=groups(group)))
    assert result.level is TriageLevel.NC2
    assert "key_group_with_symptoms" in result.reasons


@pytest.mark.parametrize("group", [KeyGroup.hypertension, KeyGroup.diabetes, KeyGroup.tb])
def test_symptom_in_chronic_disease_group_alone_stays_nc1(group: KeyGroup) -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.fatigue), key_groups=groups(group)))
    assert result.level is TriageLevel.NC1


def test_key_group_without_symptoms_is_nc0() -> None:
    assert assess(CheckIn(key_groups=groups(KeyGroup.pregnant))).level is TriageLevel.NC0


# --- Combining rules --------------------------------------------------------------


def test_highest_level_wins_and_every_fired_rule_is_a_reason_most_severe_first() -> None:
    result = assess(
        CheckIn(
            symptoms=symptoms(Symptom.chest_pain, Symptom.fever, Symptom.mild_breathlessness),
            spo2=95,
            systolic=165,
            diastolic=95,
            days_ill=4,
            age=70,
            key_groups=groups(KeyGroup.pregnant),
        )
    )
    assert result.level is TriageLevel.NC4
    assert result.danger_signs == ("chest_pain",)
    assert result.reasons == (
        "chest_pain",
        "borderline_spo2",
        "mild_breathlessness",
        "prolonged_fever",
        "high_bp",
        "key_group_with_symptoms",
        "elderly_with_symptoms",
        "has_symptoms",
    )


def test_several_danger_signs_are_all_reported() -> None:
    result = assess(CheckIn(symptoms=symptoms(Symptom.confusion, Symptom.severe_breathlessness), spo2=88))
    assert result.danger_signs == ("severe_breathlessness", "low_spo2", "confusion")


def test_danger_sign_codes_are_stable() -> None:
    assert DANGER_SIGN_CODES == (
        "chest_pain",
        "severe_breathlessness",
        "low_spo2",
        "confusion",
        "hypertensive_emergency",
        "one_sided_weakness",
        "fainting",
    )
    assert set(DANGER_SIGN_CODES) <= set(REASON_CODES)


def test_emergency_is_true_for_nc4_or_any_danger_sign() -> None:
    assert TriageResult(level=TriageLevel.NC4).emergency
    assert TriageResult(level=TriageLevel.NC2, danger_signs=("low_spo2",)).emergency
    assert not TriageResult(level=TriageLevel.NC3, reasons=("borderline_spo2",)).emergency


def test_deployment_can_override_thresholds() -> None:
    stricter = TriageThresholds(spo2_danger_below=92, spo2_severe_below=94)
    assert assess(CheckIn(spo2=93), stricter).level is TriageLevel.NC3
    assert assess(CheckIn(spo2=91), stricter).level is TriageLevel.NC4


# --- Validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field", "code"),
    [
        ({"spo2": 49}, "spo2", "out_of_range"),
        ({"spo2": 101}, "spo2", "out_of_range"),
        ({"systolic": 59, "diastolic": 40}, "systolic", "out_of_range"),
        ({"systolic": 301, "diastolic": 90}, "systolic", "out_of_range"),
        ({"systolic": 120, "diastolic": 29}, "diastolic", "out_of_range"),
        ({"systolic": 250, "diastolic": 201}, "diastolic", "out_of_range"),
        ({"days_ill": -1}, "days_ill", "out_of_range"),
        ({"days_ill": 366}, "days_ill", "out_of_range"),
        ({"age": -1}, "age", "out_of_range"),
        ({"age": 131}, "age", "out_of_range"),
        ({"systolic": 120}, "diastolic", "bp_incomplete"),
        ({"diastolic": 80}, "systolic", "bp_incomplete"),
        ({"systolic": 80, "diastolic": 80}, "systolic", "bp_inverted"),
        ({"systolic": 80, "diastolic": 120}, "systolic", "bp_inverted"),
        ({"spo2": True}, "spo2", "not_an_integer"),
        ({"age": 40.5}, "age", "not_an_integer"),
        ({"symptoms": frozenset({"fever"})}, "symptoms", "unknown_symptom"),
        ({"key_groups": frozenset({"pregnant"})}, "key_groups", "unknown_key_group"),
    ],
)
def test_invalid_check_in_raises_error_naming_the_field(
    values: dict[str, object], field: str, code: str
) -> None:
    with pytest.raises(CheckInError) as caught:
        CheckIn(**values)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


def test_range_limits_themselves_are_accepted() -> None:
    CheckIn(spo2=50, systolic=61, diastolic=30, days_ill=0, age=0)
    CheckIn(spo2=100, systolic=300, diastolic=200, days_ill=365, age=130)
    CheckIn(systolic=60, diastolic=30)


def test_check_in_error_message_names_field_and_value() -> None:
    with pytest.raises(CheckInError, match=r"^spo2: must be between 50 and 100, got 120$"):
        CheckIn(spo2=120)


# --- Properties ----------------------------------------------------------------------

optional_spo2 = st.none() | st.integers(min_value=50, max_value=100)
optional_days = st.none() | st.integers(min_value=0, max_value=365)
optional_age = st.none() | st.integers(min_value=0, max_value=130)


@st.composite
def blood_pressures(draw: st.DrawFn) -> tuple[int | None, int | None]:
    if draw(st.booleans()):
        return None, None
    diastolic = draw(st.integers(min_value=30, max_value=200))
    systolic = draw(st.integers(min_value=max(60, diastolic + 1), max_value=300))
    return systolic, diastolic


@st.composite
def check_ins(draw: st.DrawFn) -> CheckIn:
    systolic, diastolic = draw(blood_pressures())
    return CheckIn(
        symptoms=draw(st.frozensets(st.sampled_from(Symptom))),
        spo2=draw(optional_spo2),
        systolic=systolic,
        diastolic=diastolic,
        days_ill=draw(optional_days),
        age=draw(optional_age),
        key_groups=draw(st.frozensets(st.sampled_from(KeyGroup))),
    )


@given(check_ins())
def test_assess_never_raises_and_explains_every_level_above_nc0(checkin: CheckIn) -> None:
    result = assess(checkin)
    assert isinstance(result.level, TriageLevel)
    assert set(result.reasons) <= set(REASON_CODES)
    assert set(result.danger_signs) <= set(result.reasons)
    assert (result.level is TriageLevel.NC0) == (result.reasons == ())
    # Danger signs always mean NC4, so the emergency banner and the level agree.
    assert result.emergency == (result.level is TriageLevel.NC4)


@given(check_ins(), st.sampled_from(Symptom))
def test_adding_a_symptom_never_lowers_the_level(checkin: CheckIn, extra: Symptom) -> None:
    worse = replace(checkin, symptoms=checkin.symptoms | {extra})
    assert assess(worse).level.rank >= assess(checkin).level.rank


@given(check_ins(), st.sampled_from(KeyGroup))
def test_adding_a_key_group_never_lowers_the_level(checkin: CheckIn, extra: KeyGroup) -> None:
    flagged = replace(checkin, key_groups=checkin.key_groups | {extra})
    assert assess(flagged).level.rank >= assess(checkin).level.rank


@given(check_ins(), st.integers(min_value=0, max_value=50))
def test_lower_spo2_never_lowers_the_level(checkin: CheckIn, drop: int) -> None:
    assume(checkin.spo2 is not None)
    assert checkin.spo2 is not None  # for mypy
    worse = replace(checkin, spo2=max(50, checkin.spo2 - drop))
    assert assess(worse).level.rank >= assess(checkin).level.rank
