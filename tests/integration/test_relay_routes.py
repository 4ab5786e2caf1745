"""The relay's remembered routes (Hub.membership_epoch, Client.route_*): once an offer or candidate has
found the other member, the next ones go straight to them (as their frame arrives, web/ws.py), until anyone
joins, leaves or is replaced, or the consultation ends. Over real websockets and PostgreSQL, every change of
the room is followed by a message that must go elsewhere, and no frame overtakes one sent before it."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from db import audit
from tests.conftest import RunningApp
from tests.integration import test_three_way_call as three_way
from tests.integration.test_call_signaling import connect
from tests.integration.test_three_way_call import Call, nothing_else, staff_id

# The three-way call's fixtures: a patient and their doctor joined in a room (and the staff's sessions).
http, sessions, call = three_way.http, three_way.sessions, three_way.call

CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 192.168.1.5 51234 typ host", "sdpMid": "0",
             "sdpMLineIndex": 0, "usernameFragment": "EsAw"}


async def test_repeated_offers_and_candidates_arrive_exactly_as_the_first(call: Call) -> None:
    """The first offer looks the room up; the next ones use the route. All read the same, escapes and all."""
    sdps = ["v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n", 'v=0 "quoted" \\ back', "v=0 Nguyễn ☎", "v=0 last"]
    for sdp in sdps:
        await call.doctor.send(type="offer", room=call.room, sdp=sdp)
    offers = [await call.patient.expect("offer") for _ in sdps]
    assert offers == [{"type": "offer", "sdp": sdp, "room": call.room, "from": call.doctor_session,
                       "to": call.patient_session} for sdp in sdps]
    for _ in range(3):
        await call.patient.send(type="answer", room=call.room, sdp="v=0 answer", to=call.doctor_session)
        await call.patient.send(type="ice", room=call.room, candidate=CANDIDATE)
    for _ in range(3):
        assert await call.doctor.expect("answer") == {"type": "answer", "sdp": "v=0 answer", "room": call.room,
                                                      "from": call.patient_session, "to": call.doctor_session}
        assert await call.doctor.expect("ice") == {"type": "ice", "candidate": CANDIDATE, "room": call.room,
                                                   "from": call.patient_session, "to": call.doctor_session}
    # `to` naming someone else is not the route: refused as before.
    ref = await call.doctor.send(type="offer", room=call.room, sdp="v=0", to="nobody")
    assert (await call.doctor.expect("error", id=ref))["code"] == "peer_absent"


async def test_the_route_follows_a_reconnect_a_leave_and_a_rejoin(running_app: RunningApp, call: Call,
                                                                   http: aiohttp.ClientSession) -> None:
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 one")
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 two")
    assert [(await call.patient.expect("offer"))["sdp"] for _ in range(2)] == ["v=0 one", "v=0 two"]

    # The patient's page reconnects on a new socket: the next offer goes to it, not to the old one.
    again = await connect(http, running_app, call.token)
    await again.send(type="join", room=call.room)
    await again.expect("joined")
    await call.patient.expect("replaced")
    told = await call.doctor.expect("peer_joined")
    assert told["replaces"] == call.patient_session
    new_session = told["peer_session"]
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 three")
    offer = await again.expect("offer")
    assert (offer["sdp"], offer["to"]) == ("v=0 three", new_session)
    await nothing_else(call.patient, "offer")

    # The patient leaves: an offer has nobody to go to, a candidate is dropped.
    await again.send(type="leave", room=call.room)
    await again.expect("left")
    await call.doctor.expect("peer_left")
    ref = await call.doctor.send(type="offer", room=call.room, sdp="v=0 four")
    assert (await call.doctor.expect("error", id=ref))["code"] == "peer_absent"
    await call.doctor.send(type="ice", room=call.room, candidate=CANDIDATE)
    await nothing_else(again, "ice")
    await nothing_else(call.doctor, "error")

    # Back again: reached again.
    await again.send(type="join", room=call.room)
    await again.expect("joined")
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 five")
    assert (await again.expect("offer"))["sdp"] == "v=0 five"
    await again.close()


async def test_a_third_member_ends_the_route_and_each_pair_is_addressed(
        running_app: RunningApp, call: Call, sessions: dict[str, aiohttp.ClientSession]) -> None:
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 before")
    assert (await call.patient.expect("offer"))["sdp"] == "v=0 before"

    specialist_id = await staff_id(running_app, "bs.timmach")
    await running_app.hub.add_participant(uuid.UUID(call.room), specialist_id,
                                          actor=audit.Actor.staff(await staff_id(running_app, "bacsi.lan")))
    specialist = await connect(sessions["bs.timmach"], running_app)
    await specialist.send(type="join", room=call.room)
    await specialist.expect("joined")
    s_session = (await call.doctor.expect("peer_joined"))["peer_session"]

    ref = await call.doctor.send(type="offer", room=call.room, sdp="v=0 whose?")
    assert (await call.doctor.expect("error", id=ref))["code"] == "to_required"
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 to s", to=s_session)
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 to p", to=call.patient_session)
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 to s again", to=s_session)
    assert [(await specialist.expect("offer"))["sdp"] for _ in range(2)] == ["v=0 to s", "v=0 to s again"]
    assert (await call.patient.expect("offer"))["sdp"] == "v=0 to p"
    await nothing_else(call.patient, "offer")

    # The specialist leaves: two members again, and `to` is optional again.
    await specialist.send(type="leave", room=call.room)
    await specialist.expect("left")
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 after")
    assert (await call.patient.expect("offer"))["sdp"] == "v=0 after"
    await nothing_else(specialist, "offer")
    await specialist.close()


async def test_no_route_outlives_the_end_of_the_consultation(call: Call) -> None:
    """Routes both ways, then the doctor ends the call: the pages stay open (a visit summary may follow),
    and nothing either side sends for the ended room reaches the other."""
    for n in range(2):
        await call.doctor.send(type="offer", room=call.room, sdp=f"v=0 {n}")
        await call.patient.send(type="ice", room=call.room, candidate=CANDIDATE)
    assert [(await call.patient.expect("offer"))["sdp"] for _ in range(2)] == ["v=0 0", "v=0 1"]
    for _ in range(2):
        await call.doctor.expect("ice")

    await call.doctor.send(type="end", room=call.room)
    assert (await call.patient.expect("ended"))["by"] == "doctor"
    await call.doctor.expect("ended")
    for sender, receiver in ((call.patient, call.doctor), (call.doctor, call.patient)):
        ref = await sender.send(type="ice", room=call.room, candidate=CANDIDATE)
        assert (await sender.expect("error", id=ref))["code"] == "not_in_room"
        ref = await sender.send(type="offer", room=call.room, sdp="v=0 after the end")
        assert (await sender.expect("error", id=ref))["code"] == "not_in_room"
        await nothing_else(receiver, "ice")
        await nothing_else(receiver, "offer")
async def test_on_a_route_offers_go_out_as_they_arrive(running_app: RunningApp, call: Call) -> None:
    """After the first offer (a lookup), each next one is relayed as its frame is parsed (web/ws.py
    `_Frames`), not by the socket's task: counted apart, and written just the same."""
    stats = running_app.hub.stats
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 first")
    assert (await call.patient.expect("offer"))["sdp"] == "v=0 first"
    before = stats.relayed_on_arrival
    for n in range(5):
        await call.doctor.send(type="offer", room=call.room, sdp=f"v=0 {n}")
        assert await call.patient.expect("offer") == {"type": "offer", "sdp": f"v=0 {n}", "room": call.room,
                                                      "from": call.doctor_session, "to": call.patient_session}
    assert stats.relayed_on_arrival - before == 5


