"""What the patient said at check-in reaches the doctor's queue (`queue_list` entries' `checkin`), the
connection test's verdict is kept with it, and the patient learns the doctor's name and facility
(`peer_facility` in `paired` and `joined`). Real sockets, real PostgreSQL."""

from __future__ import annotations

import uuid

import aiohttp

from db import queue as queue_db
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import check_in, connect, http, patient_link, staff_session

__all__ = ["http"]  # the fixture, shared with test_call_signaling


async def test_queue_list_carries_the_answers_and_what_raised_the_level(running_app: RunningApp,
                                                                        http: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 7)  # 25 years old, no key group
    test = {"verdict": "weak", "rtt_ms": 640, "loss_pct": 7.5, "kbps_up": 120}
    result = await check_in(http, running_app, token, symptoms=["headache", "cough"], days_ill=2, spo2=95,
                            systolic=185, diastolic=115, connection_test=test)
    assert result["level"] == "NC4"
    doctor_http = await staff_session(running_app)
    try:
        doctor = await connect(doctor_http, running_app)
        listing = await doctor.expect("queue_list")
        [entry] = listing["entries"]
        assert entry["checkin"] == {
            "symptoms": ["cough", "headache"], "days_ill": 2, "spo2": 95, "systolic": 185, "diastolic": 115,
            "connection_test": test,
            "reasons": ["hypertensive_emergency", "hypertensive_urgency", "borderline_spo2", "high_bp",
                        "has_symptoms"],
            "highlight": {"bp": "danger", "symptoms.headache": "danger", "spo2": "raised"},
        }
        async with running_app.pool.acquire() as con:
            stored = await queue_db.get_entry(con, uuid.UUID(entry["entry"]))
        assert stored is not None and stored.checkin["connection_test"] == test
        await doctor.close()
    finally:
        await doctor_http.close()


async def test_a_check_in_without_a_connection_test_shows_none(running_app: RunningApp,
                                                               http: aiohttp.ClientSession) -> None:
    await check_in(http, running_app, await patient_link(running_app, 7))
    doctor_http = await staff_session(running_app)
    try:
        doctor = await connect(doctor_http, running_app)
        [entry] = (await doctor.expect("queue_list"))["entries"]
        assert entry["checkin"]["connection_test"] is None
        assert entry["checkin"]["highlight"] == {"symptoms.cough": "raised"}  # NC1: any symptom
        await doctor.close()
    finally:
        await doctor_http.close()


async def test_a_malformed_connection_test_is_refused_with_a_precise_error(running_app: RunningApp,
                                                                         http: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 7)
    headers = {"Authorization": f"Bearer {token}"}
    r = await http.post(f"{running_app.url}/api/p/consent", json={"version": "2026-11-v1"}, headers=headers)
    assert r.status == 200
    for bad in ({"verdict": "excellent"}, {"verdict": "good", "loss_pct": 140}, {"verdict": "good", "x": 1},
                "good"):
        r = await http.post(f"{running_app.url}/api/p/checkin", headers=headers,
                            json={"symptoms": ["cough"], "connection_test": bad})
        assert r.status == 400, bad
        error = (await r.json())["error"]
        assert error["code"] == "invalid" and "connection_test" in error["message"], error


async def test_the_patient_is_told_the_doctors_name_and_facility(running_app: RunningApp,
                                                                http: aiohttp.ClientSession) -> None:
    token = await patient_link(running_app, 1)
    await check_in(http, running_app, token)
    patient = await connect(http, running_app, token)
    doctor_http = await staff_session(running_app)
    try:
        doctor = await connect(doctor_http, running_app)
        await doctor.send(type="claim_next")
        paired_d = await doctor.expect("paired")
        assert paired_d["peer_name"] == "Giàng A Páo" and "peer_facility" not in paired_d
        paired = await patient.expect("paired")
        assert (paired["peer_name"], paired["peer_facility"]) == ("BS. Nguyễn Thị Lan", "Trạm Y tế xã Mù Cang Chải")
        await patient.send(type="join", room=paired["room"])
        joined = await patient.expect("joined")
        assert (joined["peer_name"], joined["peer_facility"]) == ("BS. Nguyễn Thị Lan", "Trạm Y tế xã Mù Cang Chải")
        await doctor.send(type="join", room=paired["room"])
        joined_d = await doctor.expect("joined")
        assert joined_d["peer_name"] == "Giàng A Páo" and "peer_facility" not in joined_d
        # A reconnecting patient page hears it again with `paired`, right after `welcome`.
        again = await connect(http, running_app, token)
        assert (await again.expect("paired"))["peer_facility"] == "Trạm Y tế xã Mù Cang Chải"
        for ws in (again, doctor):
            await ws.close()
    finally:
        await doctor_http.close()
    await patient.close()
