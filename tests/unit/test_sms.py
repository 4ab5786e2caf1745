"""care.sms: GSM-7 detection, segment counting, unaccented Vietnamese texts, real message lengths."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.sms import (
    Encoding,
    MessageKind,
    compose,
    count_segments,
    is_gsm7,
    local_time_text,
    short_facility_name,
    unaccent,
)
from web.auth import LinkSigner, join_url

SLOT = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)  # 14:30 25/11 in Vietnam
COMMUNE = "Trạm Y tế xã Mù Cang Chải"


def real_url(base: str = "https://kham.example.vn") -> str:
    """A join URL exactly as the app makes it: a signed JWT with a key id, two days of validity."""
    return join_url(LinkSigner("k" * 64), base)(uuid.uuid4(), datetime.now(UTC) + timedelta(days=2))


@pytest.mark.parametrize(("text", "gsm"), [
    ("Tram Y te xa Mu Cang Chai", True),
    ("Trạm Y tế", False),
    ("đ", False),
    ("{[~]}^|\\€", True),  # the extension table
    ("é à ñ Ø Δ", True),  # in the basic set
    ("ê", False),
    ("😀", False),
])
def test_gsm7_detection(text: str, gsm: bool) -> None:
    assert is_gsm7(text) is gsm


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", Encoding.gsm7, 0, 0),
    ("a" * 160, Encoding.gsm7, 160, 1),
    ("a" * 161, Encoding.gsm7, 161, 2),
    ("a" * 306, Encoding.gsm7, 306, 2),
    ("a" * 307, Encoding.gsm7, 307, 3),
    ("€" * 80, Encoding.gsm7, 160, 1),  # each extension character costs two septets
    ("€" * 81, Encoding.gsm7, 162, 2),
    ("€" * 153, Encoding.gsm7, 306, 3),  # 76 pairs fit in a part of 153 septets: a pair is never split
    ("a" * 152 + "€" + "a" * 10, Encoding.gsm7, 164, 2),
    ("ạ" * 70, Encoding.ucs2, 70, 1),
    ("ạ" * 71, Encoding.ucs2, 71, 2),
    ("ạ" * 134, Encoding.ucs2, 134, 2),
    ("ạ" * 135, Encoding.ucs2, 135, 3),
    ("😀" * 35, Encoding.ucs2, 70, 1),  # surrogate pairs
])
def test_segment_counting(text: str, encoding: Encoding, units: int, segments: int) -> None:
    counted = count_segments(text)
    assert (counted.encoding, counted.units, counted.segments) == (encoding, units, segments)


def test_one_accented_letter_turns_a_one_segment_message_into_three() -> None:
    plain = "a" * 150
    assert count_segments(plain).segments == 1
    assert count_segments(plain + "ạ").segments == 3


@given(st.text(alphabet=st.sampled_from("aZ0 @€{ạđ😀"), max_size=400))
def test_segments_never_hold_more_than_their_size(text: str) -> None:
    counted = count_segments(text)
    single = 160 if counted.encoding is Encoding.gsm7 else 70
    part = 153 if counted.encoding is Encoding.gsm7 else 67
    if counted.units <= single:
        assert counted.segments == (1 if text else 0)
    else:
        assert counted.segments * part >= counted.units
        assert (counted.segments - 1) * part < counted.units + counted.segments  # at most one unit lost per part


def test_unaccent_keeps_case_and_maps_d_with_stroke() -> None:
    assert unaccent("Trạm Y tế xã Mù Cang Chải") == "Tram Y te xa Mu Cang Chai"
    assert unaccent("Đồng Hành, đường") == "Dong Hanh, duong"
    assert is_gsm7(unaccent("Nguyễn Thị Lan — Bệnh viện Đa khoa tỉnh Lào Cai").replace("—", "-"))


@pytest.mark.parametrize(("name", "short"), [
    ("Trạm Y tế xã Mù Cang Chải", "TYT xa Mu Cang Chai"),
    ("Trung tâm Y tế khu vực Mù Cang Chải", "TTYT KV Mu Cang Chai"),
    ("Bệnh viện Đa khoa tỉnh Lào Cai", "BVDK tinh Lao Cai"),
    ("Bệnh viện Nhi Trung ương", "BV Nhi Trung uong"),
    ("Phòng khám đa khoa khu vực số 3 thành phố Lào Cai", "PK da khoa KV so 3 thanh"),
])
def test_short_facility_names(name: str, short: str) -> None:
    assert short_facility_name(name) == short
    assert len(short) <= 24


def test_times_are_shown_in_vietnam() -> None:
    assert local_time_text(SLOT) == "14:30 25/11"
    assert local_time_text(datetime(2026, 12, 31, 17, 5, tzinfo=UTC)) == "00:05 01/01"
    with pytest.raises(ValueError):
        local_time_text(datetime(2026, 11, 25, 7, 30))


def _all_messages(url: str, facility: str) -> list[tuple[str, MessageKind, bool]]:
    out = []
    for lang in ("vi", "en"):
        for kind in MessageKind:
            for with_slot in (False, True):
                if kind in (MessageKind.reminder_day_before, MessageKind.reminder_15_min,
                            MessageKind.rescheduled) and not with_slot:
                    continue
                out.append((lang, kind, with_slot))
    return out


@pytest.mark.parametrize("facility", [
    "Trạm Y tế xã Mù Cang Chải", "Trung tâm Y tế khu vực Mù Cang Chải", "Bệnh viện Đa khoa tỉnh Lào Cai"])
def test_every_real_message_is_gsm7_and_at_most_two_segments(facility: str) -> None:
    """With a real signed link (about 240 characters) every message with a link takes two segments, the
    least possible (one holds 160); the cancellation notice has no link and fits in one."""
    url = real_url()
    assert 235 <= len(url) <= 250
    for lang, kind, with_slot in _all_messages(url, facility):
        sms = compose(kind, lang, facility=facility, url=url, slot_at=SLOT if with_slot else None, minutes=10)
        assert sms.encoding is Encoding.gsm7, sms.text
        assert sms.text.isascii(), sms.text
        if kind is MessageKind.revoked:
            assert url not in sms.text and sms.segments == 1, sms.text
        elif kind in (MessageKind.danger_alert, MessageKind.escalation_offer):  # to staff: see the tests below
            continue
        else:
            assert url in sms.text and sms.segments == 2, (sms.text, len(sms.text))


def test_vietnamese_texts_are_unaccented_and_carry_facility_time_and_link() -> None:
    url = real_url()
    sms = compose(MessageKind.invitation, "vi", facility=COMMUNE, url=url, slot_at=SLOT)
    assert sms.text == f"TYT xa Mu Cang Chai: hen kham video 14:30 25/11. Link: {url}"
    assert compose(MessageKind.reminder_15_min, "vi", facility=COMMUNE, url=url, slot_at=SLOT).text.startswith(
        "TYT xa Mu Cang Chai: con 15 phut den gio kham (14:30).")
    assert compose(MessageKind.queue_near, "en", facility=COMMUNE, url=url, minutes=8).text.startswith(
        "TYT xa Mu Cang Chai: the doctor sees you in ~8 min.")


def test_a_message_missing_its_time_or_minutes_is_refused() -> None:
    with pytest.raises(ValueError):
        compose(MessageKind.reminder_day_before, "vi", facility=COMMUNE, url="u")
    with pytest.raises(ValueError):
        compose(MessageKind.queue_near, "vi", facility=COMMUNE, url="u")


def test_the_on_call_alert_fits_one_segment_and_names_no_patient() -> None:
    for lang in ("vi", "en"):
        sms = compose(MessageKind.danger_alert, lang, facility="Trạm Y tế xã Mù Cang Chải",
                      url="https://donghanh.example.vn/staff", level="NC4")
        assert sms.encoding is Encoding.gsm7 and sms.segments == 1, sms.text
        assert "NC4" in sms.text and sms.text.endswith("https://donghanh.example.vn/staff")


@pytest.mark.parametrize("facility", ["Trạm Y tế xã Mù Cang Chải", "Trung tâm Y tế khu vực Mù Cang Chải",
                                      "Bệnh viện Đa khoa tỉnh Lào Cai"])
@pytest.mark.parametrize("specialty", ["Tim mạch", "Internal medicine", "Nội tiết - Đái tháo đường và chuyển hóa"])
def test_the_urgent_offer_to_a_specialist_fits_one_segment(facility: str, specialty: str) -> None:
    """Facility, specialty, urgency and the request page, in one GSM-7 segment even with a 55-character
    public URL (the facility name is cut further when needed); nothing about the patient."""
    url = "https://telehealth.benhvien-tinh-laocai.example.gov.vn/staff/escalations/" + str(uuid.UUID(int=1))
    for lang, word in (("vi", "KHAN"), ("en", "URGENT")):
        sms = compose(MessageKind.escalation_offer, lang, facility=facility, specialty=specialty, url=url)
        assert sms.encoding is Encoding.gsm7 and sms.segments == 1, (sms.text, len(sms.text))
        assert sms.text.endswith(url) and word in sms.text, sms.text
        assert unaccent(specialty)[:8] in sms.text and sms.text[:3] in ("TYT", "TTY", "BVD"), sms.text
    short = compose(MessageKind.escalation_offer, "vi", facility="Trạm Y tế xã Mù Cang Chải", specialty="Tim mạch",
                    url="https://dh.vn/staff/escalations/x")
    assert short.text == "TYT xa Mu Cang Chai: KHAN, xin y kien Tim mach: https://dh.vn/staff/escalations/x"


def test_every_message_kind_has_a_label_for_the_outbox() -> None:
    from web.invitation_texts import MESSAGE_KINDS

    assert {k.value for k in MessageKind} <= set(MESSAGE_KINDS)
