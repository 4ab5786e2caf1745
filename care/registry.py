"""What a patient registration must satisfy before it is stored.

A health station registers people from what they say and what their papers show; typing mistakes are
normal. :func:`validate` checks every field at once and reports each problem with the field and a
stable code, so the form can show all of them next to their fields and nothing is saved half-way.

    >>> r = validate(RegistrationInput(name=" Nguyễn  Văn An ", sex="male", birth_year="1958",
    ...                                phone="0912 345 678", commune_code="04456"), today=date(2026, 1, 1))
    >>> r.name, r.phone, r.birth_year
    ('Nguyễn Văn An', '+84912345678', 1958)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from care import places
from care.phone import PhoneError, parse_mobile
from care.triage import KeyGroup

__all__ = [
    "MAX_AGE_YEARS",
    "FieldError",
    "Registration",
    "RegistrationError",
    "RegistrationInput",
    "Sex",
    "validate",
]

NAME_MAX = 100
ADDRESS_MAX = 200
# Oldest plausible age at registration; Vietnam's oldest documented people were ~120.
MAX_AGE_YEARS = 120


class Sex(StrEnum):
    female = "female"
    male = "male"
    other = "other"


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str


class RegistrationError(ValueError):
    """One or more fields are wrong; `errors` lists each (field, code, message)."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    def codes(self) -> dict[str, str]:
        """field → code of its first error."""
        out: dict[str, str] = {}
        for e in self.errors:
            out.setdefault(e.field, e.code)
        return out


@dataclass(frozen=True)
class RegistrationInput:
    """The form as typed: every value a string ("" when left empty), key groups as submitted."""

    name: str = ""
    sex: str = ""
    birth_year: str = ""
    birth_date: str = ""  # ISO yyyy-mm-dd (an <input type=date>)
    phone: str = ""
    commune_code: str = ""
    address_detail: str = ""
    national_id: str = ""
    insurance_number: str = ""
    key_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registration:
    """A valid registration, normalized: the phone in E.164, codes without spaces, the name tidied."""

    name: str
    sex: Sex
    birth_year: int
    birth_date: date | None
    phone: str | None
    commune_code: str | None
    address_detail: str
    national_id: str | None
    insurance_number: str | None
    key_groups: tuple[KeyGroup, ...] = field(default=())


_NAME_CHARS = re.compile(r"[^\W\d_]+(?:[ '\-.][^\W\d_]+)*\.?")
# CCCD (citizen identity card, 12 digits): 3 digits province of birth registration, 1 digit century and
# sex, 2 digits year of birth, 6 digits serial (Circular 07/2016/TT-BCA, art. 7; Circular 59/2021/TT-BCA).
_NATIONAL_ID = re.compile(r"\d{12}")
# Health-insurance number. Since 2021 the card carries the 10-digit social-insurance code (mã số BHXH,
# Decision 1666/QĐ-BHXH, 2020). Older cards, still in use and in records, carry a 15-character code:
# 2 letters (beneficiary group, e.g. "HT", "GD"), 1 digit benefit level (1-5), 2 digits province, then the
# same 10-digit BHXH code (Decision 1351/QĐ-BHXH, 2015).
_INSURANCE_NEW = re.compile(r"\d{10}")
_INSURANCE_OLD = re.compile(r"[A-Z]{2}[1-5]\d{2}\d{10}")
_SPACES = re.compile(r"[\s.\-]")


def _tidy_name(raw: str) -> str:
    return " ".join(unicodedata.normalize("NFC", raw).split())


