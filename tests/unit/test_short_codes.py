"""Short codes, and invitation SMS with short links and the station's phone: one segment."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.short_code import ALPHABET, LENGTH, is_code, new_code
from care.sms import Encoding, MessageKind, compose

SLOT = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
BASE = "https://kham.example.vn"
FACILITIES = ["Trạm Y tế xã Mù Cang Chải", "Trung tâm Y tế khu vực Mù Cang Chải", "Bệnh viện Đa khoa tỉnh Lào Cai",
              "Phòng khám đa khoa khu vực số 3 thành phố Lào Cai"]
PHONES = [None, "0216 3878 210", "+84 216 3878 210"]


def test_codes_are_12_letters_of_the_62_letter_alphabet_and_differ() -> None:
    assert len(ALPHABET) == 62 and set(ALPHABET) == set(string.ascii_letters + string.digits)
    codes = {new_code() for _ in range(1000)}
    assert len(codes) == 1000
    assert all(len(c) == LENGTH == 12 and set(c) <= set(ALPHABET) and is_code(c) for c in codes)


def test_a_code_shorter_than_ten_is_refused() -> None:
    with pytest.raises(ValueError):
        new_code(9)
    assert len(new_code(10)) == 10


@pytest.mark.parametrize(("text", "ok"), [
    ("AbCdEf012345", True), ("A" * 10, True), ("A" * 9, False), ("A" * 33, False), ("abc-def-ghij", False),
    ("ẢbCdEf012345", False), ("", False), ("AbCdEf01234 ", False), ("AbCdEf012345\n", False)])
def test_what_can_be_a_code(text: str, ok: bool) -> None:
    assert is_code(text) is ok


@given(st.text(max_size=40))
def test_anything_accepted_as_a_code_is_alphanumeric_ascii(text: str) -> None:
    if is_code(text):
        assert text.isascii() and text.isalnum() and 10 <= len(text) <= 32


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("facility", FACILITIES)
@pytest.mark.parametrize("phone", PHONES)
@pytest.mark.parametrize("slot", [None, SLOT])
def test_an_invitation_with_a_short_link_and_the_station_phone_is_one_gsm7_segment(
        lang: str, facility: str, phone: str | None, slot: datetime | None) -> None:
    url = f"{BASE}/s/{new_code()}"
    sms = compose(MessageKind.invitation, lang, facility=facility, url=url, slot_at=slot, phone=phone)
    assert sms.encoding is Encoding.gsm7 and sms.segments == 1, (sms.text, len(sms.text))
    assert len(sms.text) <= 160 and url in sms.text
    if phone:
        assert phone in sms.text


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_one_segment_holds_with_a_public_url_up_to_55_characters(lang: str) -> None:
    """The longest facility name, the longest phone form and the longest wording (an appointment)."""
    base = "https://" + "k" * 47
    assert len(base) == 55
    sms = compose(MessageKind.invitation, lang, facility=FACILITIES[3], url=f"{base}/s/{new_code()}",
                  slot_at=SLOT, phone="+84 216 3878 210")
    assert sms.segments == 1, len(sms.text)


@pytest.mark.parametrize(("lang", "phone", "expected"), [
    ("vi", "0216 3878 210", "Can kham, goi 0216 3878 210."),
    ("vi", None, "Can kham, xin goi tram y te."),
    ("en", "0216 3878 210", "If needed, call 0216 3878 210."),
    ("en", None, "If needed, call your health station."),
])
def test_a_cancellation_says_whom_to_call(lang: str, phone: str | None, expected: str) -> None:
    sms = compose(MessageKind.revoked, lang, facility=FACILITIES[0], slot_at=SLOT, phone=phone)
    assert sms.text.endswith(expected) and sms.segments == 1


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_message_with_a_short_link_is_one_segment(lang: str) -> None:
    url = f"{BASE}/s/{new_code()}"
    for kind in MessageKind:
        for slot in (None, SLOT):
            try:
                sms = compose(kind, lang, facility=FACILITIES[3], url=url, slot_at=slot, minutes=10,
                              phone="0216 3878 210")
            except ValueError:
                continue  # a kind that needs an appointment time
            assert sms.segments == 1 and sms.encoding is Encoding.gsm7, (kind, sms.text, len(sms.text))
