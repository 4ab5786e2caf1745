"""Vietnamese mobile numbers: every written form people use parses to one E.164 number; the rest is
refused with a stable code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.phone import PhoneError, mask, national, parse_mobile


@pytest.mark.parametrize("typed", [
    "0912345678", "0912 345 678", "091.234.5678", "0912-345-678", "+84912345678", "+84 912 345 678",
    "84912345678", "0084912345678", "+84 (0) 912 345 678", "(+84) 912.345.678", " 0912345678 ",
])
def test_every_written_form_gives_the_same_e164_number(typed: str) -> None:
    assert parse_mobile(typed) == "+84912345678"


@pytest.mark.parametrize("prefix", ["03", "05", "07", "08", "09"])
def test_current_mobile_prefixes_are_accepted(prefix: str) -> None:
    assert parse_mobile(f"{prefix}12345678") == f"+84{prefix[1]}12345678"


@pytest.mark.parametrize(("typed", "code"), [
    ("", "phone_empty"),
    (" - . ", "phone_empty"),
    ("0912abc678", "phone_characters"),
    ("09123456７8", "phone_characters"),  # a full-width digit is not an ASCII digit
    ("0912+345678", "phone_characters"),
    ("+1 415 555 0100", "phone_country"),
    ("+66 81 234 5678", "phone_country"),
    ("091234567", "phone_length"),  # 9 digits
    ("09123456789", "phone_length"),  # 11 digits
    ("912345678", "phone_length"),  # the 0 is missing
    ("+8491234567", "phone_length"),
    ("0243 825 1234", "phone_not_mobile"),  # Hà Nội landline (11 digits, 02x)
    ("+84 24 3825 1234", "phone_not_mobile"),
    ("0112345678", "phone_not_mobile"),
    ("0612345678", "phone_not_mobile"),
    ("0212345678", "phone_not_mobile"),
])
def test_anything_else_is_refused_with_a_stable_code(typed: str, code: str) -> None:
    with pytest.raises(PhoneError) as caught:
        parse_mobile(typed)
    assert caught.value.code == code
    assert caught.value.message


@given(st.sampled_from("35789"), st.text(alphabet="0123456789", min_size=8, max_size=8),
       st.sampled_from(["0", "+84", "84", "+84 ", "0084"]), st.sampled_from(["", " ", ".", "-"]))
def test_any_mobile_number_in_any_form_round_trips(first: str, rest: str, lead: str, sep: str) -> None:
    subscriber = first + rest
    typed = lead + sep.join([subscriber[:2], subscriber[2:5], subscriber[5:]])
    e164 = parse_mobile(typed)
    assert e164 == "+84" + subscriber
    assert parse_mobile(national(e164)) == e164


@given(st.text(max_size=30))
def test_parse_never_fails_with_anything_but_phone_error(text: str) -> None:
    try:
        result = parse_mobile(text)
    except PhoneError:
        return
    assert result.startswith("+84") and len(result) == 12 and result[1:].isdigit()


def test_national_form_and_mask_show_only_the_last_three_digits() -> None:
    assert national("+84912345678") == "0912 345 678"
    assert mask("+84912345678") == "0••• ••• 678"
    assert mask("0243825123") .endswith("123") and "3825" not in mask("0243825123")
