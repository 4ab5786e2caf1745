"""The parsers every route uses for ids, dates and text (web/params.py), and the NUL rule of the socket
protocol: properties over any input, and the boundaries."""

from __future__ import annotations

import json
import unicodedata
from datetime import date, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.text import nul_path
from signaling import protocol
from signaling.protocol import ProtocolError
from web.errors import ApiError
from web.params import BIGINT_MAX, EARLIEST_DAY, LATEST_DAY, clean_text, json_field, parse_day, parse_id, reject_nul

# ---- ids ---------------------------------------------------------------------------------------------------


@given(st.integers(1, BIGINT_MAX))
def test_every_bigint_id_parses_back(value: int) -> None:
    assert parse_id(str(value)) == value


@given(st.text(max_size=30))
def test_parse_id_never_raises_and_returns_only_bigint_ids(text: str) -> None:
    value = parse_id(text)
    assert value is None or (1 <= value <= BIGINT_MAX and text.isascii() and text.isdigit())


@pytest.mark.parametrize("text", ["", "0", "-1", "+1", " 1", "1 ", "1_0", "١٢", "²", "1.0", "0x10",
                                  str(BIGINT_MAX + 1), "99999999999999999999", "0" * 20 + "1"])
def test_ids_that_name_no_row_are_refused(text: str) -> None:
    assert parse_id(text) is None


def test_the_largest_bigint_is_an_id() -> None:
    assert parse_id(str(BIGINT_MAX)) == BIGINT_MAX
    assert parse_id("007") == 7


# ---- dates -------------------------------------------------------------------------------------------------


@given(st.dates())
def test_a_date_parses_exactly_when_in_range(day: date) -> None:
    assert parse_day(day.isoformat()) == (day if EARLIEST_DAY <= day <= LATEST_DAY else None)


@given(st.text(max_size=20))
def test_parse_day_never_raises(text: str) -> None:
    day = parse_day(text)
    assert day is None or EARLIEST_DAY <= day <= LATEST_DAY


def test_the_range_ends_leave_room_for_a_day_either_side() -> None:
    assert parse_day(EARLIEST_DAY.isoformat()) == EARLIEST_DAY
    assert parse_day(LATEST_DAY.isoformat()) == LATEST_DAY
    assert parse_day((EARLIEST_DAY - timedelta(days=1)).isoformat()) is None
    assert parse_day((LATEST_DAY + timedelta(days=1)).isoformat()) is None
    assert parse_day("9999-12-31") is None and parse_day("0001-01-01") is None and parse_day("2026-02-30") is None


# ---- search text -------------------------------------------------------------------------------------------


@given(st.text(), st.integers(0, 200))
def test_clean_text_has_no_control_characters_and_respects_the_limit(text: str, limit: int) -> None:
    cleaned = clean_text(text, limit)
    assert len(cleaned) <= limit
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in cleaned)


@given(st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=50))
def test_clean_text_keeps_text_without_control_characters(text: str) -> None:
    assert clean_text(text, 100) == text


def test_clean_text_drops_a_nul_inside_a_name() -> None:
    assert clean_text("Gi\x00àng\r\n", 100) == "Giàng"


# ---- NUL in JSON -------------------------------------------------------------------------------------------


@given(st.recursive(st.none() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                max_size=3)))
def test_nul_path_finds_a_nul_exactly_when_there_is_one(value: object) -> None:
    assert (nul_path(value) is not None) == ("\\u0000" in json.dumps(value))


def test_nul_path_names_the_field() -> None:
    assert nul_path({"note": {"plan": "a\x00"}}) == "note.plan"
    assert nul_path({"symptoms": ["cough", "\x00"]}) == "symptoms[1]"
    assert nul_path({"a\x00": 1}) == "a\x00"
    assert nul_path("\x00") == "$"


def test_reject_nul_refuses_with_the_field_and_ignores_an_escaped_backslash() -> None:
    with pytest.raises(ApiError) as raised:
        reject_nul(b'{"note": {"plan": "x\\u0000"}}')
    assert (raised.value.code, raised.value.field, raised.value.status) == ("invalid", "note.plan", 400)
    reject_nul(b'{"note": {"plan": "a literal \\\\u0000"}}')  # backslash, then "u0000": no NUL


class _Note(msgspec.Struct):
    plan: int


class _Body(msgspec.Struct):
    note: _Note


def test_json_field_reads_msgspec_paths() -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.json.decode(b'{"note": {"plan": "x"}}', type=_Body)
    assert json_field(str(raised.value)) == "note.plan"
    assert json_field("Object missing required field `note`") is None


# ---- the socket protocol -----------------------------------------------------------------------------------


@pytest.mark.parametrize("message,field", [
    ({"type": "chat", "room": "00000000-0000-0000-0000-000000000001", "text": "xin\u0000chào"}, "text"),
    ({"type": "chat", "id": "m\u00001", "room": "00000000-0000-0000-0000-000000000001", "text": "ok"}, "id"),
    ({"type": "hello", "token": "a\u0000"}, "token"),
    ({"type": "ice", "room": "00000000-0000-0000-0000-000000000001", "candidate": {"candidate": "\u0000"}},
     "candidate.candidate"),
    ({"type": "offer", "room": "00000000-0000-0000-0000-000000000001", "sdp": "v=0\r\n\u0000"}, "sdp"),
    ({"type": "answer", "id": "a\u0000", "room": "00000000-0000-0000-0000-000000000001", "sdp": "v=0"}, "id"),
    ({"type": "offer", "room": "00000000-0000-0000-0000-000000000001", "sdp": "v=0", "to": "\u0000"}, "to"),
])
def test_a_socket_message_with_a_nul_is_invalid_naming_the_field(message: dict[str, object], field: str) -> None:
    raw = json.dumps(message)
    for frame in (raw, raw.encode()):
        with pytest.raises(ProtocolError) as raised:
            protocol.decode(frame, max_bytes=65536)
        assert raised.value.code == "invalid"
        assert f"`{field}`" in raised.value.message


def test_an_offer_whose_description_mentions_a_backslash_u_is_not_a_nul() -> None:
    raw = json.dumps({"type": "offer", "room": "00000000-0000-0000-0000-000000000001", "sdp": "a=x:\\u0000"})
    message = protocol.decode(raw, max_bytes=65536)
    assert isinstance(message, protocol.Offer) and message.sdp == "a=x:\\u0000"


def test_a_chat_about_a_backslash_u_is_not_a_nul() -> None:
    raw = json.dumps({"type": "chat", "room": "00000000-0000-0000-0000-000000000001", "text": "\\u0000"})
    message = protocol.decode(raw, max_bytes=65536)
    assert isinstance(message, protocol.Chat) and message.text == "\\u0000"
