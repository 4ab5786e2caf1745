"""signaling.protocol.decode (every client message, and anything a client could send instead) and the
queue arithmetic of signaling.queue (expected wait, who serves whom)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling import protocol as p
from signaling.queue import expected_wait_s, serves

LIMIT = 64 * 1024
ROOM = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
ERROR_CODES = {"too_large", "bad_json", "bad_message", "unknown_type", "invalid"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"type": "hello", "id": "m1", "token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
    "join": {"type": "join", "id": "m2", "room": ROOM},
    "leave": {"type": "leave", "id": "m3", "room": ROOM},
    "offer": {"type": "offer", "id": "m4", "room": ROOM, "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"},
    "answer": {"type": "answer", "id": "m5", "room": ROOM, "sdp": "v=0\r\n"},
    "ice": {"type": "ice", "id": "m6", "room": ROOM,
            "candidate": {"candidate": "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host",
                          "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"}},
    "chat": {"type": "chat", "id": "m7", "room": ROOM, "text": "Chào bác sĩ, tôi bị ho 3 ngày."},
    "media": {"type": "media", "id": "m8", "room": ROOM, "audio": True, "video": False},
    "claim_next": {"type": "claim_next", "id": "m9", "entry": str(uuid.uuid4())},
    "end": {"type": "end", "id": "m10", "room": ROOM},
    "ping": {"type": "ping", "id": "m11"},
    "call_back": {"type": "call_back", "id": "m12", "room": ROOM},
    "ack_alert": {"type": "ack_alert", "id": "m13", "alert": str(uuid.uuid4())},
}
CLASSES = {"hello": p.Hello, "join": p.Join, "leave": p.Leave, "offer": p.Offer, "answer": p.Answer,
           "ice": p.Ice, "chat": p.Chat, "media": p.Media, "claim_next": p.ClaimNext, "end": p.End,
           "ping": p.Ping, "call_back": p.CallBack, "ack_alert": p.AckAlert}


def refused(raw: str | bytes, max_bytes: int = LIMIT) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as excinfo:
        p.decode(raw, max_bytes=max_bytes)
    return excinfo.value


# ---- every client message ------------------------------------------------------------------------------

def test_examples_cover_every_client_type() -> None:
    assert set(EXAMPLES) == set(p.CLIENT_TYPES) == set(CLASSES)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_client_type_decodes_from_its_example(kind: str) -> None:
    example = EXAMPLES[kind]
    for raw in (json.dumps(example), json.dumps(example).encode()):
        message = p.decode(raw, max_bytes=LIMIT)
        assert type(message) is CLASSES[kind]
        assert message.id == example["id"]
    if "room" in example:
        assert message.room == uuid.UUID(ROOM)  # type: ignore[union-attr]


def test_decoded_fields_are_typed() -> None:
    ice = p.decode(json.dumps(EXAMPLES["ice"]), max_bytes=LIMIT)
    assert isinstance(ice, p.Ice) and ice.candidate is not None
    assert ice.candidate.sdpMLineIndex == 0 and ice.candidate.sdpMid == "0"
    media = p.decode(json.dumps(EXAMPLES["media"]), max_bytes=LIMIT)
    assert isinstance(media, p.Media) and (media.audio, media.video) == (True, False)
    claim = p.decode(json.dumps(EXAMPLES["claim_next"]), max_bytes=LIMIT)
    assert isinstance(claim, p.ClaimNext) and isinstance(claim.entry, uuid.UUID)


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"type": "ping"}', p.Ping(id="")),
    ('{"type": "hello"}', p.Hello(token=None)),
    ('{"type": "claim_next"}', p.ClaimNext(entry=None)),
    (f'{{"type": "ice", "room": "{ROOM}", "candidate": null}}', p.Ice(room=uuid.UUID(ROOM), candidate=None)),
])
def test_optional_fields_have_defaults(raw: str, expected: p.ClientMessage) -> None:
    assert p.decode(raw, max_bytes=LIMIT) == expected


# ---- what is refused, and how ----------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "code"), [
    ("", "bad_json"),
    ("{", "bad_json"),
    ("nul", "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
    ("1e999", "bad_json"),
    ("null", "bad_message"),
    ('"ping"', "bad_message"),
    ("[]", "bad_message"),
    ("{}", "bad_message"),
    ('{"type": 7}', "bad_message"),
    ('{"type": null}', "bad_message"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "Ping"}', "unknown_type"),
    ('{"type": "join"}', "invalid"),
    ('{"type": "join", "room": "not-a-uuid"}', "invalid"),
    ('{"type": "chat", "room": "' + ROOM + '", "text": ""}', "invalid"),
    ('{"type": "chat", "room": "' + ROOM + '", "text": "' + "x" * 2001 + '"}', "invalid"),
    ('{"type": "offer", "room": "' + ROOM + '", "sdp": ""}', "invalid"),
    ('{"type": "media", "room": "' + ROOM + '", "audio": 1, "video": true}', "invalid"),
    ('{"type": "ping", "id": true}', "invalid"),
    ('{"type": "ping", "id": "' + "x" * 65 + '"}', "invalid"),
    ('{"type": "ice", "room": "' + ROOM + '", "candidate": {"candidate": "c", "sdpMLineIndex": 256}}',
     "invalid"),
    ('{"type": "ice", "room": "' + ROOM + '", "candidate": {"sdpMid": "0"}}', "invalid"),
])
def test_malformed_messages_are_refused_with_a_stable_code(raw: str | bytes, code: str) -> None:
    assert refused(raw).code == code


def test_id_of_an_invalid_message_comes_back_as_ref() -> None:
    assert refused('{"type": "join", "id": "abc-1", "room": "nope"}').ref == "abc-1"
    assert refused('{"type": "teleport", "id": "abc-2"}').ref == "abc-2"
    assert refused('{"id": "abc-3"}').ref == "abc-3"
    assert refused('{"type": "ping", "id": "' + "y" * 100 + '"}').ref == "y" * 64  # truncated, still useful
    assert refused('{"type": "join", "id": 42, "room": "nope"}').ref == "42"
    assert refused('{"type": "join", "id": true, "room": "nope"}').ref == ""
    assert refused('{"type": "join", "id": ["x"], "room": "nope"}').ref == ""
    assert refused("[1]").ref == "" and refused("{").ref == ""


def test_error_becomes_an_error_message_with_the_ref() -> None:
    error = refused('{"type": "join", "id": "r1", "room": "nope"}')
    assert error.as_message() == {"type": "error", "code": "invalid", "message": error.message, "id": "r1"}
    assert "join" in error.message


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_unknown_fields_are_refused(kind: str) -> None:
    error = refused(json.dumps({**EXAMPLES[kind], "surprise": 1}))
    assert error.code == "invalid" and "surprise" in error.message


def test_unknown_fields_inside_an_ice_candidate_are_ignored() -> None:
    example = EXAMPLES["ice"]
    candidate = {**example["candidate"], "relayProtocol": "udp", "url": "stun:x"}
    raw = json.dumps({**example, "candidate": candidate})
    message = p.decode(raw, max_bytes=LIMIT)
    assert isinstance(message, p.Ice) and message.candidate is not None
    assert message.candidate.candidate == example["candidate"]["candidate"]
    assert not hasattr(message.candidate, "relayProtocol")


def test_size_limit_counts_utf8_bytes_and_is_inclusive() -> None:
    head = '{"type":"chat","room":"' + ROOM + '","text":"'
    tail = '"}'
    exact = head + "ấ" * 100 + tail  # 3 bytes each in UTF-8
    size = len(exact.encode())
    assert isinstance(p.decode(exact, max_bytes=size), p.Chat)
    assert isinstance(p.decode(exact.encode(), max_bytes=size), p.Chat)
    error = refused(exact, max_bytes=size - 1)
    assert error.code == "too_large" and str(size) in error.message
    assert refused(exact.encode(), max_bytes=size - 1).code == "too_large"


def test_oversized_garbage_is_refused_for_size_before_parsing() -> None:
    assert refused("{" * (LIMIT + 1)).code == "too_large"


@pytest.mark.parametrize("depth", [100, 1000, 5000])
def test_deeply_nested_json_is_refused_not_a_crash(depth: int) -> None:
    for raw in ("[" * depth + "]" * depth, '{"type": "ping", "id": ' + "[" * depth + "]" * depth + "}"):
        assert refused(raw).code in ERROR_CODES


# ---- property: nothing but ProtocolError ever escapes --------------------------------------------------

def _decode_or_protocol_error(raw: str | bytes) -> None:
    try:
        message = p.decode(raw, max_bytes=4096)
    except p.ProtocolError as exc:
        assert exc.code in ERROR_CODES
        assert isinstance(exc.ref, str) and len(exc.ref) <= 64
    else:
        assert type(message).__struct_config__.tag in p.CLIENT_TYPES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_arbitrary_text_never_raises_anything_else(raw: str) -> None:
    _decode_or_protocol_error(raw)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    _decode_or_protocol_error(raw)


@given(json_values)
def test_arbitrary_json_values_never_raise_anything_else(value: Any) -> None:
    _decode_or_protocol_error(json.dumps(value))


@given(st.sampled_from(sorted(EXAMPLES)), st.dictionaries(
    st.sampled_from(["id", "room", "sdp", "text", "token", "entry", "audio", "video", "candidate", "type"]),
    json_values, max_size=4))
def test_known_types_with_arbitrary_fields_never_raise_anything_else(kind: str,
                                                                     fields: dict[str, Any]) -> None:
    message = {**EXAMPLES[kind], **fields}
    _decode_or_protocol_error(json.dumps(message))
    if isinstance(fields.get("id"), str):
        try:
            p.decode(json.dumps(message), max_bytes=4096)
        except p.ProtocolError as exc:
            if exc.code not in ("too_large", "bad_json"):
                assert exc.ref == fields["id"][:64]


# ---- queue arithmetic --------------------------------------------------------------------------------------

def test_no_doctor_online_means_no_estimate() -> None:
    assert expected_wait_s(1, 0, 600.0) is None
    assert expected_wait_s(5, -1, 600.0) is None


def test_next_patient_waits_for_nobody() -> None:
    assert expected_wait_s(1, 1, 600.0) == 0
    assert expected_wait_s(1, 50, 600.0) == 0


def test_one_doctor_sees_patients_one_consultation_apart() -> None:
    assert [expected_wait_s(place, 1, 600.0) for place in (1, 2, 3)] == [0, 600, 1200]


def test_three_doctors_take_three_patients_per_round() -> None:
    waits = [expected_wait_s(place, 3, 400.0) for place in range(1, 8)]
    assert waits == [0, 0, 0, 400, 400, 400, 800]


def test_expected_wait_rounds_up_to_whole_seconds() -> None:
    assert expected_wait_s(2, 1, 0.2) == 1


# province 1 ← district 2 ← communes 3 and 4; 5 is another tree.
PARENTS: dict[int, int | None] = {1: None, 2: 1, 3: 2, 4: 2, 5: None}


@pytest.mark.parametrize(("staff", "patient", "expected"), [
    (3, 3, True),    # own facility
    (2, 3, True),    # district serves the commune below
    (1, 4, True),    # province serves everything below
    (3, 4, False),   # sibling commune
    (3, 2, False),   # a commune does not serve the district above it
    (5, 3, False),   # another tree
    (3, 99, False),  # unknown facility
])
def test_serves_own_facility_and_everything_below(staff: int, patient: int, expected: bool) -> None:
    assert serves(staff, patient, PARENTS) is expected


def test_a_loop_in_the_parents_does_not_hang() -> None:
    looped: dict[int, int | None] = {1: 2, 2: 3, 3: 1, 4: 4}
    assert serves(9, 1, looped) is False
    assert serves(3, 1, looped) is True
    assert serves(9, 4, looped) is False


@given(sdp=st.text(min_size=1, max_size=300), mid=st.none() | st.text(max_size=10),
       ufrag=st.none() | st.text(max_size=10), kind=st.sampled_from(["offer", "answer", "ice"]))
def test_a_message_relayed_by_its_route_is_the_message_the_room_lookup_writes(
        sdp: str, mid: str | None, ufrag: str | None, kind: str) -> None:
    """The hub writes a relayed message to a member here as head + value + tail, and as the whole dict to one on
    another process (the bus). Same text."""
    from signaling.hub import _relayed_text

    room, sender, peer = uuid.uuid4(), "a1b2c3d4e5f60718", "0f1e2d3c4b5a6978"
    if kind == "ice":
        msg: p.Offer | p.Answer | p.Ice = p.Ice(room=room, candidate=p.IceCandidate(
            candidate=sdp, sdpMid=mid, sdpMLineIndex=0, usernameFragment=ufrag))
        payload: dict[str, Any] = {"type": "ice", "candidate": msg.candidate}
    else:
        msg = (p.Offer if kind == "offer" else p.Answer)(room=room, sdp=sdp)
        payload = {"type": kind, "sdp": sdp}
    tail = "," + p.encode({"room": str(room), "from": sender, "to": peer})[1:]
    assert _relayed_text(msg) + tail == p.encode({**payload, "room": str(room), "from": sender, "to": peer})
