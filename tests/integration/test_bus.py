"""Two app instances on one PostgreSQL joined by the bus (DONGHANH_BUS, LISTEN/NOTIFY): a queue change or an
alert on one reaches staff on the other, a claim and an end on one reach the patient on the other, a payload
over NOTIFY's 8,000 bytes goes through a row, and a lost listening connection reconnects and resynchronises
from the database (a patient taken while notifications were lost is still paired)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from db import staff as staff_db
from db import usecases
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import check_in, connect, patient_link, staff_session
from tests.integration.test_three_way_call import nothing_else
from tests.integration.wsclient import WsClient


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_queue_alerts_claim_and_end_cross_processes(two_apps: tuple[RunningApp, RunningApp],
                                                          http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    doctor_http = await staff_session(b)
    try:
        doctor = await connect(doctor_http, b)  # the doctor's socket is on B
        assert (await doctor.expect("queue_list"))["entries"] == []

        token = await patient_link(a, 2)
        await check_in(http, a, token, spo2=85)  # checked in on A, with a danger sign
        alert = await doctor.expect("alert")
        assert alert["danger_signs"] == ["low_spo2"]
        listing = await doctor.expect("queue_list")
        assert [e["patient"]["id"] for e in listing["entries"]] == [2]

        patient = await connect(http, a, token)  # the patient's socket is on A
        await patient.expect("queue")
        ref = await doctor.send(type="claim_next")
        room = (await doctor.expect("paired", id=ref))["room"]
        assert (await patient.expect("paired"))["room"] == room  # told by B, through PostgreSQL

        await doctor.send(type="end", room=room)
        await doctor.expect("ended")
        ended = await patient.expect("ended")
        assert ended["room"] == room and ended["by"] == "doctor"
        assert a.hub.bus is not None
        assert a.hub.bus.stats.kinds["patient"] == 1 and a.hub.bus.stats.kinds["ended"] == 1
        await doctor.close()
        await patient.close()
    finally:
        await doctor_http.close()


async def test_a_payload_over_the_notify_limit_goes_through_a_row(two_apps: tuple[RunningApp, RunningApp],
                                                                  http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    token = await patient_link(b, 1)
    await check_in(http, b, token)
    patient = await connect(http, b, token)
    await patient.expect("queue")
    big = {"type": "visit_summary", "text": "Uống thuốc đều. " * 2000}  # ~34 KB of UTF-8
    assert a.hub.bus is not None
    await a.hub.to_patient(1, big)
    got = await patient.expect("visit_summary")
    assert got == big
    assert a.hub.bus.stats.via_row == 1
    await patient.close()


async def test_a_lost_listener_reconnects_and_resynchronises(two_apps: tuple[RunningApp, RunningApp],
                                                             http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    token = await patient_link(b, 1)
    await check_in(http, b, token)
    patient = await connect(http, b, token)  # waiting, on B
    await patient.expect("queue")
    assert b.hub.bus is not None
    pid = b.hub.bus.listener_pid
    assert pid is not None

    async with a.pool.acquire() as con:
        # A doctor takes the patient while nothing tells B (the database changes, no notification)…
        doctor = await staff_db.by_username(con, "bacsi.lan")
        assert doctor is not None
        c = await usecases.take_patient(con, doctor.id, doctor.facility_id)
        assert c is not None and c.patient_id == 1
        # …and B's listening connection dies.
        assert await con.fetchval("SELECT pg_terminate_backend($1)", pid)

    paired = await patient.expect("paired")  # B reconnected, resynchronised from PostgreSQL
    assert paired["room"] == str(c.id)
    await b.hub.bus.listening()
    assert b.hub.bus.stats.reconnects == 1 and b.hub.bus.listener_pid not in (None, pid)

    # Notifications flow again: an alert raised on A reaches a doctor on B.
    doctor_http = await staff_session(b, "bacsi.minh")
    try:
        doctor_socket = await connect(doctor_http, b)
        await doctor_socket.expect("queue_list")
        await check_in(http, a, await patient_link(a, 2), spo2=85)
        assert (await doctor_socket.expect("alert"))["danger_signs"] == ["low_spo2"]
        await doctor_socket.close()
    finally:
        await doctor_http.close()
    await patient.close()


async def test_a_call_whose_sides_are_on_different_processes_works(two_apps: tuple[RunningApp, RunningApp],
                                                                   http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    token = await patient_link(a, 1)
    await check_in(http, a, token)
    patient = await connect(http, a, token)  # on A
    await patient.expect("queue")
    doctor_http = await staff_session(b)
    try:
        doctor = await connect(doctor_http, b)  # on B
        ref = await doctor.send(type="claim_next")
        room = (await doctor.expect("paired", id=ref))["room"]
        assert (await patient.expect("paired"))["room"] == room

        await patient.send(type="join", room=room)
        assert (await patient.expect("joined"))["peer_present"] is False
        await doctor.send(type="join", room=room)
        joined = await doctor.expect("joined")
        # Each side learns of the other through the bus, with the other's role and session: the patient by
        # `peer_joined`; the doctor in `joined.peers` (as in one process) when B has already heard of the
        # patient's join on A, else by `peer_joined` as soon as it does (A sends the patient `joined` before
        # it publishes the join, so either order is the protocol's).
        to_patient = await patient.expect("peer_joined")
        if joined["peer_present"]:
            assert [peer["role"] for peer in joined["peers"]] == ["patient"]
            to_doctor = joined["peers"][0]
            assert joined["peer_session"] == to_doctor["peer_session"]
        else:
            assert joined["peers"] == []
            to_doctor = await doctor.expect("peer_joined", room=room)
        assert to_doctor["role"] == "patient"
        assert to_patient["role"] == "doctor" and to_patient["polite"] is True and to_doctor["polite"] is False
        assert to_patient["peer_session"] != to_doctor["peer_session"]

        await doctor.send(type="offer", room=room, sdp="v=0 offer")
        offer = await patient.expect("offer")
        assert offer["sdp"] == "v=0 offer" and offer["from"] == to_patient["peer_session"]
        await patient.send(type="answer", room=room, sdp="v=0 answer")
        assert (await doctor.expect("answer"))["sdp"] == "v=0 answer"
        await patient.send(type="ice", room=room, candidate={"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                                             "sdpMid": "0", "sdpMLineIndex": 0})
        assert (await doctor.expect("ice"))["candidate"]["sdpMid"] == "0"
        await patient.send(type="chat", room=room, text="Chào bác sĩ")
        for side in (patient, doctor):
            assert (await side.expect("chat"))["message"]["text"] == "Chào bác sĩ"
        await doctor.send(type="media", room=room, audio=True, video=False)
        media = await patient.expect("peer_media")
        assert media["video"] is False

        # The patient opens the link again, on B: the page on A is replaced, the doctor sees a new peer.
        second = await connect(http, b, token)
        await second.send(type="join", room=room)
        assert (await second.expect("joined"))["peer_present"] is True
        assert (await patient.expect("replaced"))["room"] == room
        assert (await doctor.expect("peer_joined"))["peer_session"] != to_patient["peer_session"]

        await doctor.send(type="end", room=room)
        assert (await second.expect("ended"))["by"] == "doctor"
        assert (await patient.expect("ended"))["room"] == room  # the first page is still the patient's
        await doctor.close()
        await second.close()
        await patient.close()
    finally:
        await doctor_http.close()


@pytest.mark.parametrize("grace_s", [1])
async def test_a_doctor_gone_on_one_process_requeues_the_patient_on_the_other(
        two_apps: tuple[RunningApp, RunningApp], http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    token = await patient_link(a, 1)
    await check_in(http, a, token)
    patient = await connect(http, a, token)
    await patient.expect("queue")
    doctor_http = await staff_session(b)
    try:
        doctor = await connect(doctor_http, b)
        ref = await doctor.send(type="claim_next")
        room = (await doctor.expect("paired", id=ref))["room"]
        await patient.expect("paired")
        await doctor.close()  # the doctor's only socket, on B, is gone
        requeued = await patient.expect("requeued", timeout=30)
        assert requeued["room"] == room and requeued["reason"] == "doctor_disconnected"
        await patient.close()
    finally:
        await doctor_http.close()


async def test_presence_counts_every_process(two_apps: tuple[RunningApp, RunningApp],
                                             http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    token = await patient_link(a, 1)
    await check_in(http, a, token)
    patient = await connect(http, a, token)  # waiting, on A
    first = await patient.expect("queue")
    assert first["doctors_online"] == 0
    doctor_http = await staff_session(b)
    try:
        doctor = await connect(doctor_http, b)  # a doctor comes online on B
        # The patient on A now counts the doctor on B, and the doctor on B sees the patient on A online.
        await patient.expect("queue", doctors_online=1)
        listing = await doctor.expect("queue_list")
        while not listing["entries"] or listing["entries"][0]["online"] is not True:
            listing = await doctor.expect("queue_list")
        assert listing["entries"][0]["patient"]["id"] == 1
        await doctor.close()
        await patient.expect("queue", doctors_online=0)  # and stops counting them when they leave
        await patient.close()
    finally:
        await doctor_http.close()


async def test_a_room_across_processes_survives_a_lost_listener(two_apps: tuple[RunningApp, RunningApp],
                                                                http: aiohttp.ClientSession) -> None:
    a, b = two_apps
    token = await patient_link(a, 1)
    await check_in(http, a, token)
    patient = await connect(http, a, token)  # on A
    await patient.expect("queue")
    doctor_http = await staff_session(b)
    try:
        doctor = await connect(doctor_http, b)  # on B
        ref = await doctor.send(type="claim_next")
        room = (await doctor.expect("paired", id=ref))["room"]
        await patient.expect("paired")
        await patient.send(type="join", room=room)
        await patient.expect("joined")
        await doctor.send(type="join", room=room)
        patient_session = (await doctor.expect("joined"))["peers"][0]["peer_session"]
        await patient.expect("peer_joined")

        assert b.hub.bus is not None
        pid = b.hub.bus.listener_pid
        async with a.pool.acquire() as con:
            assert await con.fetchval("SELECT pg_terminate_backend($1)", pid)
        # B reconnects, forgets and relearns the room's remote side: the doctor hears the patient again.
        again = await doctor.expect("peer_joined", timeout=30)
        assert again["peer_session"] == patient_session
        assert b.hub.bus.stats.reconnects == 1

        await doctor.send(type="offer", room=room, sdp="v=0 after")
        assert (await patient.expect("offer"))["sdp"] == "v=0 after"
        await patient.send(type="chat", room=room, text="Vẫn nghe rõ")
        assert (await doctor.expect("chat"))["message"]["text"] == "Vẫn nghe rõ"
        await doctor.close()
        await patient.close()
    finally:
        await doctor_http.close()


@dataclass
class CallOnA:
    patient: WsClient
    doctor: WsClient
    room: str
    p_session: str  # the patient's, as the doctor was told
    d_session: str  # the doctor's, as the patient was told
    specialist_http: aiohttp.ClientSession  # signed in as bs.timmach, for a socket on B


@contextlib.asynccontextmanager
async def call_on_a(a: RunningApp, b: RunningApp, http: aiohttp.ClientSession) -> AsyncIterator[CallOnA]:
    """A patient and their doctor joined in a room on A (the doctor claimed them), and a specialist's signed-in
    session for B."""
    token = await patient_link(a, 1)
    await check_in(http, a, token)
    patient = await connect(http, a, token)
    doctor_http = await staff_session(a)
    specialist_http = await staff_session(b, "bs.timmach")
    try:
        doctor = await connect(doctor_http, a)
        ref = await doctor.send(type="claim_next")
        room = (await doctor.expect("paired", id=ref))["room"]
        await patient.send(type="join", room=room)
        await patient.expect("joined")
        await doctor.send(type="join", room=room)
        p_session = (await doctor.expect("joined"))["peers"][0]["peer_session"]
        d_session = (await patient.expect("peer_joined"))["peer_session"]
        yield CallOnA(patient, doctor, room, p_session, d_session, specialist_http)
    finally:
        await doctor_http.close()
        await specialist_http.close()


async def test_a_three_way_call_across_processes_addresses_each_pair(two_apps: tuple[RunningApp, RunningApp],
                                                                     http: aiohttp.ClientSession) -> None:
    """Patient and doctor on A, the invited specialist on B: members keyed by identity, `to`/`from` per pair,
    chat and media to everyone, `peer_left` with the session, escalation pushes (`to_staff`) reach B."""
    a, b = two_apps
    async with call_on_a(a, b, http) as c:
        patient, doctor, room, specialist_http = c.patient, c.doctor, c.room, c.specialist_http
        p_session, d_session = c.p_session, c.d_session

        specialist = await connect(specialist_http, b)  # on B
        async with a.pool.acquire() as con:
            member = await staff_db.by_username(con, "bs.timmach")
        assert member is not None
        await a.hub.add_participant(uuid.UUID(room), member.id)
        told = await specialist.expect("participant_added")  # the invited page on the other process
        assert told["room"] == room and told["staff"]["id"] == member.id

        ref = await specialist.send(type="join", room=room)
        joined = await specialist.expect("joined", id=ref)
        peers = {peer["role"]: peer for peer in joined["peers"]}
        assert set(peers) == {"patient", "doctor"}
        assert peers["patient"]["peer_session"] == p_session and peers["doctor"]["peer_session"] == d_session
        # Politeness per pair as in one process: doctor < specialist < patient (the lower is impolite).
        assert peers["doctor"]["polite"] is True and peers["patient"]["polite"] is False
        seen = {}
        for ws in (patient, doctor):
            seen[ws] = await ws.expect("peer_joined", role="specialist")
            assert seen[ws]["staff_id"] == member.id and seen[ws]["name"] == told["staff"]["name"]
        assert seen[patient]["polite"] is True and seen[doctor]["polite"] is False
        s_session = seen[patient]["peer_session"]

        # Pairwise relay across processes, both ways.
        await specialist.send(type="offer", room=room, to=p_session, sdp="v=0 s→p")
        offer = await patient.expect("offer")
        assert offer["from"] == s_session and offer["to"] == p_session and offer["sdp"] == "v=0 s→p"
        await patient.send(type="answer", room=room, to=s_session, sdp="v=0 p→s")
        answer = await specialist.expect("answer")
        assert answer["from"] == p_session and answer["sdp"] == "v=0 p→s"
        await doctor.send(type="ice", room=room, to=s_session,
                          candidate={"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0",
                                     "sdpMLineIndex": 0})
        assert (await specialist.expect("ice"))["from"] == d_session
        ref = await specialist.send(type="offer", room=room, sdp="v=0 to whom?")
        assert (await specialist.expect("error", id=ref))["code"] == "to_required"

        await specialist.send(type="chat", room=room, text="Tôi nghe rõ")
        for ws in (patient, doctor, specialist):
            assert (await ws.expect("chat"))["message"]["text"] == "Tôi nghe rõ"
        await specialist.send(type="media", room=room, audio=False, video=True)
        for ws in (patient, doctor):
            media = await ws.expect("peer_media")
            assert media["peer_session"] == s_session and media["audio"] is False

        # An escalation push to the specialist, made on A, reaches their page on B.
        a.hub.to_staff(member.id, {"type": "escalation_offer", "probe": 1})
        assert (await specialist.expect("escalation_offer"))["probe"] == 1

        ref = await specialist.send(type="leave", room=room)
        await specialist.expect("left", id=ref)
        for ws in (patient, doctor):
            left = await ws.expect("peer_left")
            assert left["peer_session"] == s_session and left["role"] == "specialist"
        await doctor.send(type="end", room=room)
        assert (await patient.expect("ended"))["by"] == "doctor"
        for ws in (patient, doctor, specialist):
            await ws.close()


async def test_a_member_joining_on_another_process_ends_the_relay_route(two_apps: tuple[RunningApp, RunningApp],
                                                                         http: aiohttp.ClientSession) -> None:
    """Patient and doctor on A relay through a remembered route (signaling/hub.py, decision 60) until the
    specialist joins on B: A hears of it only through the bus, and the doctor's next offer must name its
    receiver again. Once the specialist leaves, the patient is the only other member again."""
    a, b = two_apps
    async with call_on_a(a, b, http) as c:
        patient, doctor, room, specialist_http = c.patient, c.doctor, c.room, c.specialist_http
        for n in range(3):  # the first looks the room up, the next two take the route
            await doctor.send(type="offer", room=room, sdp=f"v=0 {n}")
        assert [(await patient.expect("offer"))["sdp"] for _ in range(3)] == ["v=0 0", "v=0 1", "v=0 2"]

        specialist = await connect(specialist_http, b)  # on B
        async with a.pool.acquire() as con:
            member = await staff_db.by_username(con, "bs.timmach")
        assert member is not None
        await a.hub.add_participant(uuid.UUID(room), member.id)
        await specialist.send(type="join", room=room)
        await specialist.expect("joined")
        s_session = (await doctor.expect("peer_joined", role="specialist"))["peer_session"]

        ref = await doctor.send(type="offer", room=room, sdp="v=0 whose?")
        assert (await doctor.expect("error", id=ref))["code"] == "to_required"
        await doctor.send(type="offer", room=room, sdp="v=0 to s", to=s_session)
        assert (await specialist.expect("offer"))["sdp"] == "v=0 to s"

        await specialist.send(type="leave", room=room)
        await specialist.expect("left")
        await doctor.expect("peer_left")
        for n in range(2):
            await doctor.send(type="offer", room=room, sdp=f"v=0 again {n}")
        assert [(await patient.expect("offer"))["sdp"] for _ in range(2)] == ["v=0 again 0", "v=0 again 1"]
        await nothing_else(patient, "offer")  # none of the offers meant for the specialist reached the patient
        for ws in (patient, doctor, specialist):
            await ws.close()
