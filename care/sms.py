"""SMS texts for invitations and reminders, and how many segments (billed messages) each costs.

An SMS is 160 GSM-7 characters, or only 70 when any character falls outside the GSM-7 alphabet and the
whole message switches to UCS-2. Longer texts are split into segments of 153 (GSM-7) or 67 (UCS-2)
units and each segment is billed. Vietnamese with diacritics ("Trạm Y tế", "khám") is not GSM-7, so an
accented message costs two to three times as much and is cut more often on cheap phones. That is why
Vietnamese SMS from clinics, banks and carriers are commonly sent without diacritics ("Tram Y te",
"kham"), and every Vietnamese text here is unaccented: people read it without difficulty.

Links in messages are short links (`<public URL>/s/<code>`, a random code of 12 letters and digits)
rather than the signed join token (a JWT of about 220 characters), so an invitation with the station's
phone number fits one GSM-7 segment (160 characters) when the public URL is at most 55 characters
(tests/unit/test_short_codes.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from care.appointments import FACILITY_TZ

__all__ = [
    "Encoding", "Segments", "Sms", "MessageKind", "count_segments", "is_gsm7", "unaccent",
    "short_facility_name", "local_time_text", "compose",
]

# GSM 03.38 basic character set (the escape character 0x1B is not a character of its own).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two units (escape + character).
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_UNITS = {"gsm7": 160, "ucs2": 70}
PART_UNITS = {"gsm7": 153, "ucs2": 67}  # a concatenated part loses 7 (GSM-7) or 3 (UCS-2) units to its header


class Encoding(StrEnum):
    gsm7 = "gsm7"
    ucs2 = "ucs2"


@dataclass(frozen=True)
class Segments:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def is_gsm7(text: str) -> bool:
    """Can `text` be sent in the GSM-7 alphabet (basic set plus extension table)?"""
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text)


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.gsm7:
        return [2 if ch in _GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # a surrogate pair is two UTF-16 units


def count_segments(text: str) -> Segments:
    """Encoding, units and the number of segments a phone network bills for `text`.

    An escape pair (GSM-7) or a surrogate pair (UCS-2) is never split across two parts, so a part may
    hold one unit less than its nominal size.
    """
    encoding = Encoding.gsm7 if is_gsm7(text) else Encoding.ucs2
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    if units <= SINGLE_UNITS[encoding]:
        return Segments(encoding, units, 1 if units else 0)
    limit = PART_UNITS[encoding]
    segments, used = 1, 0
    for size in sizes:
        if used + size > limit:
            segments, used = segments + 1, 0
        used += size
    return Segments(encoding, units, segments)


_STROKED_D = str.maketrans({"đ": "d", "Đ": "D"})


def unaccent(text: str) -> str:
    """Vietnamese without diacritics, case kept: "Trạm Y tế xã Mù Cang Chải" → "Tram Y te xa Mu Cang Chai"."""
    decomposed = unicodedata.normalize("NFD", text.translate(_STROKED_D))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare)


# Abbreviations every Vietnamese reader knows from signs and SMS, longest first.
_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("benh vien da khoa", "BVDK"),
    ("trung tam y te", "TTYT"),
    ("tram y te", "TYT"),
    ("benh vien", "BV"),
    ("phong kham", "PK"),
    ("khu vuc", "KV"),
)


def short_facility_name(name: str, max_length: int = 24) -> str:
    """A facility name for an SMS: unaccented, usual abbreviations ("TYT xa Mu Cang Chai"), at most
    `max_length` characters."""
    short = " ".join(unaccent(name).split())
    for long, abbreviation in _ABBREVIATIONS:
        short = re.sub(rf"\b{long}\b", abbreviation, short, flags=re.IGNORECASE)
    if len(short) > max_length:
        cut = short[:max_length + 1].rsplit(" ", 1)[0]  # whole words only, unless one word is too long
        short = cut if 0 < len(cut) <= max_length else short[:max_length]
    return short


def local_time_text(at: datetime) -> str:
    """"14:30 25/11" in the facility's zone (`at` must be timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError("a timezone-aware time is needed")
    return at.astimezone(FACILITY_TZ).strftime("%H:%M %d/%m")


class MessageKind(StrEnum):
    invitation = "invitation"
    reminder_day_before = "reminder_day_before"
    reminder_15_min = "reminder_15_min"
    queue_near = "queue_near"
    rescheduled = "rescheduled"
    revoked = "revoked"
    no_show = "no_show"  # to a patient marked no-show: a fresh link to queue again
    danger_alert = "danger_alert"  # to the on-call clinician: danger signs and nobody online
    escalation_offer = "escalation_offer"  # to a specialist with no page open: an urgent request offered


