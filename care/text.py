"""Search keys for Vietnamese text.

People type names and diagnoses with or without diacritics ("Nguyễn Văn An",
"nguyen van an"), on phone keyboards that may or may not add tone marks, so
every search in the app compares :func:`normalize` keys rather than raw text.
"""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["normalize", "nul_path"]

# "đ" is a letter of its own in Unicode, not "d" plus a combining mark, so NFD
# leaves it alone and it must be mapped explicitly.
_STROKED_D = str.maketrans({"đ": "d"})  # "Đ" is casefolded to "đ" first


def normalize(text: str) -> str:
    """Return a diacritic-, case- and spacing-insensitive search key for ``text``.

    Used to index and to query patient names, addresses and ICD-10 names, so that
    "Nguyễn  Văn An" and "nguyen van an" find each other.

    >>> normalize("  Nguyễn   Văn ĐẠT ")
    'nguyen van dat'
    """
    # Casefold before decomposing: casefolding can itself produce combining marks
    # ("İ" -> "i" + U+0307), which must then be stripped like any other.
    decomposed = unicodedata.normalize("NFD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.translate(_STROKED_D).split())


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path ("note.plan", "symptoms[2]") of the first string in decoded JSON that holds a NUL,
    or None; keys count too. PostgreSQL's text and jsonb refuse NUL, so input is refused naming the field.

    >>> nul_path({"note": {"plan": "a\\x00"}, "symptoms": ["cough"]})
    'note.plan'
    """
    if isinstance(value, str):
        return path or "$" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = nul_path(item, where)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}[{i}]")
            if found:
                return found
    return None
