"""The visit summary a patient leaves with: advice, medicines and how to take them, the follow-up date,
and the warning signs that should bring them back — in plain words, Vietnamese or English.

The doctor chooses what goes in (`SummaryChoice`) when signing the note; the same function builds what
the doctor previews, what the patient's page shows and the SMS, so what the doctor saw is what the
patient gets. The SMS is unaccented (one GSM-7 segment holds 160 characters; see care/sms.py). When the
whole summary does not fit in one segment, the SMS carries a link to the full summary and is cut, at a
line, to at most `MAX_SMS_SEGMENTS` segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from care.sms import Sms, count_segments, unaccent

__all__ = [
    "MAX_SMS_SEGMENTS", "Medicine", "WarningSign", "SummaryChoice", "Section", "VisitSummary",
    "SummaryError", "build", "sms_text", "warning_sign_label",
]

# A summary SMS costs at most this many segments; the rest is behind the link.
MAX_SMS_SEGMENTS = 3
MAX_MEDICINES = 12
MAX_ADVICE = 1000
MAX_FIELD = 120


class SummaryError(ValueError):
    """A summary that cannot be built as given; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Medicine:
    """One line of the prescription: "Amlodipin", "5 mg", "1 viên buổi sáng"."""

    drug: str
    dose: str = ""
    how: str = ""

    def __post_init__(self) -> None:
        if not self.drug.strip():
            raise SummaryError("medicines", "a medicine needs a name")
        for name in ("drug", "dose", "how"):
            if len(getattr(self, name)) > MAX_FIELD:
                raise SummaryError("medicines", f"a medicine's {name} is longer than {MAX_FIELD} characters")

    def line(self) -> str:
        head = " ".join(part for part in (self.drug.strip(), self.dose.strip()) if part)
        return f"{head}: {self.how.strip()}" if self.how.strip() else head


class WarningSign(StrEnum):
    """Signs that should bring the patient back at once (or make them call 115)."""

    breathing = "breathing"
    chest_pain = "chest_pain"
    high_fever = "high_fever"
    confusion = "confusion"
    fainting = "fainting"
    bleeding = "bleeding"
    severe_headache = "severe_headache"
    cannot_drink = "cannot_drink"
    worse = "worse"


# Plain words, no symbols outside GSM-7 (no "°"), so the unaccented SMS stays in GSM-7.
_SIGNS: dict[str, dict[WarningSign, str]] = {
    "vi": {
        WarningSign.breathing: "Khó thở",
        WarningSign.chest_pain: "Đau ngực",
        WarningSign.high_fever: "Sốt cao từ 39 độ, hoặc sốt quá 3 ngày",
        WarningSign.confusion: "Lú lẫn, ngủ li bì",
        WarningSign.fainting: "Ngất, choáng",
        WarningSign.bleeding: "Chảy máu",
        WarningSign.severe_headache: "Đau đầu dữ dội, nhìn mờ, yếu một bên người",
        WarningSign.cannot_drink: "Không uống được, nôn liên tục",
        WarningSign.worse: "Mệt hơn, hoặc không đỡ",
    },
    "en": {
        WarningSign.breathing: "Difficulty breathing",
        WarningSign.chest_pain: "Chest pain",
        WarningSign.high_fever: "Fever of 39 degrees or more, or fever for over 3 days",
        WarningSign.confusion: "Confusion or very drowsy",
        WarningSign.fainting: "Fainting",
        WarningSign.bleeding: "Bleeding",
        WarningSign.severe_headache: "Severe headache, blurred vision, or weakness on one side",
        WarningSign.cannot_drink: "Cannot drink, or keeps vomiting",
        WarningSign.worse: "Feeling worse, or not getting better",
    },
}

_TITLES: dict[str, dict[str, str]] = {
    "vi": {"advice": "Lời dặn của bác sĩ", "medicines": "Thuốc", "follow_up": "Hẹn tái khám",
           "warning": "Quay lại khám ngay, hoặc gọi 115, nếu có", "contact": "Cần hỏi thêm"},
    "en": {"advice": "The doctor's advice", "medicines": "Medicines", "follow_up": "Follow-up visit",
           "warning": "Come back at once, or call 115, if you have", "contact": "Questions"},
}

_PHRASES: dict[str, dict[str, str]] = {
    "vi": {"follow_up": "Ngày {date}", "contact": "Gọi {facility}: {phone}",
           "sms_head": "{fac}: tom tat kham", "sms_more": "Xem day du: {url}"},
    "en": {"follow_up": "On {date}", "contact": "Call {facility}: {phone}",
           "sms_head": "{fac}: visit summary", "sms_more": "Full summary: {url}"},
}

# SMS labels (unaccented Vietnamese), short: every character counts.
_SMS_LABELS: dict[str, dict[str, str]] = {
    "vi": {"medicines": "Thuoc", "follow_up": "Tai kham", "warning": "Kham lai ngay/goi 115 neu",
           "advice": "Loi dan"},
    "en": {"medicines": "Medicines", "follow_up": "Follow-up", "warning": "Come back/call 115 if",
           "advice": "Advice"},
}


def _lang(lang: str) -> str:
    return lang if lang in _TITLES else "vi"


def warning_sign_label(sign: WarningSign, lang: str) -> str:
    return _SIGNS[_lang(lang)][sign]


