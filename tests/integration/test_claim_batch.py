"""Claims and ends by group commit (signaling/batch.py, migration 0024) over real sockets and PostgreSQL: many
doctors at once take each patient exactly once, each claim and end of a batch gets the outcome it would get
alone, a batch whose transaction fails runs its items one by one, the audit chain holds one event per claim
and end and still verifies, and the batched pick follows the claim order of the single claim.

One batch on purpose: the messages are handed to the hub (`Hub.handle_raw`, what the socket's reader calls)
in one go, so they all reach the batcher before its first batch runs; the replies go out on the real sockets.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from db import audit
from db import consultations as consultations_db
from db import queue as queue_db
from db import staff as staff_db
from db.errors import Conflict
from signaling.rooms import Client, CloseCode
from tests.conftest import RunningApp
from tests.integration.conftest import Factory, Network
from tests.integration.test_call_signaling import connect, patient_link
from tests.integration.test_sessions_end import close_code
from tests.integration.wsclient import WsClient

QUEUE_EMPTY = ("nobody is waiting with their page open (patients shown offline keep their place; choose one to "
               "call them)")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def doctor_socket(app: RunningApp, http: aiohttp.ClientSession, staff_id: int) -> WsClient:
    async with app.pool.acquire() as con:
        cookie, _ = await staff_db.open_session(con, staff_id, timedelta(hours=1))
    ws = WsClient(await http.ws_connect(f"{app.url}/ws", headers={"Cookie": f"dh_session={cookie}"}))
    await ws.send(type="hello")
    await ws.expect("welcome")
    return ws


def hub_client(app: RunningApp, *, staff_id: int | None = None, patient_id: int | None = None,
               skip: tuple[Client, ...] = ()) -> Client:
    """The hub's side of a socket (the newest not in `skip`)."""
    found = [c for c in app.hub.clients if c not in skip and (
        (staff_id is not None and c.staff is not None and c.staff.staff_id == staff_id)
        or (patient_id is not None and c.patient is not None and c.patient.patient_id == patient_id))]
    assert len(found) == 1, found
    client: Client = found[0]
    return client