# {fac}: facility short name; {when}: "14:30 25/11"; {time}: "14:30"; {url}: the join link; {minutes}: a number.
# Unaccented Vietnamese (see the module docstring), as short as stays clear.
_TEXTS: dict[str, dict[tuple[MessageKind, bool], str]] = {
    "vi": {
        (MessageKind.invitation, False): "{fac}: moi kham benh qua video. Link: {url}{call}",
        (MessageKind.invitation, True): "{fac}: hen kham video {when}. Link: {url}{call}",
        (MessageKind.reminder_day_before, True): "{fac}: nhac hen kham {time} ngay mai. Link: {url}",
        (MessageKind.reminder_15_min, True): "{fac}: con 15 phut den gio kham ({time}). Link: {url}",
        (MessageKind.queue_near, False): "{fac}: khoang {minutes} phut nua bac si kham. Link: {url}",
        (MessageKind.rescheduled, True): "{fac}: doi hen sang {when}. Link moi: {url}",
        (MessageKind.revoked, True): "{fac}: lich hen kham {when} da huy, link cu khong dung duoc nua. "
                                     "Can kham, {call_station}.",
        (MessageKind.revoked, False): "{fac}: link kham qua video da huy, khong dung duoc nua. "
                                      "Can kham, {call_station}.",
        (MessageKind.no_show, False): "{fac}: bac si goi luc ban vang. Link moi: {url}",
        (MessageKind.danger_alert, False): "{fac}: BN co dau hieu nguy hiem ({level}), khong bac si nao truc "
                                           "tuyen. Xem ngay: {url}",
        (MessageKind.escalation_offer, False): "{fac}: KHAN, xin y kien {spec}: {url}",
    },
    "en": {
        (MessageKind.invitation, False): "{fac}: video consultation link: {url}{call}",
        (MessageKind.invitation, True): "{fac}: video appointment {when}. Link: {url}{call}",
        (MessageKind.reminder_day_before, True): "{fac}: appointment tomorrow {time}. Link: {url}",
        (MessageKind.reminder_15_min, True): "{fac}: appointment in 15 min ({time}). Link: {url}",
        (MessageKind.queue_near, False): "{fac}: the doctor sees you in ~{minutes} min. Link: {url}",
        (MessageKind.rescheduled, True): "{fac}: moved to {when}. New link: {url}",
        (MessageKind.revoked, True): "{fac}: appointment {when} cancelled; the link no longer works. "
                                     "If needed, {call_station}.",
        (MessageKind.revoked, False): "{fac}: video consultation link cancelled; it no longer works. "
                                      "If needed, {call_station}.",
        (MessageKind.no_show, False): "{fac}: you missed the doctor. New link: {url}",
        (MessageKind.danger_alert, False): "{fac}: patient with danger signs ({level}), no doctor online. "
                                           "See now: {url}",
        (MessageKind.escalation_offer, False): "{fac}: URGENT {spec} opinion asked: {url}",
    },
}

# The station's number, when known: {call} after a link, {call_station} in a sentence.
_CALL: dict[str, dict[bool, tuple[str, str]]] = {
    "vi": {True: (" Hoi: {phone}", "goi {phone}"), False: ("", "xin goi tram y te")},
    "en": {True: (" Help: {phone}", "call {phone}"), False: ("", "call your health station")},
}


@dataclass(frozen=True)
class Sms:
    text: str
    encoding: Encoding
    segments: int


# An escalation offer must fit one segment (with a public URL of up to 55 characters): the facility name,
# then the specialty, are cut further until it does.
_OFFER_LENGTHS = ((24, 20), (16, 20), (10, 20), (10, 12))


def compose(kind: MessageKind, lang: str, *, facility: str, url: str = "", slot_at: datetime | None = None,
            minutes: int | None = None, phone: str | None = None, level: str = "", specialty: str = "") -> Sms:
    """The text of one message and its segment count. `facility` is the full name (shortened here);
    `slot_at` makes it an appointment text; queue_near needs `minutes`; `phone` is the station's number,
    given in invitations and cancellations when known; danger_alert needs the triage `level`;
    escalation_offer needs the `specialty` name (unaccented and cut to at most 20 characters here)."""
    texts = _TEXTS.get(lang, _TEXTS["vi"])
    call, call_station = _CALL.get(lang, _CALL["vi"])[bool(phone)]
    has_slot = slot_at is not None
    template = texts.get((kind, has_slot)) or texts.get((kind, not has_slot))
    if template is None:  # pragma: no cover - every kind has a text in both languages
        raise ValueError(f"no {lang} text for {kind}")
    if ("{when}" in template or "{time}" in template) and slot_at is None:
        raise ValueError(f"a {kind} message needs the appointment time")
    if "{minutes}" in template and minutes is None:
        raise ValueError(f"a {kind} message needs the number of minutes")
    lengths = _OFFER_LENGTHS if kind is MessageKind.escalation_offer else _OFFER_LENGTHS[:1]
    for max_length, spec_length in lengths:
        spec = " ".join(unaccent(specialty).split())[:spec_length].strip()
        text = template.format(fac=short_facility_name(facility, max_length), url=url,
                               when=local_time_text(slot_at) if slot_at else "",
                               time=local_time_text(slot_at)[:5] if slot_at else "", minutes=minutes, level=level,
                               call=call.format(phone=phone), call_station=call_station.format(phone=phone),
                               spec=spec)
        counted = count_segments(text)
        if counted.segments <= 1:
            break
    return Sms(text, counted.encoding, counted.segments)