@dataclass(frozen=True)
class SummaryChoice:
    """What the doctor chose to share. Medicines and the follow-up date come from the note itself."""

    advice: str = ""
    medicines: bool = True
    follow_up: bool = True
    warning_signs: tuple[WarningSign, ...] = ()
    other_warning: str = ""
    sms: bool = True

    def __post_init__(self) -> None:
        if len(self.advice) > MAX_ADVICE:
            raise SummaryError("summary.advice", f"the advice is longer than {MAX_ADVICE} characters")
        if len(self.other_warning) > MAX_FIELD:
            raise SummaryError("summary.other_warning", f"the other warning sign is longer than {MAX_FIELD} "
                                                         "characters")

    def as_dict(self) -> dict[str, object]:
        return {"advice": self.advice, "medicines": self.medicines, "follow_up": self.follow_up,
                "warning_signs": [s.value for s in self.warning_signs], "other_warning": self.other_warning,
                "sms": self.sms}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SummaryChoice:
        signs = data.get("warning_signs") or []
        assert isinstance(signs, list)
        return cls(advice=str(data.get("advice", "")), medicines=bool(data.get("medicines", True)),
                   follow_up=bool(data.get("follow_up", True)),
                   warning_signs=tuple(WarningSign(str(s)) for s in signs),
                   other_warning=str(data.get("other_warning", "")), sms=bool(data.get("sms", True)))


@dataclass(frozen=True)
class Section:
    key: str  # advice | medicines | follow_up | warning | contact
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class VisitSummary:
    """The summary in one language, section by section, as the patient's page shows it."""

    lang: str
    sections: tuple[Section, ...]

    @property
    def empty(self) -> bool:
        return not any(s.key != "contact" for s in self.sections)

    def as_dict(self) -> dict[str, object]:
        return {"lang": self.lang,
                "sections": [{"key": s.key, "title": s.title, "lines": list(s.lines)} for s in self.sections]}


def _paragraphs(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.strip().splitlines() if line.strip())


def build(choice: SummaryChoice, *, medicines: tuple[Medicine, ...], follow_up_on: date | None, lang: str,
          facility: str = "", phone: str | None = None) -> VisitSummary:
    """The patient's summary: only what the doctor chose, in the order a patient reads it."""
    lang = _lang(lang)
    titles, phrases = _TITLES[lang], _PHRASES[lang]
    sections: list[Section] = []
    if choice.advice.strip():
        sections.append(Section("advice", titles["advice"], _paragraphs(choice.advice)))
    if choice.medicines and medicines:
        sections.append(Section("medicines", titles["medicines"], tuple(m.line() for m in medicines)))
    if choice.follow_up and follow_up_on is not None:
        sections.append(Section("follow_up", titles["follow_up"],
                                (phrases["follow_up"].format(date=follow_up_on.strftime("%d/%m/%Y")),)))
    signs = [warning_sign_label(s, lang) for s in dict.fromkeys(choice.warning_signs)]
    if choice.other_warning.strip():
        signs.append(choice.other_warning.strip())
    if signs:
        sections.append(Section("warning", titles["warning"], tuple(signs)))
    if phone and sections:
        sections.append(Section("contact", titles["contact"],
                                (phrases["contact"].format(facility=facility, phone=phone),)))
    return VisitSummary(lang, tuple(sections))


# Characters outside GSM-7 that doctors type often, and what an SMS says instead.
_GSM_FRIENDLY = str.maketrans({"–": "-", "—": "-", "“": '"', "”": '"', "‘": "'", "’": "'", "…": "...",
                               "°": " do", "×": "x", "•": "-", "\t": " "})


def _sms_safe(text: str) -> str:
    return " ".join(unaccent(text).translate(_GSM_FRIENDLY).split())


def sms_text(summary: VisitSummary, *, facility_short: str, visit_day: date, url: str | None) -> Sms:
    """The summary as one SMS when it fits in one segment; otherwise with a link to the full summary
    (when there is one) and cut at a line so it costs at most MAX_SMS_SEGMENTS segments."""
    labels = _SMS_LABELS[summary.lang]
    phrases = _PHRASES[summary.lang]
    head = f"{phrases['sms_head'].format(fac=facility_short)} {visit_day.strftime('%d/%m')}."
    by_key = {s.key: s for s in summary.sections}
    lines: list[str] = []
    # Medicines, follow-up and warning signs first: they matter most if the message is cut.
    if "medicines" in by_key:
        lines.append(f"{labels['medicines']}: " + "; ".join(by_key["medicines"].lines) + ".")
    if "follow_up" in by_key:  # "Ngày 28/12/2026" / "On 28/12/2026": the date is the last word
        lines.append(f"{labels['follow_up']}: " + by_key["follow_up"].lines[0].split(" ")[-1] + ".")
    if "warning" in by_key:
        lines.append(f"{labels['warning']}: " + "; ".join(s.lower() for s in by_key["warning"].lines) + ".")
    if "advice" in by_key:
        lines.append(f"{labels['advice']}: " + " ".join(by_key["advice"].lines))
    safe = [_sms_safe(line) for line in [head, *lines]]
    whole = "\n".join(safe)
    counted = count_segments(whole)
    if counted.segments <= 1:
        return Sms(whole, counted.encoding, counted.segments)
    tail = [_sms_safe(phrases["sms_more"].format(url=url))] if url else []
    kept = list(safe)
    while True:
        text = "\n".join(kept + tail)
        counted = count_segments(text)
        if counted.segments <= MAX_SMS_SEGMENTS or len(kept) <= 1:
            break
        last = kept[-1]
        words = last.split(" ")
        if len(words) > 4:  # shorten the last line a few words at a time before dropping it
            kept[-1] = " ".join(words[:-4]) + "..."
        else:
            kept.pop()
    return Sms(text, counted.encoding, counted.segments)
