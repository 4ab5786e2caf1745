"""Search keys for Vietnamese text.

People type names and diagnoses with or without diacritics ("Nguyễn Văn An",
"nguyen van an"), on phone keyboards that may or may not add tone marks, so
every search in the app compares :func:`normalize` keys rather than raw text.
"""

from __future__ import annotations

import unicodedata

__all__ = ["normalize"]

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