async def test_a_frame_behind_a_slower_one_waits_its_turn(running_app: RunningApp, call: Call) -> None:
    """A chat message is stored before it is relayed. Offers and candidates sent behind it on the same socket,
    on a known route, must not overtake it: neither those that arrive while it is being stored (held here by
    a lock on the chat table) nor those read with it, still queued behind it."""
    await call.doctor.send(type="offer", room=call.room, sdp="v=0 route")
    await call.patient.expect("offer")
    call.patient.inbox.clear()
    for right_behind in ([], ["v=0 right behind"]):
        async with running_app.pool.acquire() as con, con.transaction():
            await con.execute("LOCK TABLE chat_message IN EXCLUSIVE MODE")  # the chat's INSERT waits for this
            await call.doctor.send(type="chat", room=call.room, text="Chị nghe rõ không?")
            for sdp in right_behind:
                await call.doctor.send(type="offer", room=call.room, sdp=sdp)
            await asyncio.sleep(0.3)  # the chat is being stored now
            await call.doctor.send(type="offer", room=call.room, sdp="v=0 while storing")
            await call.doctor.send(type="ice", room=call.room, candidate=CANDIDATE)
            with pytest.raises(TimeoutError):
                await call.patient.next_message(timeout=0.5)
        seen = [await call.patient.next_message() for _ in range(3 + len(right_behind))]
        assert [(m["type"], m.get("sdp")) for m in seen] == [
            ("chat", None), *(("offer", sdp) for sdp in right_behind), ("offer", "v=0 while storing"),
            ("ice", None)]
        assert seen[0]["message"]["text"] == "Chị nghe rõ không?"
