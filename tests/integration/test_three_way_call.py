"""A live call with an invited specialist (issue 9 point 4) over real websockets and PostgreSQL: each pair is
addressed on its own, chat and media state go to everyone, a fifth member is refused, the specialist leaves
and the call goes on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from db import audit
from db import consultations as consultations_db
from db import staff as staff_db
from db.errors import DbError
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import check_in, connect, patient_link, staff_session
from tests.integration.wsclient import WsClient


async def staff_id(app: RunningApp, username: str) -> int:
    async with app.pool.acquire() as con:
        member = await staff_db.by_username(con, username)
    assert member is not None
    return member.id


async def nothing_else(ws: WsClient, kind: str) -> None:
    """Nothing of `kind` reached this socket before the reply to a ping sent now (messages keep their order)."""
    ref = await ws.send(type="ping")
    await ws.expect("pong", id=ref)
    assert [m for m in ws.inbox if m["type"] == kind] == []


@dataclass
class Call:
    room: str
    patient: WsClient
    doctor: WsClient
    doctor_id: int
    token: str  # the patient's join link
    doctor_session: str  # each side's peer session, as the other side was told it
    patient_session: str


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sessions(running_app: RunningApp) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    made = {u: await staff_session(running_app, u) for u in ("bacsi.lan", "bs.timmach", "bs.lao", "bacsi.minh")}
    yield made
    for s in made.values():
        await s.close()


@pytest.fixture
async def call(running_app: RunningApp, http: aiohttp.ClientSession,
               sessions: dict[str, aiohttp.ClientSession]) -> AsyncIterator[Call]:
    """A patient and their doctor in a call, both joined."""
    token = await patient_link(running_app, 1)
    await check_in(http, running_app, token)
    patient = await connect(http, running_app, token)
    doctor = await connect(sessions["bacsi.lan"], running_app)
    ref = await doctor.send(type="claim_next")
    room = (await doctor.expect("paired", id=ref))["room"]
    await patient.send(type="join", room=room)
    await patient.expect("joined")
    await doctor.send(type="join", room=room)
    joined = await doctor.expect("joined")
    seen = await patient.expect("peer_joined")
    yield Call(room, patient, doctor, await staff_id(running_app, "bacsi.lan"), token, seen["peer_session"],
               joined["peer_session"])
    await patient.close()
    await doctor.close()


async def test_three_members_relay_pairwise_and_share_chat_and_media(
        running_app: RunningApp, call: Call, sessions: dict[str, aiohttp.ClientSession]) -> None:
    specialist = await connect(sessions["bs.timmach"], running_app)
    ref = await specialist.send(type="join", room=call.room)
    assert (await specialist.expect("error", id=ref))["code"] == "forbidden"  # not invited yet

    specialist_id = await staff_id(running_app, "bs.timmach")
    added = await running_app.hub.add_participant(uuid.UUID(call.room), specialist_id,
                                                  actor=audit.Actor.staff(call.doctor_id))
    assert added.name == "BS.CKI Trần Quốc Hùng" and added.role == "specialist"
    for ws in (call.patient, call.doctor, specialist):  # the room, and the invited specialist's own page
        told = await ws.expect("participant_added")
        assert told["room"] == call.room and told["staff"]["id"] == specialist_id

    ref = await specialist.send(type="join", room=call.room)
    joined = await specialist.expect("joined", id=ref)
    assert joined["role"] == "specialist" and joined["peer_name"] == "BS. Nguyễn Thị Lan"
    peers = {p["role"]: p for p in joined["peers"]}
    assert set(peers) == {"patient", "doctor"}
    # Politeness per pair: doctor < specialist < patient (the lower of a pair is impolite).
    assert peers["doctor"]["polite"] is True and peers["patient"]["polite"] is False
    joined_p = await call.patient.expect("peer_joined")
    joined_d = await call.doctor.expect("peer_joined")
    for seen in (joined_p, joined_d):
        assert seen["role"] == "specialist" and seen["name"] == added.name and seen["facility"] == added.facility
    assert joined_p["polite"] is True and joined_d["polite"] is False  # each pair has one polite side
    s_session = joined_p["peer_session"]
    p_session, d_session = peers["patient"]["peer_session"], peers["doctor"]["peer_session"]

    # Pairwise relay: the specialist's offer reaches the patient only, the patient's answer the specialist only.
    await specialist.send(type="offer", room=call.room, to=p_session, sdp="v=0 s→p")
    offer = await call.patient.expect("offer")
    assert (offer["sdp"], offer["from"], offer["to"]) == ("v=0 s→p", s_session, p_session)
    await call.patient.send(type="answer", room=call.room, to=s_session, sdp="v=0 p→s")
    assert (await specialist.expect("answer"))["from"] == p_session
    await specialist.send(type="ice", room=call.room, to=d_session,
                          candidate={"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"})
    assert (await call.doctor.expect("ice"))["from"] == s_session
    await nothing_else(call.doctor, "offer")
    await nothing_else(call.patient, "ice")
    await nothing_else(specialist, "offer")

    # With two other members, a description must say whom it is for; a session not in the room is absent.
    ref = await call.doctor.send(type="offer", room=call.room, sdp="v=0")
    assert (await call.doctor.expect("error", id=ref))["code"] == "to_required"
    ref = await call.doctor.send(type="offer", room=call.room, to="nobody", sdp="v=0")
    assert (await call.doctor.expect("error", id=ref))["code"] == "peer_absent"

    await specialist.send(type="chat", room=call.room, text="Tôi nghe rõ")
    for ws in (call.patient, call.doctor, specialist):
        message = (await ws.expect("chat"))["message"]
        assert message["text"] == "Tôi nghe rõ" and message["staff_id"] == specialist_id
    await specialist.send(type="media", room=call.room, audio=False, video=True)
    for ws in (call.patient, call.doctor):
        media = await ws.expect("peer_media")
        assert media["peer_session"] == s_session and media["audio"] is False

    # Invited staff may leave but not end the consultation.
    ref = await specialist.send(type="end", room=call.room)
    assert (await specialist.expect("error", id=ref))["code"] == "forbidden"

    ref = await specialist.send(type="leave", room=call.room)
    await specialist.expect("left", id=ref)
    for ws in (call.patient, call.doctor):
        left = await ws.expect("peer_left")
        assert (left["peer_session"], left["role"], left["reason"]) == (s_session, "specialist", "left")
    # The two-person call goes on, addressed as before (no `to` needed with one other member).
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 again")
    assert (await call.patient.expect("offer"))["sdp"] == "v=0 again"
    await call.patient.send(type="chat", room=call.room, text="Vẫn còn đây")
    assert (await call.doctor.expect("chat"))["message"]["text"] == "Vẫn còn đây"
    async with running_app.pool.acquire() as con:
        c = await consultations_db.get(con, uuid.UUID(call.room))
    assert c is not None and c.active
    await specialist.close()


async def test_a_fifth_member_is_refused(running_app: RunningApp, call: Call,
                                         sessions: dict[str, aiohttp.ClientSession]) -> None:
    room_id = uuid.UUID(call.room)
    invited = []
    for username in ("bs.timmach", "bs.lao"):
        await running_app.hub.add_participant(room_id, await staff_id(running_app, username))
        ws = await connect(sessions[username], running_app)
        await ws.send(type="join", room=call.room)
        joined = await ws.expect("joined")
        invited.append(ws)
    assert len(joined["peers"]) == 3  # four members: patient, doctor, two specialists
    lao_first = (await call.doctor.expect("peer_joined", name="ThS.BS Phạm Thu Hà"))["peer_session"]

    minh = await staff_id(running_app, "bacsi.minh")
    with pytest.raises(DbError) as refused:
        await running_app.hub.add_participant(room_id, minh)
    assert refused.value.code == "room_full"
    with pytest.raises(DbError) as doctor_again:
        await running_app.hub.add_participant(room_id, call.doctor_id)
    assert doctor_again.value.code == "already_member"

    # The room holds four sockets even if a fifth person were invited some other way (a row written by hand).
    async with running_app.pool.acquire() as con:
        await con.execute("INSERT INTO consultation_participant (consultation_id, staff_id) VALUES ($1, $2)",
                          room_id, minh)
    fifth = await connect(sessions["bacsi.minh"], running_app)
    ref = await fifth.send(type="join", room=call.room)
    error = await fifth.expect("error", id=ref)
    assert error["code"] == "room_full" and "at most 4" in error["message"]

    # The same member's newer socket replaces the older one: still four, nobody refused.
    again = await connect(sessions["bs.lao"], running_app)
    await again.send(type="join", room=call.room)
    assert len((await again.expect("joined"))["peers"]) == 3
    await invited[1].expect("replaced")
    renewed = await call.doctor.expect("peer_joined", role="specialist", name="ThS.BS Phạm Thu Hà", replaces=lao_first)
    assert renewed["peer_session"] != lao_first
    for ws in (*invited, again, fifth):
        await ws.close()


async def test_participant_cannot_be_added_to_an_ended_consultation(running_app: RunningApp, call: Call) -> None:
    await call.doctor.send(type="end", room=call.room)
    await call.doctor.expect("ended")
    with pytest.raises(DbError) as refused:
        await running_app.hub.add_participant(uuid.UUID(call.room), await staff_id(running_app, "bs.lao"))
    assert refused.value.code == "not_active"


async def test_invited_specialist_gets_the_call_view_and_can_come_back_after_a_drop(
        running_app: RunningApp, call: Call, sessions: dict[str, aiohttp.ClientSession]) -> None:
    http = sessions["bs.lao"]
    page = await http.get(f"{running_app.url}/staff/c/{call.room}", allow_redirects=False)
    assert page.status in (403, 404)  # not invited: not theirs
    await running_app.hub.add_participant(uuid.UUID(call.room), await staff_id(running_app, "bs.lao"))
    page = await http.get(f"{running_app.url}/staff/c/{call.room}", allow_redirects=False)
    html = await page.text()
    assert page.status == 200 and "specialist_call" in html and "note-form" not in html  # the call, no note

    specialist = await connect(http, running_app)
    await specialist.send(type="join", room=call.room)
    await specialist.expect("joined")
    s_session = (await call.doctor.expect("peer_joined"))["peer_session"]
    await call.patient.expect("peer_joined")
    await specialist.close()  # the socket drops
    for ws in (call.patient, call.doctor):
        left = await ws.expect("peer_left")
        assert (left["peer_session"], left["reason"]) == (s_session, "disconnected")
    again = await connect(http, running_app)  # the invitation is in PostgreSQL: a new socket joins again
    await again.send(type="join", room=call.room)
    assert {p["role"] for p in (await again.expect("joined"))["peers"]} == {"patient", "doctor"}
    await call.doctor.expect("peer_joined", role="specialist")
    await again.close()
