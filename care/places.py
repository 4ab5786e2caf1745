"""Vietnam's administrative units (two tiers since the 2025 reform: 34 provinces, 3,321 communes).

The data is the `vietnam-provinces` package (codes of the General Statistics Office). Codes are kept as
text the way the GSO writes them: provinces with 2 digits ("15"), communes with 5 ("04456").

    >>> commune("04456").name, commune("04456").province_code
    ('Xã Mù Cang Chải', '15')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from vietnam_provinces import Province, ProvinceCode, Ward, WardCode

from care.text import normalize

__all__ = ["Commune", "ProvinceInfo", "commune", "communes_of", "province", "provinces", "search_communes"]


@dataclass(frozen=True)
class ProvinceInfo:
    code: str
    name: str


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    province_code: str

    @property
    def key(self) -> str:
        """Search key of the name (diacritic-insensitive)."""
        return normalize(self.name)


# Names carry their unit type ("Thành phố Hà Nội", "Xã Mù Cang Chải"); people look them up without it.
_TYPE_PREFIXES = ("thanh pho ", "tinh ", "xa ", "phuong ", "dac khu ")


def _sort_key(name: str) -> str:
    key = normalize(name)
    for prefix in _TYPE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _code(value: str | int, width: int) -> int | None:
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > width:
        return None
    return int(text)


@cache
def provinces() -> tuple[ProvinceInfo, ...]:
    """Every province, sorted by name without diacritics or "Thành phố"."""
    found = [ProvinceInfo(f"{int(p.code):02d}", p.name) for p in Province.iter_all()]
    return tuple(sorted(found, key=lambda p: _sort_key(p.name)))


def province(code: str) -> ProvinceInfo | None:
    number = _code(code, 2)
    if number is None:
        return None
    try:
        p = Province.from_code(ProvinceCode(number))
    except ValueError:
        return None
    return ProvinceInfo(f"{int(p.code):02d}", p.name)


def commune(code: str) -> Commune | None:
    """The commune (xã, phường or đặc khu) with this GSO code, or None when there is none."""
    number = _code(code, 5)
    if number is None:
        return None
    try:
        w = Ward.from_code(WardCode(number))
    except ValueError:
        return None
    return Commune(f"{int(w.code):05d}", w.name, f"{int(w.province_code):02d}")


@cache
def communes_of(province_code: str) -> tuple[Commune, ...]:
    """The communes of a province, sorted by name without diacritics or unit type; empty when unknown."""
    number = _code(province_code, 2)
    if number is None:
        return ()
    try:
        code = ProvinceCode(number)
    except ValueError:
        return ()
    found = [Commune(f"{int(w.code):05d}", w.name, f"{int(w.province_code):02d}") for w in Ward.iter_by_province(code)]
    return tuple(sorted(found, key=lambda c: _sort_key(c.name)))


def search_communes(province_code: str, query: str, limit: int = 200) -> list[Commune]:
    """Communes of the province whose name contains `query` (with or without diacritics, "xã" optional)."""
    key = normalize(query)
    return [c for c in communes_of(province_code) if key in c.key][:limit]
