"""Rooms of up to four members: each pair has exactly one polite side, fixed by rank (not join order)."""

from __future__ import annotations

import itertools
import uuid

import msgspec
import pytest

from care.access import Action, Relation, decide
from signaling import protocol as p
from signaling.rooms import Client, Member, Room
from web.access import PARTICIPANT_MESSAGES, SOCKET_MESSAGES


class _Ws:
    closed = False

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        return True


def _member(key: str, role: str, staff_id: int | None = None) -> Member:
    return Member(Client(_Ws(), None), key, role, key, staff_id=staff_id)  # type: ignore[arg-type]


PATIENT, DOCTOR = _member("patient", "patient"), _member("doctor", "doctor", 7)
SPEC_A, SPEC_B = _member("staff:3", "specialist", 3), _member("staff:9", "specialist", 9)


def test_patient_is_polite_to_the_doctor_as_in_a_two_person_call() -> None:
    assert PATIENT.polite_to(DOCTOR) and not DOCTOR.polite_to(PATIENT)


@pytest.mark.parametrize("a, b", list(itertools.combinations([PATIENT, DOCTOR, SPEC_A, SPEC_B], 2)))
def test_every_pair_has_exactly_one_polite_side(a: Member, b: Member) -> None:
    assert a.polite_to(b) != b.polite_to(a)


def test_invited_staff_are_polite_to_the_doctor_and_impolite_to_the_patient() -> None:
    assert SPEC_A.polite_to(DOCTOR) and not SPEC_A.polite_to(PATIENT)


def test_room_finds_members_by_socket_and_session() -> None:
    room = Room(uuid.uuid4(), {m.key: m for m in (PATIENT, DOCTOR, SPEC_A)})
    assert room.member(SPEC_A.client) is SPEC_A and room.by_session(DOCTOR.client.session) is DOCTOR
    assert {m.key for m in room.others(PATIENT.client)} == {"doctor", "staff:3"}
    assert room.member(SPEC_B.client) is None


def test_descriptions_may_name_their_addressee() -> None:
    room = uuid.uuid4()
    msg = p.decode(msgspec.json.encode({"type": "offer", "room": str(room), "sdp": "v=0", "to": "abc"}),
                   max_bytes=65536)
    assert isinstance(msg, p.Offer) and msg.to == "abc"
    with pytest.raises(p.ProtocolError) as bad:
        p.decode(msgspec.json.encode({"type": "ice", "room": str(room), "to": ""}), max_bytes=65536)
    assert bad.value.code == "invalid"


def test_invited_staff_may_send_room_messages_but_not_end() -> None:
    assert set(PARTICIPANT_MESSAGES) < set(SOCKET_MESSAGES) and "end" not in PARTICIPANT_MESSAGES
    assert decide("specialist", Action.join_call, Relation.unrelated, assignee=True).allowed
    assert not decide("specialist", Action.join_call, Relation.own).allowed  # not invited
    assert not decide("nurse", Action.join_call, Relation.own, assignee=True).allowed
