"""Patient safety on a consultation day (issue 8, points 1, 2, 3 and 10), over real sockets and PostgreSQL:
danger alerts that are stored and kept until acknowledged, the on-call SMS when nobody is online, offline
patients skipped by "take next", no-shows, the doctor dropping, and the patient's hang-up that is not an end.

Time is moved in the database (`left_at`, `doctor_seen_at`), never slept through."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from yarl import URL

from db import audit
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import check_in, connect, patient_link, staff_session
from tests.integration.wsclient import WsClient

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

STATION_PHONE = "0216 3878 210"  # the demo commune station (db/demo.py)
ON_CALL_PHONE = "+84987000101"  # bacsi.lan, on call for the commune station in the demo
DANGER = {"reason": "đau ngực", "symptoms": ["chest_pain"]}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def lan(running_app: RunningApp) -> AsyncIterator[aiohttp.ClientSession]:
    session = await staff_session(running_app, "bacsi.lan")
    yield session
    await session.close()


@pytest.fixture
async def minh(running_app: RunningApp) -> AsyncIterator[aiohttp.ClientSession]:
    session = await staff_session(running_app, "bacsi.minh")
    yield session
    await session.close()


async def post(staff: aiohttp.ClientSession, app: RunningApp, path: str,
               body: dict[str, Any]) -> aiohttp.ClientResponse:
    csrf = staff.cookie_jar.filter_cookies(URL(app.url))["dh_csrf"].value
    return await staff.post(f"{app.url}{path}", json=body, headers={"X-CSRF-Token": csrf})


async def fetchrow(app: RunningApp, sql: str, *args: object) -> asyncpg.Record:
    async with app.pool.acquire() as con:
        row = await con.fetchrow(sql, *args)
    assert row is not None, sql
    return row


async def execute(app: RunningApp, sql: str, *args: object) -> None:
    async with app.pool.acquire() as con:
        await con.execute(sql, *args)


async def gone(app: RunningApp, client: WsClient, watcher: WsClient, patient_id: int) -> None:
    """Close a patient's page and wait until the server has recorded it (the watcher's queue shows it)."""
    await client.close()
    while True:
        listing = await watcher.expect("queue_list")
        if any(e["patient"]["id"] == patient_id and not e["online"] for e in listing["entries"]):
            return


# ---- 1. danger signs with no doctor online --------------------------------------------------------------

async def test_danger_sign_with_nobody_online_texts_the_on_call_doctor_and_tells_the_patient_the_truth(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 1)
    result = await check_in(http, running_app, token, **DANGER)
    assert result["emergency"] is True
    assert result["clinicians_online"] == 0 and result["on_call_texted"] is True
    assert result["facility_phone"] == STATION_PHONE

    alert = await fetchrow(running_app, "SELECT * FROM danger_alert WHERE queue_entry_id = $1",
                           uuid.UUID(str(result["entry"])))
    assert alert["clinicians_online"] == 0 and alert["acknowledged_at"] is None
    sms = await fetchrow(running_app, "SELECT * FROM outbound_message WHERE kind = 'danger_alert'")
    assert sms["to_phone"] == ON_CALL_PHONE and sms["alert_id"] == alert["id"]
    assert "NC4" in sms["body"] and sms["body"].endswith("/staff")
    assert "Giang" not in sms["body"] and "Páo" not in sms["body"]  # no patient name in an SMS to staff

    # The page says what is true: nobody is online, call 115, the on-call doctor was texted, the station's number.
    page = await (await http.get(f"{running_app.url}/j/{token}")).text()
    assert re.search(r'<span id="emergency-nobody" >', page)
    assert re.search(r'<span id="emergency-alerted" hidden>', page)
    assert re.search(r'<span id="emergency-on-call" data-texted="true" >', page)
    assert 'href="tel:02163878210">0216 3878 210</a>' in page


async def test_danger_sign_with_a_doctor_online_alerts_them_and_sends_no_sms(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession) -> None:
    doctor = await connect(lan, running_app)
    result = await check_in(http, running_app, await patient_link(running_app, 1), **DANGER)
    assert result["clinicians_online"] == 1 and result["on_call_texted"] is False
    alert = await doctor.expect("alert")
    assert alert["entry"] == result["entry"] and alert["level"] == "NC4" and alert["alert"]
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM outbound_message WHERE kind = 'danger_alert'") == 0
    await doctor.close()


async def test_alert_reaches_clinicians_who_connect_later_and_stays_until_one_acknowledges_it(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession,
        minh: aiohttp.ClientSession) -> None:
    result = await check_in(http, running_app, await patient_link(running_app, 2), **DANGER)

    later = await connect(lan, running_app)  # signed in after the check-in
    alert = await later.expect("alert")
    assert alert["entry"] == result["entry"] and alert["on_call_texted"] is True
    await later.close()
    again = await connect(lan, running_app)  # a reload shows it again: nobody has acknowledged it
    assert (await again.expect("alert"))["alert"] == alert["alert"]
    colleague = await connect(minh, running_app)
    assert (await colleague.expect("alert"))["alert"] == alert["alert"]

    ref = await again.send(type="ack_alert", alert=alert["alert"])
    acked = await again.expect("alert_acked", id=ref)
    assert acked["alert"] == alert["alert"] and acked["by"] == "BS. Nguyễn Thị Lan"
    assert (await colleague.expect("alert_acked"))["alert"] == alert["alert"]  # gone from every screen
    ref = await colleague.send(type="ack_alert", alert=alert["alert"])
    assert (await colleague.expect("error", id=ref))["code"] == "already_acknowledged"

    fresh = await connect(minh, running_app)
    ref = await fresh.send(type="ping")
    await fresh.expect("pong", id=ref)  # alerts come right after welcome, so any would be in the inbox now
    assert not [m for m in fresh.inbox if m["type"] == "alert"]
    async with running_app.pool.acquire() as con:
        events = await audit.events_for(con, "danger_alert", alert["alert"])
    assert [e["action"] for e in events] == ["alert.raise", "alert.text_on_call", "alert.acknowledge"]
    for ws in (again, colleague, fresh):
        await ws.close()


# ---- 2. patients who have left --------------------------------------------------------------------------

async def test_take_next_skips_a_patient_whose_page_closed_and_their_place_is_not_counted(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession) -> None:
    first, second = await patient_link(running_app, 1), await patient_link(running_app, 7)
    await check_in(http, running_app, first)
    await check_in(http, running_app, second)
    left = await connect(http, running_app, first)
    waiting = await connect(http, running_app, second)
    await waiting.expect("queue", position=2)
    doctor = await connect(lan, running_app)

    await gone(running_app, left, doctor, 1)
    assert (await waiting.expect("queue", position=1))["position"] == 1  # the one who left is in nobody's way
    row = await fetchrow(running_app, "SELECT left_at FROM queue_entry WHERE patient_id = 1 AND status = 'waiting'")
    assert row["left_at"] is not None

    ref = await doctor.send(type="claim_next")
    paired = await doctor.expect("paired", id=ref)
    assert (await fetchrow(running_app, "SELECT patient_id FROM consultation WHERE id = $1",
                           uuid.UUID(paired["room"])))["patient_id"] == 7
    await waiting.expect("paired")
    await waiting.close()
    await doctor.close()


async def test_a_patient_back_within_the_grace_period_keeps_their_place_and_later_queues_again(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession) -> None:
    first, second = await patient_link(running_app, 1), await patient_link(running_app, 7)
    await check_in(http, running_app, first)
    await check_in(http, running_app, second)
    await execute(running_app, "UPDATE queue_entry SET triage_level = 1 WHERE status = 'waiting'")  # one level
    p1 = await connect(http, running_app, first)
    p2 = await connect(http, running_app, second)
    doctor = await connect(lan, running_app)
    await gone(running_app, p1, doctor, 1)

    p1 = await connect(http, running_app, first)  # back at once: still first
    await p1.expect("queue", position=1)
    await gone(running_app, p1, doctor, 1)
    await execute(running_app, "UPDATE queue_entry SET left_at = now() - make_interval(secs => $1) "
                  "WHERE patient_id = 1 AND status = 'waiting'", running_app.hub.offline_grace_s + 1)
    p1 = await connect(http, running_app, first)  # back after the grace period: queues again from now
    await p1.expect("queue", position=2)
    await p2.expect("queue", position=1)
    for ws in (p1, p2, doctor):
        await ws.close()


async def test_no_show_is_recorded_with_its_reason_and_the_patient_gets_a_new_link_by_sms(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 1)
    await check_in(http, running_app, token)
    page = await connect(http, running_app, token)
    doctor = await connect(lan, running_app)
    await gone(running_app, page, doctor, 1)  # the patient's page closed before the call
    ref = await doctor.send(type="claim_next")
    assert (await doctor.expect("error", id=ref))["code"] == "queue_empty"  # nobody online to hand out
    entry_id = (await fetchrow(running_app, "SELECT id FROM queue_entry WHERE patient_id = 1 "
                               "AND status = 'waiting'"))["id"]
    ref = await doctor.send(type="claim_next", entry=str(entry_id))  # the doctor chooses her anyway
    room = (await doctor.expect("paired", id=ref))["room"]
    await doctor.send(type="join", room=room)
    joined = await doctor.expect("joined")
    assert joined["peer_present"] is False and joined["peer_left_at"] and joined["peer_page_open"] is False

    ref = await doctor.send(type="call_back", room=room)
    assert (await doctor.expect("error", id=ref))["code"] == "patient_offline"
    r = await post(lan, running_app, f"/api/c/{room}/patient-phone", {})
    assert r.status == 200 and (await r.json())["phone"] == "+84912345601"
    r = await post(lan, running_app, f"/api/c/{room}/no-show", {"reason": "maybe"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"
    r = await post(lan, running_app, f"/api/c/{room}/no-show", {"reason": "never_joined"})
    body = await r.json()
    assert r.status == 200 and body["outcome"] == "no_show" and body["sms"] is True
    assert (await doctor.expect("ended"))["room"] == room

    c = await fetchrow(running_app, "SELECT status, outcome FROM consultation WHERE id = $1", uuid.UUID(room))
    assert (c["status"], c["outcome"]) == ("ended", "no_show")
    entry = await fetchrow(running_app, "SELECT status, closed_reason FROM queue_entry WHERE patient_id = 1 "
                           "ORDER BY arrived_at DESC LIMIT 1")
    assert (entry["status"], entry["closed_reason"]) == ("no_show", "never_joined")
    sms = await fetchrow(running_app, "SELECT * FROM outbound_message WHERE kind = 'no_show'")
    assert sms["to_phone"] == "+84912345601" and str(sms["invitation_id"]) == body["invitation"]
    new_token = sms["body"].rsplit("/j/", 1)[1]
    assert (await http.get(f"{running_app.url}/j/{new_token}")).status == 200  # a fresh way back
    assert (await http.get(f"{running_app.url}/j/{token}")).status == 410
    r = await post(lan, running_app, f"/api/c/{room}/no-show", {"reason": "left"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_active"

    # The station still sees them, with the reason.
    watcher = await connect(lan, running_app)
    listing = await watcher.expect("queue_list")
    assert [(n["patient"]["id"], n["reason"]) for n in listing["no_shows"]] == [(1, "never_joined")]
    async with running_app.pool.acquire() as con:
        reveals = await audit.events_for(con, "patient", 1)
    assert "patient.reveal_phone" in [e["action"] for e in reveals]
    await watcher.close()
    await doctor.close()


# ---- 3. when the doctor drops ---------------------------------------------------------------------------

async def test_patient_is_told_at_once_when_the_doctor_drops_and_returns_ahead_of_their_level(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession,
        minh: aiohttp.ClientSession) -> None:
    offline, dropped, later = [await patient_link(running_app, n) for n in (7, 1, 10)]
    for token in (offline, dropped, later):
        await check_in(http, running_app, token)
    await execute(running_app, "UPDATE queue_entry SET triage_level = 1 WHERE status = 'waiting'")  # one level
    watcher = await connect(minh, running_app)
    away = await connect(http, running_app, offline)
    await gone(running_app, away, watcher, 7)  # arrived first, then closed the page
    patient = await connect(http, running_app, dropped)
    other = await connect(http, running_app, later)
    await other.expect("queue", position=2)

    doctor = await connect(lan, running_app)
    ref = await doctor.send(type="claim_next")
    room = (await doctor.expect("paired", id=ref))["room"]  # the offline patient 7 was skipped
    await patient.expect("paired", room=room)
    await patient.send(type="join", room=room)
    await patient.expect("joined")
    await doctor.send(type="join", room=room)
    await doctor.expect("joined")
    await doctor.close()
    peer_left = await patient.expect("peer_left")  # at once, not after the grace period
    assert peer_left["reason"] == "disconnected" and peer_left["grace_s"] == running_app.hub.requeue_grace_s

    await execute(running_app, "UPDATE consultation SET doctor_seen_at = now() - make_interval(secs => $1) "
                  "WHERE id = $2", running_app.hub.requeue_grace_s + 1, uuid.UUID(room))
    assert [str(r) for r in await running_app.hub.sweep()] == [room]
    assert (await patient.expect("requeued"))["reason"] == "doctor_disconnected"
    await patient.expect("queue", position=1)  # ahead of patient 10 (and of 7, who is offline)
    listing = await watcher.expect("queue_list", total=3)
    assert [e["patient"]["id"] for e in listing["entries"]] == [1, 7, 10]
    for ws in (patient, other, watcher):
        await ws.close()


# ---- 10. hanging up is not ending -----------------------------------------------------------------------

async def test_patient_hang_up_leaves_the_call_and_the_doctor_calls_back_until_the_doctor_ends(
        running_app: RunningApp, http: aiohttp.ClientSession, lan: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 1)
    await check_in(http, running_app, token)
    patient = await connect(http, running_app, token)
    doctor = await connect(lan, running_app)
    ref = await doctor.send(type="claim_next")
    room = (await doctor.expect("paired", id=ref))["room"]
    await patient.expect("paired")
    for side in (patient, doctor):
        await side.send(type="join", room=room)
        await side.expect("joined")

    ref = await patient.send(type="end", room=room)
    error = await patient.expect("error", id=ref)
    assert error["code"] == "doctor_ends" and "leave" in error["message"]
    ref = await patient.send(type="leave", room=room)
    await patient.expect("left", id=ref)
    left = await doctor.expect("peer_left")
    assert left["reason"] == "left" and left["at"]
    c = await fetchrow(running_app, "SELECT status FROM consultation WHERE id = $1", uuid.UUID(room))
    assert c["status"] == "active"
    assert (await http.get(f"{running_app.url}/j/{token}")).status == 200  # the link keeps working

    ref = await doctor.send(type="call_back", room=room)
    assert (await doctor.expect("calling", id=ref))["pages"] == 1
    again = await patient.expect("paired", room=room)
    assert again["call_back"] is True
    await patient.send(type="join", room=room)
    await patient.expect("joined")
    await doctor.expect("peer_joined")

    ref = await patient.send(type="call_back", room=room)
    assert (await patient.expect("error", id=ref))["code"] == "forbidden"
    await doctor.send(type="end", room=room)
    assert (await patient.expect("ended"))["by"] == "doctor"
    assert (await http.get(f"{running_app.url}/j/{token}")).status == 410
    await patient.close()
    await doctor.close()