def _birth_year_in_id(national_id: str) -> int:
    """Birth year encoded in a CCCD: the 4th digit gives century (0/1 → 1900s, 2/3 → 2000s, …)."""
    century = 1900 + (int(national_id[3]) // 2) * 100
    return century + int(national_id[4:6])


def validate(form: RegistrationInput, *, today: date) -> Registration:
    """Check and normalize a registration; raise :class:`RegistrationError` listing every wrong field."""
    errors: list[FieldError] = []

    def fail(field_name: str, code: str, message: str) -> None:
        errors.append(FieldError(field_name, code, message))

    name = _tidy_name(form.name)
    if not name:
        fail("name", "name_required", "the name is required")
    elif len(name) > NAME_MAX:
        fail("name", "name_too_long", f"a name has at most {NAME_MAX} characters")
    elif len(name) < 2 or not _NAME_CHARS.fullmatch(name):
        fail("name", "name_characters", "a name has letters (with or without diacritics), not digits or symbols")

    sex: Sex | None = None
    try:
        sex = Sex(form.sex.strip())
    except ValueError:
        fail("sex", "sex_required", "choose female, male or other")

    birth_date: date | None = None
    if form.birth_date.strip():
        try:
            birth_date = date.fromisoformat(form.birth_date.strip())
        except ValueError:
            fail("birth_date", "birth_date_invalid", "the birth date is not a date (dd/mm/yyyy)")
        else:
            if birth_date > today:
                fail("birth_date", "birth_in_future", "the birth date is in the future")
                birth_date = None
            elif birth_date.year < today.year - MAX_AGE_YEARS:
                fail("birth_date", "birth_too_early", f"that would make the patient older than {MAX_AGE_YEARS}")
                birth_date = None
    birth_year: int | None = None
    year_text = form.birth_year.strip()
    if year_text:
        if not (year_text.isascii() and year_text.isdigit() and len(year_text) == 4):
            fail("birth_year", "birth_year_invalid", "the birth year has four digits, e.g. 1958")
        else:
            birth_year = int(year_text)
            if birth_year > today.year:
                fail("birth_year", "birth_in_future", "the birth year is in the future")
                birth_year = None
            elif birth_year < today.year - MAX_AGE_YEARS:
                fail("birth_year", "birth_too_early", f"that would make the patient older than {MAX_AGE_YEARS}")
                birth_year = None
            elif birth_date is not None and birth_date.year != birth_year:
                fail("birth_year", "birth_year_mismatch", "the birth year does not match the birth date")
                birth_year = birth_date = None  # which one is wrong is unknown: check nothing against either
    if birth_date is not None:
        birth_year = birth_date.year
    if birth_year is None and not any(e.field in ("birth_year", "birth_date") for e in errors):
        fail("birth_year", "birth_required", "give the birth year (or the full birth date)")

    phone: str | None = None
    if form.phone.strip():
        try:
            phone = parse_mobile(form.phone)
        except PhoneError as exc:
            fail("phone", exc.code, exc.message)

    commune_code: str | None = None
    if form.commune_code.strip():
        found = places.commune(form.commune_code)
        if found is None:
            fail("commune_code", "commune_unknown", "there is no commune with this code")
        else:
            commune_code = found.code

    address_detail = " ".join(form.address_detail.split())
    if len(address_detail) > ADDRESS_MAX:
        fail("address_detail", "address_too_long", f"the address has at most {ADDRESS_MAX} characters")

    national_id: str | None = _SPACES.sub("", form.national_id) or None
    if national_id is not None:
        if not (national_id.isascii() and _NATIONAL_ID.fullmatch(national_id)):
            fail("national_id", "national_id_format", "a citizen ID (CCCD) has 12 digits")
            national_id = None
        elif birth_year is not None and _birth_year_in_id(national_id) != birth_year:
            fail("national_id", "national_id_birth_mismatch",
                 "digits 4-6 of the citizen ID do not match the birth year")

    insurance: str | None = _SPACES.sub("", form.insurance_number).upper() or None
    if insurance is not None and not (insurance.isascii() and (_INSURANCE_NEW.fullmatch(insurance)
                                                               or _INSURANCE_OLD.fullmatch(insurance))):
        fail("insurance_number", "insurance_format",
             "a health-insurance number has 10 digits (or 15 characters on older cards, e.g. GD4797931234567)")

    groups: list[KeyGroup] = []
    for raw in form.key_groups:
        try:
            group = KeyGroup(raw)
        except ValueError:
            fail("key_groups", "key_group_unknown", f"unknown key group {raw!r}")
            continue
        if group not in groups:
            groups.append(group)
    if KeyGroup.pregnant in groups and sex is Sex.male:
        fail("key_groups", "pregnant_male", "a patient recorded as male cannot be flagged pregnant")

    if errors:
        raise RegistrationError(errors)
    assert sex is not None and birth_year is not None
    return Registration(name=name, sex=sex, birth_year=birth_year, birth_date=birth_date, phone=phone,
                        commune_code=commune_code, address_detail=address_detail, national_id=national_id,
                        insurance_number=insurance, key_groups=tuple(sorted(groups, key=list(KeyGroup).index)))
