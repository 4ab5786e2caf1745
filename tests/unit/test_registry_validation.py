"""Registration rules: every wrong field reported with its code at once; valid input normalized."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from care.places import commune, communes_of, province, provinces, search_communes
from care.registry import MAX_AGE_YEARS, RegistrationError, RegistrationInput, Sex, validate
from care.triage import KeyGroup

TODAY = date(2026, 6, 15)
VALID = RegistrationInput(name="Nguyễn Văn An", sex="male", birth_year="1958", phone="0912 345 678",
                          commune_code="04456", address_detail="Bản Mù Cang", national_id="015058001234",
                          insurance_number="0123456789", key_groups=("hypertension", "elderly_alone"))


def codes(form: RegistrationInput) -> dict[str, str]:
    with pytest.raises(RegistrationError) as caught:
        validate(form, today=TODAY)
    return caught.value.codes()


def test_a_valid_registration_is_normalized() -> None:
    r = validate(replace(VALID, name="  nguyễn   Văn  An ", insurance_number="01234 56789"), today=TODAY)
    assert r.name == "nguyễn Văn An"
    assert r.sex is Sex.male and r.birth_year == 1958 and r.birth_date is None
    assert r.phone == "+84912345678"
    assert r.commune_code == "04456"
    assert r.insurance_number == "0123456789"
    assert r.key_groups == (KeyGroup.elderly_alone, KeyGroup.hypertension)  # enum order, no duplicates


def test_only_name_sex_and_birth_are_required() -> None:
    r = validate(RegistrationInput(name="Giàng A Páo", sex="male", birth_year="1958"), today=TODAY)
    assert (r.phone, r.commune_code, r.national_id, r.insurance_number, r.key_groups) == (None, None, None, None, ())
    assert codes(RegistrationInput()) == {"name": "name_required", "sex": "sex_required",
                                          "birth_year": "birth_required"}


def test_every_wrong_field_is_reported_at_once() -> None:
    bad = RegistrationInput(name="An 2", sex="x", birth_year="2027", phone="0243 825 1234", commune_code="99999",
                            national_id="12345", insurance_number="ABC", key_groups=("vip",))
    assert codes(bad) == {"name": "name_characters", "sex": "sex_required", "birth_year": "birth_in_future",
                          "phone": "phone_not_mobile", "commune_code": "commune_unknown",
                          "national_id": "national_id_format", "insurance_number": "insurance_format",
                          "key_groups": "key_group_unknown"}


@pytest.mark.parametrize(("year", "code"), [
    ("2027", "birth_in_future"), (str(TODAY.year - MAX_AGE_YEARS - 1), "birth_too_early"),
    ("58", "birth_year_invalid"), ("19 58", "birth_year_invalid"), ("١٩٥٨", "birth_year_invalid"),
])
def test_implausible_birth_years_are_refused(year: str, code: str) -> None:
    assert codes(replace(VALID, birth_year=year, national_id="")) == {"birth_year": code}


@pytest.mark.parametrize("year", [str(TODAY.year), str(TODAY.year - MAX_AGE_YEARS)])
def test_birth_year_boundaries_are_accepted(year: str) -> None:
    assert validate(replace(VALID, birth_year=year, national_id=""), today=TODAY).birth_year == int(year)


def test_birth_date_today_is_accepted_and_tomorrow_is_not() -> None:
    assert validate(replace(VALID, birth_year="", birth_date="2026-06-15", national_id=""),
                    today=TODAY).birth_year == 2026
    assert codes(replace(VALID, birth_year="", birth_date="2026-06-16", national_id="")) == {
        "birth_date": "birth_in_future"}


def test_birth_date_gives_the_year_and_must_agree_with_it() -> None:
    r = validate(replace(VALID, birth_year="", birth_date="1958-03-02"), today=TODAY)
    assert (r.birth_year, r.birth_date) == (1958, date(1958, 3, 2))
    assert codes(replace(VALID, birth_date="1959-03-02")) == {"birth_year": "birth_year_mismatch"}
    assert codes(replace(VALID, birth_date="02/03/1958")) == {"birth_date": "birth_date_invalid"}


@pytest.mark.parametrize(("name", "ok"), [
    ("Hờ Thị Dính", True), ("Lý A Chư", True), ("H'Hen Niê", True), ("Nguyễn Thị Minh-Khai", True),
    ("A", False), ("Nguyễn Văn 2", False), ("<script>", False), ("x" * 101, False), ("Ng\u0075\u0303 An", True),
])
def test_names(name: str, ok: bool) -> None:
    form = replace(VALID, name=name)
    if ok:
        assert validate(form, today=TODAY).name
    else:
        assert set(codes(form)) == {"name"}


def test_decomposed_diacritics_are_stored_composed() -> None:
    assert validate(replace(VALID, name="Nguye\u0302\u0303n Va\u0306n An"), today=TODAY).name == "Nguyễn Văn An"


def test_citizen_id_has_12_digits_and_encodes_the_birth_year() -> None:
    assert validate(replace(VALID, national_id="015 058 001 234"), today=TODAY).national_id == "015058001234"
    assert codes(replace(VALID, national_id="01505800123")) == {"national_id": "national_id_format"}
    assert codes(replace(VALID, national_id="015059001234")) == {"national_id": "national_id_birth_mismatch"}
    # 4th digit 2/3: born in the 2000s
    assert validate(replace(VALID, birth_year="2004", national_id="001304001234"), today=TODAY).birth_year == 2004


@pytest.mark.parametrize(("number", "ok"), [
    ("0123456789", True), ("GD4797931234567", True), ("gd 479 793 1234567", True), ("HT3011234567890", True),
    ("012345678", False), ("GD6797931234567", False), ("G14797931234567", False), ("GD479793123456", False),
])
def test_health_insurance_numbers_new_and_old_formats(number: str, ok: bool) -> None:
    form = replace(VALID, insurance_number=number)
    if ok:
        assert validate(form, today=TODAY).insurance_number == number.replace(" ", "").upper()
    else:
        assert codes(form) == {"insurance_number": "insurance_format"}


def test_unknown_commune_codes_are_refused_and_known_ones_padded() -> None:
    for bad in ("99999", "123456", "abc", "0445６"):
        assert codes(replace(VALID, commune_code=bad)) == {"commune_code": "commune_unknown"}
    assert validate(replace(VALID, commune_code="4456"), today=TODAY).commune_code == "04456"


def test_a_man_cannot_be_flagged_pregnant() -> None:
    assert codes(replace(VALID, key_groups=("pregnant",))) == {"key_groups": "pregnant_male"}
    assert validate(replace(VALID, sex="female", key_groups=("pregnant",), national_id=""), today=TODAY).key_groups == (
        KeyGroup.pregnant,)


def test_places_come_from_the_2025_administrative_units() -> None:
    assert len(provinces()) == 34
    assert sum(len(communes_of(p.code)) for p in provinces()) == 3321
    lao_cai = province("15")
    assert lao_cai is not None and lao_cai.name == "Lào Cai"
    found = commune("04456")
    assert found is not None and found.name == "Xã Mù Cang Chải" and found.province_code == "15"
    assert [c.code for c in search_communes("15", "mu cang chai")] == ["04456"]
    assert province("99") is None and communes_of("99") == () and commune("") is None
