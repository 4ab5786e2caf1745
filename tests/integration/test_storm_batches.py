"""Many sockets at once (a reconnect storm): hellos, joins and the upgrades' session checks are answered in
batches (signaling/batch.py), and each socket still gets exactly what it would get alone: its own welcome
state, its own refusal, `joined` before its peers' `peer_joined`, and 4401 for a session that ended."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from db import alerts as alerts_db
from db import audit, scope
from db import chat as chat_db
from db import consultations as consultations_db
from db import links as links_db
from db import patients as patients_db
from db import queue as queue_db
from db import staff as staff_db
from signaling.rooms import CloseCode
from tests.conftest import RunningApp
from tests.integration.test_sessions_end import close_code
from tests.integration.wsclient import WsClient
from web.auth import issue_link
from web.keys import signer_key

TTL = timedelta(hours=1)


@dataclass(frozen=True)
class Person:
    """A patient (with their join-link token) and, when claimed, their doctor (with a session cookie)."""

    patient_id: int
    token: str
    state: str  # what the patient's welcome must say: checkin | waiting | paired
    room: uuid.UUID | None = None
    doctor_id: int | None = None
    doctor_cookie: str = ""
    doctor_name: str = ""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def _people(app: RunningApp, *, paired: int, waiting: int, checkin: int,
                  monkeypatch: pytest.MonkeyPatch) -> list[Person]:
    """Patients of the demo stations in each state; every paired one has a doctor of their own, signed in."""
    monkeypatch.setattr(staff_db, "hash_password", lambda password: "unused")  # nobody signs in by password
    signer = app.app[signer_key]
    out: list[Person] = []
    async with app.pool.acquire() as con:
        facility = await con.fetchval("SELECT min(id) FROM facility WHERE level = 'commune'")
        for n, state in enumerate(["paired"] * paired + ["waiting"] * waiting + ["checkin"] * checkin):
            patient = await patients_db.create(con, facility_id=facility, name=f"Bệnh nhân bão {n}", sex="female",
                                               birth_year=1960 + n, phone=f"0912{n:06d}")
            token, _ = await issue_link(con, signer, patient, int(TTL.total_seconds()))
            if state == "checkin":
                out.append(Person(patient, token, state))
                continue
            entry, _ = await queue_db.enqueue(con, patient_id=patient, link_jti=signer.verify(token),
                                              facility_id=facility, level=1, danger_signs=(), reason="ho",
                                              checkin={"symptoms": ["cough"]}, audio_only=False)
            if state == "waiting":
                out.append(Person(patient, token, state))
                continue
            name = f"BS. Bão {n}"
            doctor = await staff_db.create(con, facility_id=facility, username=f"storm.doctor.{n}", name=name,
                                           role="doctor", password="unused", on_duty=True)
            claim = await queue_db.claim_entry(con, doctor, facility, entry.id)
            cookie, _ = await staff_db.open_session(con, doctor, TTL)
            out.append(Person(patient, token, state, claim.consultation_id, doctor, cookie, name))
    return out


async def _open(http: aiohttp.ClientSession, app: RunningApp, cookie: str = "") -> WsClient:
    headers = {"Cookie": f"dh_session={cookie}"} if cookie else None
    return WsClient(await http.ws_connect(f"{app.url}/ws", headers=headers))


async def _hello(ws: WsClient, token: str = "") -> str:
    return await ws.send(type="hello", **({"token": token} if token else {}))


async def _welcomed(ws: WsClient, token: str = "") -> dict[str, Any]:
    await _hello(ws, token)
    return await ws.expect("welcome")


async def test_many_hellos_at_once_each_get_their_own_welcome_state(
        running_app: RunningApp, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    people = await _people(running_app, paired=20, waiting=15, checkin=15, monkeypatch=monkeypatch)
    doctors = [p for p in people if p.state == "paired"][:10]
    async with running_app.pool.acquire() as con:  # a danger alert every doctor of the station must see
        entry = await con.fetchrow("SELECT id, patient_id, facility_id FROM queue_entry WHERE patient_id = $1",
                                   next(p for p in people if p.state == "waiting").patient_id)
        await alerts_db.raise_alert(con, entry_id=entry["id"], patient_id=entry["patient_id"],
                                    facility_id=entry["facility_id"], level=4, danger_signs=("convulsions",),
                                    clinicians_online=1)
        shown_to_doctors = [str(a.id) for a in await alerts_db.open_for(con, entry["facility_id"])]
    assert shown_to_doctors
    hub = running_app.hub
    before = (hub._hellos.batches, hub._hellos.items)
    patient_sockets = await asyncio.gather(*(_open(http, running_app) for _ in people))
    doctor_sockets = await asyncio.gather(*(_open(http, running_app, d.doctor_cookie) for d in doctors))
    intruder = await _open(http, running_app)
    # Every hello goes out at once: the server answers them in batches.
    refs = await asyncio.gather(*(_hello(ws, p.token) for ws, p in zip(patient_sockets, people, strict=True)),
                                *(_hello(ws) for ws in doctor_sockets), _hello(intruder, "not-a-link-token"))

    refused = await intruder.expect("error")
    assert (refused["code"], refused["message"], refused["id"]) == ("link_invalid", "this link is not valid",
                                                                     refs[-1])
    for ws, person in zip(patient_sockets, people, strict=True):
        welcome = await ws.expect("welcome")
        assert (welcome["role"], welcome["state"]) == ("patient", person.state)
        if person.state == "paired":
            paired = await ws.expect("paired")
            assert (paired["room"], paired["peer_name"]) == (str(person.room), person.doctor_name)
        assert not [m for m in ws.inbox if m["type"] in ("paired", "error")]
    for ws, doctor in zip(doctor_sockets, doctors, strict=True):
        welcome = await ws.expect("welcome")
        assert welcome["role"] == "staff"
        assert welcome["active_room"] == str(doctor.room)
        assert welcome["staff"] == {"id": doctor.doctor_id, "name": doctor.doctor_name, "role": "doctor"}
        assert [(await ws.expect("alert"))["alert"] for _ in shown_to_doctors] == shown_to_doctors
    batches, items = hub._hellos.batches - before[0], hub._hellos.items - before[1]
    assert items == len(people) + len(doctors) + 1
    assert batches < items  # some hellos were answered together
    # Those who said hello are present; the one refused is nobody.
    assert set(hub.patients) == {p.patient_id for p in people}
    async with running_app.pool.acquire() as con:
        assert not await con.fetchval("SELECT count(*) FROM queue_entry WHERE patient_id = ANY($1::bigint[]) "
                                      "AND left_at IS NOT NULL", [p.patient_id for p in people])
    for ws in (*patient_sockets, *doctor_sockets, intruder):
        await ws.close()


async def _hello_all(http: aiohttp.ClientSession, app: RunningApp,
                     pairs: list[Person]) -> list[tuple[WsClient, WsClient]]:
    sockets = []
    for p in pairs:
        patient, doctor = await _open(http, app), await _open(http, app, p.doctor_cookie)
        await _welcomed(patient, p.token)
        await _welcomed(doctor)
        sockets.append((patient, doctor))
    return sockets


async def test_many_joins_at_once_refuse_each_bad_room_exactly_and_announce_joined_first(
        running_app: RunningApp, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = await _people(running_app, paired=12, waiting=0, checkin=0, monkeypatch=monkeypatch)
    sockets = await _hello_all(http, running_app, pairs)
    closed, stranger = pairs[-1], pairs[-2]
    async with running_app.pool.acquire() as con:  # the last pair's consultation ended before anyone rejoined
        assert closed.room is not None and closed.doctor_id is not None
        ended = await consultations_db.end(con, closed.room, "doctor", audit.Actor.staff(closed.doctor_id))
    hub = running_app.hub
    before = (hub._joins.batches, hub._joins.items)
    open_pairs = list(zip(pairs[:-2], sockets[:-2], strict=True))
    joins = [(ws, p.room) for p, pair in open_pairs for ws in pair]
    joins.append((sockets[-1][1], closed.room))  # its own doctor: the room is closed
    joins.append((sockets[-2][0], pairs[0].room))  # a patient into another patient's room: forbidden
    joins.append((sockets[-2][1], pairs[1].room))  # a doctor into another doctor's room: forbidden
    refs = await asyncio.gather(*(ws.send(type="join", room=str(room)) for ws, room in joins))

    for (ws, room), ref in zip(joins[-3:], refs[-3:], strict=True):
        error = await ws.expect("error")
        expected = (("room_closed", f'cannot join consultation in state "{ended.status}"') if room == closed.room
                    else ("forbidden", f"room {room} is not yours"))
        assert (error["code"], error["message"], error["id"]) == (*expected, ref)
    assert stranger.room not in hub.rooms and closed.room not in hub.rooms
    for p, (patient, doctor) in open_pairs:
        first = []
        for ws, role in ((patient, "patient"), (doctor, "doctor")):
            joined = await ws.expect("joined", room=str(p.room))
            assert joined["role"] == role
            # Whoever joined first hears of the other only after its own `joined`.
            assert not [m for m in ws.inbox if m["type"] == "peer_joined"]
            if not joined["peer_present"]:
                first.append(ws)
        assert len(first) == 1  # exactly one of the two was in the room before the other
        announced = await first[0].expect("peer_joined", room=str(p.room))
        assert announced["role"] == ("doctor" if first[0] is patient else "patient")
        assert set(hub.rooms[p.room].members) == {"patient", "doctor"}
    batches, items = hub._joins.batches - before[0], hub._joins.items - before[1]
    assert items == len(joins)
    assert batches < items  # some joins were handled together
    async with running_app.pool.acquire() as con:  # both sides in: every call is marked started, once
        rows = await con.fetch("SELECT c.call_started_at, q.status FROM consultation c "
                               "JOIN queue_entry q ON q.id = c.queue_entry_id WHERE c.id = ANY($1::uuid[])",
                               [p.room for p, _ in open_pairs])
    assert all(r["call_started_at"] is not None and r["status"] == "in_call" for r in rows)
    for pair in sockets:
        for ws in pair:
            await ws.close()


async def test_a_session_ended_before_a_batched_join_closes_that_socket_alone(
        running_app: RunningApp, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = await _people(running_app, paired=6, waiting=0, checkin=0, monkeypatch=monkeypatch)
    sockets = await _hello_all(http, running_app, pairs)
    gone = pairs[0]
    async with running_app.pool.acquire() as con:  # signed out on another process: this one was not told
        await staff_db.close_session(con, gone.doctor_cookie)
    refs = await asyncio.gather(*(ws.send(type="join", room=str(p.room))
                                  for p, pair in zip(pairs, sockets, strict=True) for ws in pair))
    assert len(refs) == 2 * len(pairs)
    code, seen = await close_code(sockets[0][1])
    assert code == CloseCode.SESSION_ENDED
    assert "joined" not in seen
    room = running_app.hub.rooms.get(gone.room)
    assert room is None or "doctor" not in room.members
    for p, (patient, doctor) in zip(pairs[1:], sockets[1:], strict=True):
        assert (await patient.expect("joined", room=str(p.room)))["role"] == "patient"
        assert (await doctor.expect("joined", room=str(p.room)))["role"] == "doctor"
    await sockets[0][0].expect("joined", room=str(gone.room))  # the patient's join is not theirs to lose
    for pair in sockets:
        for ws in pair:
            with contextlib.suppress(Exception):
                await ws.close()


async def test_many_staff_upgrades_at_once_each_get_their_own_session(
        running_app: RunningApp, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = await _people(running_app, paired=8, waiting=0, checkin=0, monkeypatch=monkeypatch)
    ended = pairs[0]
    async with running_app.pool.acquire() as con:
        await staff_db.close_session(con, ended.doctor_cookie)
    sockets = await asyncio.gather(*(_open(http, running_app, p.doctor_cookie) for p in pairs),
                                   _open(http, running_app, "not-a-session"))
    for ws, p in zip(sockets[:-1], pairs, strict=True):
        if p is ended:  # no session: the socket is a patient's, and a patient's hello needs a token
            await _hello(ws)
            assert (await ws.expect("error"))["code"] == "not_authenticated"
        else:
            welcome = await _welcomed(ws)
            assert welcome["staff"]["id"] == p.doctor_id
    await _hello(sockets[-1])
    assert (await sockets[-1].expect("error"))["code"] == "not_authenticated"
    for ws in sockets:
        await ws.close()


async def test_batch_queries_answer_as_the_single_ones_do(
        running_app: RunningApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each statement a batch runs gives, for every item, what the one-item statement beside it gives."""
    people = await _people(running_app, paired=3, waiting=2, checkin=1, monkeypatch=monkeypatch)
    paired = [p for p in people if p.room is not None]
    signer = running_app.app[signer_key]
    async with running_app.pool.acquire() as con:
        facilities = [r["id"] for r in await con.fetch("SELECT id FROM facility ORDER BY id")]
        pairs = [(a, b) for a in facilities for b in facilities]
        assert await scope.relations(con, pairs) == [await scope.relation(con, a, b) for a, b in pairs]

        waiting = next(p for p in people if p.state == "waiting")
        entry = await con.fetchrow("SELECT id, facility_id FROM queue_entry WHERE patient_id = $1", waiting.patient_id)
        await alerts_db.raise_alert(con, entry_id=entry["id"], patient_id=waiting.patient_id,
                                    facility_id=entry["facility_id"], level=4, danger_signs=("convulsions",),
                                    clinicians_online=0)
        assert await alerts_db.open_for_many(con, facilities) == {f: await alerts_db.open_for(con, f)
                                                                  for f in facilities}

        rooms = [p.room for p in paired if p.room is not None]
        for n in range(3):  # three messages in the first room, one in the second, none in the third
            await chat_db.add(con, rooms[0], "patient", None, f"c{n}", f"tin {n}")
        await chat_db.add(con, rooms[1], "patient", None, "c0", "tin")
        assert await chat_db.histories(con, rooms, limit=2) == {r: await chat_db.history(con, r, limit=2)
                                                                for r in rooms}

        jtis = [signer.verify(p.token) for p in people] + [uuid.uuid4()]
        assert await links_db.lookup_many(con, jtis) == {
            j: link for j in jtis if (link := await links_db.lookup(con, j)) is not None}
        cookies = [p.doctor_cookie for p in paired] + ["not-a-session"]
        assert await staff_db.sessions(con, [staff_db.token_hash(c) for c in cookies]) == {
            staff_db.token_hash(c): s for c in cookies if (s := await staff_db.session(con, c)) is not None}

        ids = [p.patient_id for p in people]
        await con.execute("UPDATE queue_entry SET left_at = now() WHERE patient_id = ANY($1::bigint[])", ids)
        assert await queue_db.patients_back(con, ids, 600) == {p.patient_id for p in people if p.state != "checkin"}
        assert not await con.fetchval("SELECT count(*) FROM queue_entry WHERE patient_id = ANY($1::bigint[]) "
                                      "AND left_at IS NOT NULL", ids)
        assert await consultations_db.active_for_patients(con, ids) == {
            p.patient_id: await consultations_db.active_for_patient(con, p.patient_id) for p in paired}
        doctors = [p.doctor_id for p in paired if p.doctor_id is not None]
        assert await consultations_db.active_for_doctors(con, doctors) == {
            d: await consultations_db.active_for_doctor(con, d) for d in doctors}

        # One consultation both touched and marked started: both marks land (one UPDATE per row).
        await con.execute("UPDATE consultation SET doctor_seen_at = now() - interval '1 hour' "
                          "WHERE id = ANY($1::uuid[])", rooms)
        await consultations_db.joined(con, touch=rooms[:2], in_call=rooms[1:])
        rows = {r["id"]: r for r in await con.fetch(
            "SELECT c.id, c.doctor_seen_at > now() - interval '1 minute' AS touched, c.call_started_at, q.status "
            "FROM consultation c JOIN queue_entry q ON q.id = c.queue_entry_id WHERE c.id = ANY($1::uuid[])", rooms)}
        assert [(rows[r]["touched"], rows[r]["call_started_at"] is not None, rows[r]["status"]) for r in rooms] == [
            (True, False, "claimed"), (True, True, "in_call"), (False, True, "in_call")]
