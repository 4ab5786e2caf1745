"""Short link codes: random, 12 letters and digits (62-letter alphabet), and how many unknown codes one
client address may try before it is refused for a while.

12 characters from 62 letters give 62^12 ≈ 3.2 × 10^21 codes (71 bits). With a million live links a
guess hits one with probability 3 × 10^-16, and `MAX_MISSES` wrong guesses per `MISS_WINDOW` per address
keep an attacker to a few thousand guesses a day per address.
"""

from __future__ import annotations

import re
import secrets
import string
from datetime import timedelta

__all__ = ["ALPHABET", "LENGTH", "MAX_MISSES", "MISS_WINDOW", "new_code", "is_code"]

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # 62 letters, all GSM-7
LENGTH = 12
MAX_MISSES = 20
MISS_WINDOW = timedelta(minutes=10)

_CODE = re.compile(r"[0-9A-Za-z]{10,32}")


def new_code(length: int = LENGTH) -> str:
    """A fresh random code (from the operating system's CSPRNG)."""
    if length < 10:
        raise ValueError("a short code needs at least 10 characters")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def is_code(text: str) -> bool:
    """Could `text` be a code at all? (Anything else is refused without a database lookup.)"""
    return _CODE.fullmatch(text) is not None
