"""care.summary: the visit summary in plain words (vi/en), only what the doctor chose, and its SMS."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from care.sms import Encoding, count_segments
from care.summary import (
    MAX_SMS_SEGMENTS,
    Medicine,
    SummaryChoice,
    SummaryError,
    WarningSign,
    build,
    sms_text,
)

MEDS = (Medicine("Amlodipin", "5 mg", "1 viên buổi sáng"), Medicine("Paracetamol", "500 mg", "khi sốt trên 38.5"))
FOLLOW_UP = date(2026, 12, 28)
VISIT = date(2026, 11, 30)
URL = "https://kham.example.vn/s/AbCdEf012345"
FACILITY = "Trạm Y tế xã Mù Cang Chải"


def full(**kw: object) -> SummaryChoice:
    values: dict[str, object] = {"advice": "Ăn nhạt, bớt muối.\nĐo huyết áp mỗi tuần.",
                                 "warning_signs": (WarningSign.chest_pain, WarningSign.breathing)}
    values.update(kw)
    return SummaryChoice(**values)  # type: ignore[arg-type]


def test_the_vietnamese_page_has_each_part_in_plain_words() -> None:
    s = build(full(), medicines=MEDS, follow_up_on=FOLLOW_UP, lang="vi", facility=FACILITY, phone="0216 3878 210")
    assert [(x.key, x.title) for x in s.sections] == [
        ("advice", "Lời dặn của bác sĩ"), ("medicines", "Thuốc"), ("follow_up", "Hẹn tái khám"),
        ("warning", "Quay lại khám ngay, hoặc gọi 115, nếu có"), ("contact", "Cần hỏi thêm")]
    by = {x.key: x.lines for x in s.sections}
    assert by["advice"] == ("Ăn nhạt, bớt muối.", "Đo huyết áp mỗi tuần.")
    assert by["medicines"] == ("Amlodipin 5 mg: 1 viên buổi sáng", "Paracetamol 500 mg: khi sốt trên 38.5")
    assert by["follow_up"] == ("Ngày 28/12/2026",)
    assert by["warning"] == ("Đau ngực", "Khó thở")
    assert by["contact"] == ("Gọi Trạm Y tế xã Mù Cang Chải: 0216 3878 210",)


def test_the_english_page_says_the_same() -> None:
    s = build(full(advice="Less salt."), medicines=MEDS[:1], follow_up_on=FOLLOW_UP, lang="en")
    by = {x.key: (x.title, x.lines) for x in s.sections}
    assert by["advice"] == ("The doctor's advice", ("Less salt.",))
    assert by["medicines"] == ("Medicines", ("Amlodipin 5 mg: 1 viên buổi sáng",))
    assert by["follow_up"] == ("Follow-up visit", ("On 28/12/2026",))
    assert by["warning"][1] == ("Chest pain", "Difficulty breathing")
    assert "contact" not in by  # no phone number known


def test_only_what_the_doctor_chose_goes_in() -> None:
    s = build(SummaryChoice(medicines=False, follow_up=False), medicines=MEDS, follow_up_on=FOLLOW_UP, lang="vi",
              phone="0216 3878 210")
    assert s.sections == () and s.empty  # no contact line on an otherwise empty summary
    s = build(SummaryChoice(medicines=True, follow_up=False, other_warning="Phù chân"), medicines=MEDS,
              follow_up_on=FOLLOW_UP, lang="vi")
    assert [x.key for x in s.sections] == ["medicines", "warning"]
    assert s.sections[1].lines == ("Phù chân",)


def test_a_medicine_without_dose_or_instructions_is_just_its_name() -> None:
    assert Medicine("ORS").line() == "ORS"
    assert Medicine("ORS", how="pha 1 gói với 1 lít nước").line() == "ORS: pha 1 gói với 1 lít nước"


@pytest.mark.parametrize(("make", "field"), [
    (lambda: Medicine("  "), "medicines"),
    (lambda: Medicine("x" * 121), "medicines"),
    (lambda: SummaryChoice(advice="x" * 1001), "summary.advice"),
    (lambda: SummaryChoice(other_warning="x" * 121), "summary.other_warning"),
])
def test_bad_input_names_the_field(make: object, field: str) -> None:
    with pytest.raises(SummaryError) as refused:
        make()  # type: ignore[operator]
    assert refused.value.field == field


def test_a_short_summary_is_one_sms_without_a_link() -> None:
    s = build(SummaryChoice(warning_signs=(WarningSign.breathing,)), medicines=MEDS[:1], follow_up_on=FOLLOW_UP,
              lang="vi")
    sms = sms_text(s, facility_short="TYT xa Mu Cang Chai", visit_day=VISIT, url=URL)
    assert sms.segments == 1 and sms.encoding is Encoding.gsm7 and URL not in sms.text
    assert sms.text == ("TYT xa Mu Cang Chai: tom tat kham 30/11.\n"
                        "Thuoc: Amlodipin 5 mg: 1 vien buoi sang.\n"
                        "Tai kham: 28/12/2026.\n"
                        "Kham lai ngay/goi 115 neu: kho tho.")


def test_a_long_summary_carries_the_link_and_stays_within_three_segments() -> None:
    s = build(full(advice="Nghỉ ngơi, uống nhiều nước. " * 30), medicines=MEDS, follow_up_on=FOLLOW_UP, lang="vi")
    sms = sms_text(s, facility_short="TYT xa Mu Cang Chai", visit_day=VISIT, url=URL)
    assert sms.text.endswith(f"Xem day du: {URL}")
    assert sms.segments <= MAX_SMS_SEGMENTS and sms.encoding is Encoding.gsm7
    assert "Thuoc: Amlodipin" in sms.text and "Tai kham: 28/12/2026" in sms.text  # the essentials survive
    assert "kho tho" in sms.text and "..." in sms.text  # the advice was cut, not the warning signs


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_the_sms_is_gsm7_whatever_the_doctor_types(lang: str) -> None:
    s = build(full(advice="Nhiệt độ > 38.5 °C – uống “Paracetamol”…"), medicines=MEDS, follow_up_on=FOLLOW_UP,
              lang=lang)
    sms = sms_text(s, facility_short="TYT xa Mu Cang Chai", visit_day=VISIT, url=URL)
    assert sms.encoding is Encoding.gsm7, sms.text


@settings(max_examples=60)
@given(advice=st.text(max_size=1000), lang=st.sampled_from(["vi", "en"]),
       signs=st.lists(st.sampled_from(list(WarningSign)), max_size=9),
       meds=st.lists(st.tuples(st.text(min_size=1, max_size=120).filter(str.strip), st.text(max_size=120),
                               st.text(max_size=120)), max_size=12))
def test_no_summary_sms_costs_more_than_three_segments(advice: str, lang: str, signs: list[WarningSign],
                                                       meds: list[tuple[str, str, str]]) -> None:
    s = build(SummaryChoice(advice=advice, warning_signs=tuple(signs)),
              medicines=tuple(Medicine(*m) for m in meds), follow_up_on=FOLLOW_UP, lang=lang)
    sms = sms_text(s, facility_short="TYT xa Mu Cang Chai", visit_day=VISIT, url=URL)
    assert count_segments(sms.text).segments == sms.segments
    if sms.segments > 1:
        assert URL in sms.text and sms.segments <= MAX_SMS_SEGMENTS


def test_the_choice_round_trips_through_its_stored_form() -> None:
    choice = full(sms=False, other_warning="Phù chân")
    assert SummaryChoice.from_dict(choice.as_dict()) == choice