async def reply(ws: WsClient, ref: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
    """The reply to message `ref` (`paired`, `ended` or `error`); other messages are kept in the inbox."""
    for i, m in enumerate(ws.inbox):
        if m.get("id") == ref and m["type"] in ("paired", "ended", "error"):
            return ws.inbox.pop(i)
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, f"socket closed waiting for {ref}: {msg.type}"
            data: dict[str, Any] = msg.json()
            if data.get("id") == ref and data["type"] in ("paired", "ended", "error"):
                return data
            ws.inbox.append(data)


async def one_batch(app: RunningApp, which: str, sends: list[tuple[Client, dict[str, Any]]]) -> None:
    """Hand these messages to the hub at once: they reach the `which` batcher together and run as one batch."""
    batcher = app.hub._claims if which == "claims" else app.hub._ends
    before = batcher.batches
    await asyncio.gather(*(app.hub.handle_raw(client, json.dumps(message))
                           for client, message in sends))
    assert batcher.batches == before + 1


def claim(ref: str, entry: uuid.UUID | None = None) -> dict[str, Any]:
    return {"type": "claim_next", "id": ref, **({"entry": str(entry)} if entry is not None else {})}


async def test_thirty_doctors_at_once_take_each_waiting_patient_exactly_once(
        running_app: RunningApp, http: aiohttp.ClientSession, make: Factory, network: Network) -> None:
    doctors = await make.staff_many(30, network.commune)
    sockets = [await doctor_socket(running_app, http, d) for d in doctors]
    entries = {(await make.waiting(await make.patient(network.commune))).id for _ in range(10)}
    items_before = running_app.hub._claims.items

    refs = await asyncio.gather(*(ws.send(type="claim_next") for ws in sockets))
    answers = await asyncio.gather(*(reply(ws, ref) for ws, ref in zip(sockets, refs, strict=True)))

    paired = [a for a in answers if a["type"] == "paired"]
    assert sorted(uuid.UUID(a["entry"]) for a in paired) == sorted(entries)  # every patient, once each
    refused = [a for a in answers if a["type"] == "error"]
    assert len(refused) == 20
    assert {(a["code"], a["message"]) for a in refused} == {("queue_empty", QUEUE_EMPTY)}
    assert running_app.hub._claims.items - items_before == 30
    async with running_app.pool.acquire() as con:
        rows = await con.fetch("SELECT queue_entry_id, doctor_id FROM consultation WHERE queue_entry_id = ANY($1)",
                               list(entries))
    assert sorted(r["queue_entry_id"] for r in rows) == sorted(entries)
    assert len({r["doctor_id"] for r in rows}) == 10

    # Every doctor with a patient ends at once: each consultation ends once, and the chain has one event per
    # claim and per end, with the names, objects and details a single claim and end record.
    with_patient = [(ws, a) for ws, a in zip(sockets, answers, strict=True) if a["type"] == "paired"]
    end_refs = await asyncio.gather(*(ws.send(type="end", room=a["room"]) for ws, a in with_patient))
    for (ws, a), ref in zip(with_patient, end_refs, strict=True):
        ended = await reply(ws, ref)
        assert ended == {"type": "ended", "room": a["room"], "by": "doctor", "id": ref}
    async with running_app.pool.acquire() as con:
        assert await audit.verify_chain(con) is None
        for a in paired:
            joined, event = await audit.events_for(con, "queue_entry", a["entry"])
            assert joined["action"] == "queue.join"
            assert (event["action"], event["details"]) == ("queue.claim", {"consultation": a["room"]})
            (ended_event,) = await audit.events_for(con, "consultation", a["room"])
            assert (ended_event["action"], ended_event["details"]) == ("consultation.end", {"by": "doctor"})
            assert ended_event["actor_id"] == event["actor_id"]


async def test_each_claim_of_a_batch_gets_its_own_outcome(
        running_app: RunningApp, http: aiohttp.ClientSession, make: Factory, network: Network) -> None:
    free, busy, late, outsider, twice, also_free = await make.staff_many(6, network.commune)
    nurse = await make.staff(network.commune, role="nurse")
    await make.claimed(busy)
    taken = await make.claimed(late)  # `late` then ends it: the entry is done
    async with running_app.pool.acquire() as con:
        await consultations_db.end(con, taken.consultation_id, "doctor", audit.Actor.staff(late))
    sibling_entry = await make.waiting(await make.patient(network.sibling))  # outside the commune's scope
    chosen = await make.waiting(await make.patient(network.commune), level=0)
    first = await make.waiting(await make.patient(network.commune), level=3)
    second = await make.waiting(await make.patient(network.commune), level=2)
    sockets = {d: await doctor_socket(running_app, http, d) for d in (free, busy, late, outsider, twice, also_free,
                                                                        nurse)}
    twice_first = hub_client(running_app, staff_id=twice)
    twice_page = await doctor_socket(running_app, http, twice)  # the same doctor's second page
    twice_second = hub_client(running_app, staff_id=twice, skip=(twice_first,))

    sends = [
        (hub_client(running_app, staff_id=free), claim("a")),                      # the first in claim order
        (hub_client(running_app, staff_id=busy), claim("b")),                     # has a patient already
        (hub_client(running_app, staff_id=late), claim("c", taken.entry_id)),      # that entry is done
        (hub_client(running_app, staff_id=outsider), claim("d", sibling_entry.id)),  # not in scope
        (twice_first, claim("e", chosen.id)),                                      # a chosen patient
        (twice_second, claim("f")),                                                # same doctor, now busy
        (hub_client(running_app, staff_id=also_free), claim("g", chosen.id)),      # chosen earlier in the batch
        (hub_client(running_app, staff_id=nurse), claim("h")),                     # nurses do not claim
        (hub_client(running_app, staff_id=also_free), claim("i")),                 # the second in claim order
    ]
    await one_batch(running_app, "claims", sends)

    a = await reply(sockets[free], "a")
    assert a["type"] == "paired" and a["entry"] == str(first.id)
    assert await reply(sockets[busy], "b") == {
        "type": "error", "id": "b", "code": "doctor_busy",
        "message": "you already have an active consultation; end it first"}
    assert await reply(sockets[late], "c") == {
        "type": "error", "id": "c", "code": "already_claimed", "message": 'cannot claim queue entry in state "done"'}
    assert await reply(sockets[outsider], "d") == {
        "type": "error", "id": "d", "code": "not_found", "message": f"no queue entry {sibling_entry.id}"}
    e = await reply(sockets[twice], "e")
    assert e["type"] == "paired" and e["entry"] == str(chosen.id)
    assert (await reply(twice_page, "f"))["code"] == "doctor_busy"
    assert await reply(sockets[also_free], "g") == {
        "type": "error", "id": "g", "code": "already_claimed",
        "message": 'cannot claim queue entry in state "claimed"'}
    assert await reply(sockets[nurse], "h") == {
        "type": "error", "id": "h", "code": "forbidden", "message": "only doctors and specialists can claim patients"}
    i = await reply(sockets[also_free], "i")
    assert i["type"] == "paired" and i["entry"] == str(second.id)
    async with running_app.pool.acquire() as con:
        assert await audit.verify_chain(con) is None
        for entry_id in (first.id, chosen.id, second.id):
            assert [e["action"] for e in await audit.events_for(con, "queue_entry", entry_id)] == [
                "queue.join", "queue.claim"]
        assert [e["action"] for e in await audit.events_for(con, "queue_entry", sibling_entry.id)] == ["queue.join"]


async def test_a_session_ended_stops_its_claim_in_a_batch_and_not_the_others(
        running_app: RunningApp, http: aiohttp.ClientSession, make: Factory, network: Network) -> None:
    signed_out, other = await make.staff_many(2, network.commune)
    entry = await make.waiting(await make.patient(network.commune))
    gone, stays = (await doctor_socket(running_app, http, signed_out), await doctor_socket(running_app, http, other))
    async with running_app.pool.acquire() as con:
        await con.execute("UPDATE staff_session SET revoked_at = now() WHERE staff_id = $1", signed_out)
    await one_batch(running_app, "claims", [(hub_client(running_app, staff_id=signed_out), claim("x")),
                                            (hub_client(running_app, staff_id=other), claim("y"))])
    assert (await reply(stays, "y"))["entry"] == str(entry.id)
    code, seen = await close_code(gone)
    assert code == CloseCode.SESSION_ENDED and "paired" not in seen and "error" not in seen


async def test_a_batch_whose_transaction_fails_runs_its_claims_one_by_one(
        running_app: RunningApp, http: aiohttp.ClientSession, make: Factory, network: Network,
        pool: asyncpg.Pool) -> None:
    poisoned_doctor, a, b = await make.staff_many(3, network.commune)
    poisoned = await make.waiting(await make.patient(network.commune), level=0)
    first = await make.waiting(await make.patient(network.commune), level=2)
    second = await make.waiting(await make.patient(network.commune), level=1)
    sockets = {d: await doctor_socket(running_app, http, d) for d in (poisoned_doctor, a, b)}
    # One claim that the database refuses however it is run (a trigger standing for any unexpected error).
    async with pool.acquire() as con:
        await con.execute(f"""
            CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.queue_entry_id = '{poisoned.id}' THEN RAISE EXCEPTION 'poisoned claim'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_poison BEFORE INSERT ON consultation FOR EACH ROW EXECUTE FUNCTION test_poison();""")
    await one_batch(running_app, "claims", [
        (hub_client(running_app, staff_id=poisoned_doctor), claim("p", poisoned.id)),
        (hub_client(running_app, staff_id=a), claim("a")),
        (hub_client(running_app, staff_id=b), claim("b"))])
    assert (await reply(sockets[a], "a"))["entry"] == str(first.id)
    assert (await reply(sockets[b], "b"))["entry"] == str(second.id)
    # As any unexpected error on a socket: `internal`, with an incident number to find it in the log.
    assert (await sockets[poisoned_doctor].expect("error", code="internal"))["id"] == ""
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT status FROM queue_entry WHERE id = $1", poisoned.id) == "waiting"
        assert await audit.verify_chain(con) is None
        assert [e["action"] for e in await audit.events_for(con, "queue_entry", poisoned.id)] == ["queue.join"]


async def test_ends_in_a_batch_are_refused_exactly_as_alone(
        running_app: RunningApp, http: aiohttp.ClientSession, make: Factory, network: Network,
        pool: asyncpg.Pool) -> None:
    doctor, other_doctor, finished_doctor = await make.staff_many(3, network.commune)
    stranger = await make.staff(network.sibling)
    specialist = await make.staff(network.district, role="specialist")
    mine = await make.claimed(doctor)
    theirs = await make.claimed(other_doctor)
    finished = await make.claimed(finished_doctor)
    async with pool.acquire() as con:
        await consultations_db.end(con, finished.consultation_id, "doctor", audit.Actor.staff(finished_doctor))
        await consultations_db.add_participant(con, theirs.consultation_id, specialist, audit.Actor.staff(other_doctor))
    patient = await connect(http, running_app, await patient_link(running_app, theirs.patient_id))
    sockets = {d: await doctor_socket(running_app, http, d) for d in (doctor, other_doctor, stranger, finished_doctor,
                                                                        specialist)}
    doctor_first = hub_client(running_app, staff_id=doctor)
    second_page = await doctor_socket(running_app, http, doctor)
    doctor_second = hub_client(running_app, staff_id=doctor, skip=(doctor_first,))

    def end(ref: str, claim: queue_db.Claim) -> dict[str, Any]:
        return {"type": "end", "id": ref, "room": str(claim.consultation_id)}

    await one_batch(running_app, "ends", [
        (doctor_first, end("a", mine)),                                            # ends it
        (hub_client(running_app, patient_id=theirs.patient_id), end("b", theirs)),  # a patient does not end
        (hub_client(running_app, staff_id=specialist), end("c", theirs)),          # nor does invited staff
        (hub_client(running_app, staff_id=stranger), end("d", theirs)),            # not their room
        (hub_client(running_app, staff_id=finished_doctor), end("e", finished)),   # over already
        (doctor_second, end("f", mine)),                                           # ended earlier in the batch
        (hub_client(running_app, staff_id=other_doctor), end("g", theirs)),        # ends it
    ])
    assert await reply(sockets[doctor], "a") == {"type": "ended", "room": str(mine.consultation_id), "by": "doctor",
                                                 "id": "a"}
    assert await reply(patient, "b") == {
        "type": "error", "id": "b", "code": "doctor_ends",
        "message": "only the doctor ends the consultation; send leave to leave the call"}
    assert await reply(sockets[specialist], "c") == {
        "type": "error", "id": "c", "code": "forbidden",
        "message": "invited staff may leave the call, not end the consultation"}
    assert await reply(sockets[stranger], "d") == {
        "type": "error", "id": "d", "code": "forbidden", "message": f"room {theirs.consultation_id} is not yours"}
    assert await reply(sockets[finished_doctor], "e") == {
        "type": "error", "id": "e", "code": "room_closed", "message": 'cannot join consultation in state "ended"'}
    assert await reply(second_page, "f") == {
        "type": "error", "id": "f", "code": "not_active", "message": 'cannot end consultation in state "ended"'}
    assert (await reply(sockets[other_doctor], "g"))["type"] == "ended"
    assert (await patient.expect("ended"))["room"] == str(theirs.consultation_id)  # the patient's page is told
    async with pool.acquire() as con:
        assert await audit.verify_chain(con) is None
        for c in (mine, theirs):
            assert [(e["action"], e["details"]) for e in await audit.events_for(
                con, "consultation", c.consultation_id) if e["action"] == "consultation.end"] == [
                ("consultation.end", {"by": "doctor"})]
            assert await con.fetchval("SELECT status FROM queue_entry WHERE id = $1", c.entry_id) == "done"


async def test_a_batch_whose_transaction_fails_runs_its_ends_one_by_one(
        running_app: RunningApp, http: aiohttp.ClientSession, make: Factory, network: Network,
        pool: asyncpg.Pool) -> None:
    poisoned_doctor, doctor = await make.staff_many(2, network.commune)
    poisoned, fine = await make.claimed(poisoned_doctor), await make.claimed(doctor)
    sockets = {d: await doctor_socket(running_app, http, d) for d in (poisoned_doctor, doctor)}
    async with pool.acquire() as con:
        await con.execute(f"""
            CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.id = '{poisoned.consultation_id}' AND NEW.status = 'ended' THEN
                    RAISE EXCEPTION 'poisoned end';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_poison BEFORE UPDATE ON consultation FOR EACH ROW EXECUTE FUNCTION test_poison();""")
    await one_batch(running_app, "ends", [
        (hub_client(running_app, staff_id=poisoned_doctor),
         {"type": "end", "id": "p", "room": str(poisoned.consultation_id)}),
        (hub_client(running_app, staff_id=doctor), {"type": "end", "id": "f", "room": str(fine.consultation_id)})])
    assert (await reply(sockets[doctor], "f"))["type"] == "ended"
    assert (await sockets[poisoned_doctor].expect("error", code="internal"))["id"] == ""
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT status FROM consultation WHERE id = $1", poisoned.consultation_id) == "active"
        assert await audit.verify_chain(con) is None


async def test_the_batched_pick_follows_the_claim_order_of_the_single_claim(
        pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    """Two stations with the same queue (levels, put back after a drop, back after leaving, arrival): the
    batch claims one in one go, the single claim the other one by one; both in `queue.ORDER`. A district
    doctor's batch takes both stations' patients in that order across them."""
    now = datetime.now(UTC)
    shape = [(1, None, None, 50), (3, None, None, 10), (1, 5, None, 40), (2, None, 8, 30), (2, None, None, 20),
             (0, None, None, 60), (3, None, None, 5), (1, None, None, 45)]

    async def station(facility_id: int, offset: int) -> list[uuid.UUID]:
        ids = []
        for level, requeued, rejoined, minutes in shape:
            entry = await make.waiting(await make.patient(facility_id), level=level,
                                       arrived_at=now - timedelta(minutes=minutes, seconds=offset))
            async with pool.acquire() as con:
                await con.execute("UPDATE queue_entry SET requeued_at = $2, rejoined_at = $3 WHERE id = $1", entry.id,
                                  now - timedelta(minutes=requeued) if requeued else None,
                                  now - timedelta(minutes=rejoined) if rejoined else None)
            ids.append(entry.id)
        return ids

    batched_ids, single_ids = await station(network.commune, 0), await station(network.sibling, 1)
    async with pool.acquire() as con:
        expected = {f: [r["id"] for r in await queue_db.waiting_list(con, f)] for f in (network.commune,
                                                                                          network.sibling)}
        everyone = [r["id"] for r in await queue_db.waiting_list(con, network.district)]
    assert sorted(expected[network.commune]) == sorted(batched_ids)

    batch_doctors = await make.staff_many(len(shape), network.commune)
    async with pool.acquire() as con:
        outcomes = await queue_db.claim_batch(con, [queue_db.ClaimAsk(d, network.commune) for d in batch_doctors])
    assert [o.entry_id for o in outcomes if isinstance(o, queue_db.Claim)] == expected[network.commune]

    single_doctors = await make.staff_many(len(shape), network.sibling)
    singles = []
    for d in single_doctors:
        async with pool.acquire() as con:
            claimed = await queue_db.claim_next(con, d, network.sibling)
        assert claimed is not None
        singles.append(claimed.entry_id)
    assert singles == expected[network.sibling]
    assert sorted(single_ids) == sorted(singles)

    # Across stations: a district doctor's scope holds both; batch and single agree on the order too.
    again = [await station(network.commune, 2), await station(network.sibling, 3)]
    async with pool.acquire() as con:
        across = [r["id"] for r in await queue_db.waiting_list(con, network.district)]
        assert sorted(across) == sorted(again[0] + again[1]) and not set(across) & set(everyone)
        district_doctors = await make.staff_many(len(across) + 1, network.district)
        outcomes = await queue_db.claim_batch(con, [queue_db.ClaimAsk(d, network.district) for d in district_doctors])
        assert [o.entry_id for o in outcomes[:-1] if isinstance(o, queue_db.Claim)] == across
        assert outcomes[-1] is None  # nobody left: queue_empty
        assert await audit.verify_chain(con) is None


async def test_events_appended_together_chain_and_hash_as_one_by_one(pool: asyncpg.Pool) -> None:
    """`audit.record_many` (one lock, one statement) between single `record`s: every row chained to the one
    before and hashed as `audit._digest` computes it, whatever the details hold (Vietnamese, quotes, nesting)."""
    events = [audit.Event(audit.Actor.staff(7), "queue.claim", "queue_entry", uuid.uuid4(), {"consultation": "x"}),
              audit.Event(audit.SYSTEM, "consultation.end", "consultation", 42, {}),
              audit.Event(audit.Actor.patient(3), "note.read", "note", "n-1",
                          {"lý do": 'ho "khan"', "list": [1, 2.5, None, True], "nested": {"b": 1, "a": "ấ"}})]
    async with pool.acquire() as con:
        await audit.record(con, audit.SYSTEM, "before", "thing", 1)
        async with con.transaction():
            await audit.record_many(con, events)
        await audit.record_many(con, [])  # nothing to append: no row, no lock
        await audit.record(con, audit.SYSTEM, "after", "thing", 2)
        assert await audit.verify_chain(con) is None
        rows = await con.fetch("SELECT * FROM audit_event ORDER BY id")
    assert [r["action"] for r in rows][-5:] == ["before", "queue.claim", "consultation.end", "note.read", "after"]
    assert [r["details"] for r in rows][-4:-1] == [e.details for e in events]
    for before, row in zip(rows, rows[1:], strict=False):
        assert row["prev_hash"] == before["hash"]


async def test_batches_of_two_processes_at_once_take_each_patient_exactly_once(
        two_apps: tuple[RunningApp, RunningApp], http: aiohttp.ClientSession, pool: asyncpg.Pool,
        make: Factory, network: Network) -> None:
    """Two processes on one database, each running a batch of claims at the same moment: the entries one
    batch holds are skipped by the other (`FOR UPDATE SKIP LOCKED` across transactions), never given twice."""
    a, b = two_apps
    doctors = await make.staff_many(16, network.commune)
    entries = {(await make.waiting(await make.patient(network.commune))).id for _ in range(12)}
    sockets = {d: await doctor_socket(a if i % 2 else b, http, d) for i, d in enumerate(doctors)}
    on_a = [(hub_client(a, staff_id=d), claim(f"c{d}")) for i, d in enumerate(doctors) if i % 2]
    on_b = [(hub_client(b, staff_id=d), claim(f"c{d}")) for i, d in enumerate(doctors) if not i % 2]
    await asyncio.gather(one_batch(a, "claims", on_a), one_batch(b, "claims", on_b))
    answers = [await reply(sockets[d], f"c{d}") for d in doctors]
    paired = [uuid.UUID(x["entry"]) for x in answers if x["type"] == "paired"]
    assert sorted(paired) == sorted(entries)
    assert [x["code"] for x in answers if x["type"] == "error"] == ["queue_empty"] * 4
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM consultation WHERE queue_entry_id = ANY($1)",
                                  list(entries)) == 12
        assert await audit.verify_chain(con) is None


async def test_a_batch_skips_the_entries_another_transaction_holds(
        pool: asyncpg.Pool, make: Factory, network: Network) -> None:
    """While another transaction holds the first patient in claim order (another process claiming them), a
    batch's next claim takes the second, and a claim of that very patient is `already_claimed` (being
    claimed by someone else), as a single claim says; once the other transaction is gone, they are taken."""
    held = await make.waiting(await make.patient(network.commune), level=3)
    second = await make.waiting(await make.patient(network.commune), level=1)
    first_doctor, second_doctor, third_doctor = await make.staff_many(3, network.commune)
    async with pool.acquire() as other, other.transaction():
        await other.execute("SELECT 1 FROM queue_entry WHERE id = $1 FOR UPDATE", held.id)
        async with pool.acquire() as con:
            outcomes = await queue_db.claim_batch(con, [queue_db.ClaimAsk(first_doctor, network.commune),
                                                        queue_db.ClaimAsk(second_doctor, network.commune, held.id)])
    assert isinstance(outcomes[0], queue_db.Claim) and outcomes[0].entry_id == second.id
    assert isinstance(outcomes[1], Conflict) and (outcomes[1].code, outcomes[1].message) == (
        "already_claimed", f"queue entry {held.id} is being claimed by someone else")
    async with pool.acquire() as con:
        (taken,) = await queue_db.claim_batch(con, [queue_db.ClaimAsk(third_doctor, network.commune)])
    assert isinstance(taken, queue_db.Claim) and taken.entry_id == held.id
