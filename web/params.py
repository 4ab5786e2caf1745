"""Parsing what a request says — path ids, dates, free text, forms, JSON — into values the rest of the
app (and PostgreSQL) can take, or a precise refusal: 404 for an id that names nothing, 400 `invalid`
naming the field for a value that cannot be used. Never a 500 (issue 7, point 6).

Why each limit: PostgreSQL's `bigint` ends at 2**63-1 (asyncpg refuses larger ints before the query
runs); `text` and `jsonb` refuse the NUL character; `datetime` arithmetic overflows at years 1 and 9999.
"""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from care.text import nul_path
from web.errors import ApiError
from web.i18n import N_
from web.rkeys import t_rkey

BIGINT_MAX = 2**63 - 1
# Dates anyone can mean in this app: births (oldest people ~120 years), appointments, follow-ups.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)

BAD_DATE = N_("The date is not valid: write it as YYYY-MM-DD, between {earliest} and {latest}.")
UNSTORABLE = N_("The field “{field}” contains a control character (such as NUL) that cannot be stored.")
BAD_FORM = N_("The form could not be read. Please reload the page and try again.")

# A JSON integer anything downstream can take (formatting, comparisons with floats, a bigint column):
# msgspec otherwise decodes integers of hundreds of digits.
Int64 = Annotated[int, msgspec.Meta(ge=-BIGINT_MAX - 1, le=BIGINT_MAX)]


# ---- ids -------------------------------------------------------------------------------------------------

def parse_id(text: str) -> int | None:
    """A database id written in ASCII digits (1 … 2**63-1), or None. Unlike int(), refuses "1_0", " 1",
    "+1" and non-ASCII digits ("١"), and ids no bigint column can hold."""
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= BIGINT_MAX else None


def path_id(request: web.Request, name: str = "pid") -> int:
    """The id in the path's `{name}`; 404 (the usual page) when it cannot name a row."""
    value = parse_id(request.match_info.get(name, ""))
    if value is None:
        raise web.HTTPNotFound()
    return value


# ---- dates -----------------------------------------------------------------------------------------------

def parse_day(text: str) -> date | None:
    """A YYYY-MM-DD date between EARLIEST_DAY and LATEST_DAY, or None."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if EARLIEST_DAY <= day <= LATEST_DAY else None


def query_day(request: web.Request, name: str, default: date) -> date:
    """`?{name}=YYYY-MM-DD`, `default` when absent or empty; 400 `invalid` naming it when unusable."""
    text = request.query.get(name, "")
    if not text:
        return default
    day = parse_day(text)
    if day is None:
        raise ApiError("invalid", request[t_rkey](BAD_DATE, earliest=EARLIEST_DAY.isoformat(),
                                                  latest=LATEST_DAY.isoformat()), field=name)
    return day


# ---- free text -------------------------------------------------------------------------------------------

def clean_text(text: str, max_length: int) -> str:
    """One line of search text: control characters (NUL included) and unpaired surrogates dropped, then
    cut to `max_length`. For queries only; stored fields are refused instead (`form`, `reject_nul`)."""
    if not text.isprintable():
        text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs"))
    return text[:max_length]


def query_text(request: web.Request, name: str, max_length: int) -> str:
    """`?{name}=…` as search text (see clean_text); "" when absent."""
    return clean_text(request.query.get(name, ""), max_length)


def _unstorable(text: str) -> bool:
    return "\x00" in text or not text.isascii() and any(unicodedata.category(ch) == "Cs" for ch in text)


def _refuse_field(request: web.Request, field: str) -> ApiError:
    return ApiError("invalid", request[t_rkey](UNSTORABLE, field=field[:40]), field=field[:40])


# ---- forms -----------------------------------------------------------------------------------------------

async def form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form. A body that is not a form (bad encoding, unknown charset, broken multipart) is a
    400; a NUL in any field is a 400 naming the field. Cached by aiohttp, so read it as often as needed."""
    try:
        data = await request.post()
    except (ValueError, LookupError, AssertionError, RuntimeError, HttpProcessingError):
        # In turn: bad UTF-8 or multipart, unknown charset, multipart without a boundary, unknown transfer
        # encoding of a part, broken part headers.
        raise ApiError("invalid", request[t_rkey](BAD_FORM)) from None
    for key, value in data.items():
        if _unstorable(key) or isinstance(value, str) and _unstorable(value):
            raise _refuse_field(request, key)
    return data


# ---- JSON ------------------------------------------------------------------------------------------------

def json_field(validation_message: str) -> str | None:
    """The field a msgspec ValidationError names ("… - at `$.note.plan`" → "note.plan"), if any."""
    _, found, where = validation_message.rpartition(" - at `$")
    return where.rstrip("`").lstrip(".") or None if found else None


def reject_nul(raw: bytes) -> None:
    """JSON can carry a NUL only as the escape \\u0000; when the body has one, find the field and refuse it
    with 400 `invalid` (text and jsonb columns cannot hold it). Bodies without the escape cost one substring
    search. The message is English like the rest of the JSON API's; the code and field are what clients use."""
    if b"\\u0000" not in raw:
        return
    try:
        field = nul_path(msgspec.json.decode(raw))
    except (msgspec.MsgspecError, RecursionError):
        return  # not JSON at all: the typed decoder has already said so
    if field is not None:
        raise ApiError("invalid", f"{field[:40]!r} contains a NUL character, which cannot be stored",
                       field=field[:40])
