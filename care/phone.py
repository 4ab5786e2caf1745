"""Vietnamese mobile phone numbers: parsed from what people type, stored in E.164.

Staff copy numbers from paper registers, ID cards and old records, so the same
number arrives as "0912 345 678", "091.234.5678", "+84 912-345-678" or
"84912345678". :func:`parse_mobile` accepts all of them and returns one form,
``+84912345678``, which is what duplicate checks compare and SMS gateways take.

    >>> parse_mobile("091.234.5678")
    '+84912345678'
    >>> mask("+84912345678")
    '0••• ••• 678'
"""

from __future__ import annotations

import re

__all__ = ["PhoneError", "mask", "national", "parse_mobile"]

# Mobile numbers are 10 digits nationally (0 + 9) since the 2018 renumbering, starting 03, 05, 07, 08 or
# 09 (MIC Circular 22/2014/TT-BTTTT as amended; Decision 798/QĐ-BTTTT, 2018). The third digit is not
# checked: the regulator hands new blocks to operators (087 Itel, 099 Gmobile…) without notice to us.
MOBILE_LEADING_DIGITS = frozenset("35789")
COUNTRY_CODE = "84"
_SEPARATORS = re.compile(r"[\s.\-()]")
_ALLOWED = re.compile(r"\+?[0-9]*")


class PhoneError(ValueError):
    """A number that is not a Vietnamese mobile number; `code` is stable, `message` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_mobile(text: str) -> str:
    """Return ``text`` as an E.164 Vietnamese mobile number ("+84XXXXXXXXX") or raise :class:`PhoneError`.

    Accepted forms: ``0XXXXXXXXX``, ``+84XXXXXXXXX``, ``84XXXXXXXXX`` and ``0084XXXXXXXXX``, with spaces,
    dots, dashes or brackets anywhere, and a "(0)" after the country code ("+84 (0) 912…").
    Codes: ``phone_empty``, ``phone_characters``, ``phone_country`` (another country), ``phone_length``,
    ``phone_not_mobile`` (a landline such as 024…, or an unused prefix).
    """
    compact = _SEPARATORS.sub("", text)
    if not compact:
        raise PhoneError("phone_empty", "no phone number given")
    if not _ALLOWED.fullmatch(compact):
        raise PhoneError("phone_characters", "a phone number has only digits, and '+' at the start")
    international = compact.startswith("+") or compact.startswith("00")
    digits = compact.lstrip("+")
    if digits.startswith("00"):
        digits = digits[2:]
    if international or (digits.startswith(COUNTRY_CODE) and len(digits) == 11):
        if not digits.startswith(COUNTRY_CODE):
            raise PhoneError("phone_country", "only Vietnamese numbers (+84) can be used")
        subscriber = digits[len(COUNTRY_CODE):]
        if len(subscriber) == 10 and subscriber.startswith("0"):  # "+84 (0) 912 345 678"
            subscriber = subscriber[1:]
    elif digits.startswith("0"):
        subscriber = digits[1:]
    else:
        raise PhoneError("phone_length", "a mobile number has 10 digits and starts with 0 (or +84)")
    if len(subscriber) != 9:
        if subscriber.startswith("2") and len(subscriber) == 10:
            raise PhoneError("phone_not_mobile", "this is a landline number; give a mobile number")
        raise PhoneError("phone_length", "a mobile number has 10 digits and starts with 0 (or +84)")
    if subscriber[0] not in MOBILE_LEADING_DIGITS:
        raise PhoneError("phone_not_mobile", "a mobile number starts with 03, 05, 07, 08 or 09")
    return f"+{COUNTRY_CODE}{subscriber}"


def national(e164: str) -> str:
    """The number as people in Vietnam write it: "+84912345678" → "0912 345 678" (others unchanged)."""
    if e164.startswith("+84") and len(e164) == 12:
        subscriber = e164[3:]
        return f"0{subscriber[:3]} {subscriber[3:6]} {subscriber[6:]}"
    return e164


def mask(phone: str, visible: int = 3) -> str:
    """The number with every digit but the last `visible` hidden: enough to confirm it with the patient
    ("does your number end in 678?") without showing it to everyone who looks at the screen."""
    shown = national(phone)
    total = sum(ch.isdigit() for ch in shown)
    out: list[str] = []
    seen = 0
    for ch in shown:
        if ch.isdigit():
            seen += 1
            # The leading 0 of a national number carries no information; keep it so the shape is familiar.
            keep = seen > total - visible or (seen == 1 and ch == "0")
            out.append(ch if keep else "•")
        else:
            out.append(ch)
    return "".join(out)
