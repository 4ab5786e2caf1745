"""/metrics counts what a scripted session did (real sockets, real PostgreSQL), and only this machine or the
metrics token may read it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningApp, make_settings
from tests.integration.test_call_signaling import check_in, connect, patient_link, staff_session
from web.settings import Settings

TOKEN = "scrape-token-" + "k" * 20
REMOTE = {"X-Forwarded-For": "203.0.113.9"}  # through the trusted loopback proxy: a client elsewhere

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def app_settings(dsn: str, tmp_path: Path) -> Settings:
    return make_settings(dsn, tmp_path, metrics_token=TOKEN)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def scrape(http: aiohttp.ClientSession, app: RunningApp) -> Samples:
    r = await http.get(f"{app.url}/metrics")
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(await r.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_sockets_queue_claims_relayed_and_refused_messages(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    calm, urgent = await patient_link(running_app, 1), await patient_link(running_app, 2)
    calm_in = await check_in(http, running_app, calm)
    urgent_in = await check_in(http, running_app, urgent, spo2=85)  # low SpO2: a danger sign
    assert not calm_in["danger_signs"] and urgent_in["danger_signs"]
    patient_calm = await connect(http, running_app, calm)
    patient_urgent = await connect(http, running_app, urgent)
    doctor_http = await staff_session(running_app)
    try:
        doctor = await connect(doctor_http, running_app)
        await doctor.expect("queue_list")

        before = await scrape(http, running_app)
        assert value(before, "donghanh_open_sockets", role="patient") == 2
        assert value(before, "donghanh_open_sockets", role="doctor") == 1
        assert value(before, "donghanh_doctors_online") == 1
        assert value(before, "donghanh_waiting_patients", level=str(calm_in["level"]), danger_sign="false") == 1
        assert value(before, "donghanh_waiting_patients", level=str(urgent_in["level"]), danger_sign="true") == 1
        assert value(before, "donghanh_waiting_oldest_seconds", level=str(urgent_in["level"]),
                     danger_sign="true") >= 0
        assert value(before, "donghanh_rooms") == 0
        assert value(before, "donghanh_claims_total") == 0

        # A call: claim (the urgent patient first), join, offer, answer, two candidates, chat, media.
        ref = await doctor.send(type="claim_next")
        room = (await doctor.expect("paired", id=ref))["room"]
        assert (await patient_urgent.expect("paired"))["room"] == room
        await patient_urgent.send(type="join", room=room)
        await patient_urgent.expect("joined")
        await doctor.send(type="join", room=room)
        await doctor.expect("joined")
        await patient_urgent.expect("peer_joined")
        await doctor.send(type="offer", room=room, sdp="v=0 offer")
        await patient_urgent.expect("offer")
        await patient_urgent.send(type="answer", room=room, sdp="v=0 answer")
        await doctor.expect("answer")
        for _ in range(2):
            await patient_urgent.send(type="ice", room=room, candidate=None)
            await doctor.expect("ice")
        await doctor.send(type="chat", room=room, text="Chào chị")
        await patient_urgent.expect("chat")
        await patient_urgent.send(type="media", room=room, audio=True, video=False)
        await doctor.expect("peer_media")
        # Refused: a room the patient is not in, and a message type that does not exist.
        await patient_calm.send(type="offer", room=room, sdp="v=0")
        assert (await patient_calm.expect("error"))["code"] == "not_in_room"
        await patient_calm.send(type="teleport")
        assert (await patient_calm.expect("error"))["code"] == "unknown_type"

        after = await scrape(http, running_app)
        assert value(after, "donghanh_claims_total") == 1
        assert value(after, "donghanh_batches_total", kind="claims") == 1  # alone: a batch of one
        assert value(after, "donghanh_batched_items_total", kind="claims") == 1
        assert value(after, "donghanh_queue_broadcasts_total") >= 1
        assert value(after, "donghanh_rooms") == 1
        assert {t: value(after, "donghanh_relayed_messages_total", type=t)
                for t in ("offer", "answer", "ice", "chat", "media")} == {
            "offer": 1, "answer": 1, "ice": 2, "chat": 1, "media": 1}
        # The answer found the doctor (a lookup); the two candidates after it took that route on arrival.
        assert value(after, "donghanh_relayed_on_arrival_total") == 2
        assert value(after, "donghanh_refused_messages_total", code="not_in_room") == 1
        assert value(after, "donghanh_refused_messages_total", code="unknown_type") == 1
        assert value(after, "donghanh_waiting_patients", level=str(urgent_in["level"]), danger_sign="true") == 0
        assert value(after, "donghanh_waiting_patients", level=str(calm_in["level"]), danger_sign="false") == 1
        assert value(after, "donghanh_db_pool_max") > 0
        assert value(after, "donghanh_scheduler_backlog") >= 0
        assert value(after, "process_resident_memory_bytes") > 0

        await doctor.close()
        await patient_calm.close()
        await patient_urgent.close()
    finally:
        await doctor_http.close()


async def test_metrics_are_refused_elsewhere_without_the_token(running_app: RunningApp,
                                                               http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/metrics", headers=REMOTE)
    assert r.status == 403
    assert "donghanh_" not in await r.text()
    r = await http.get(f"{running_app.url}/metrics", headers={**REMOTE, "Authorization": "Bearer wrong"})
    assert r.status == 403
    r = await http.get(f"{running_app.url}/metrics", headers={**REMOTE, "Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200
    assert "donghanh_open_sockets" in await r.text()
