"""Every time a page shows is the facility's (Asia/Ho_Chi_Minh), whatever the server's own zone is."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest

from care.appointments import FACILITY_TZ
from tests.conftest import RunningApp
from tests.integration.test_http import jar_session, sign_in
from tests.integration.test_invitation_http import appointment
from web.keys import clock_key

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

# 17:30 UTC on 20 Nov is 00:30 on 21 Nov in Vietnam and 09:30 on 20 Nov in Los Angeles.
STARTED = datetime(2026, 11, 20, 17, 30, tzinfo=UTC)
SIGNED = datetime(2026, 11, 20, 17, 45, tzinfo=UTC)


@pytest.fixture
def server_in_los_angeles(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    assert time.localtime(STARTED.timestamp()).tm_hour == 9
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar_session() as session:
        yield session


async def test_history_shows_vietnamese_time_on_a_server_in_another_zone(
        server_in_los_angeles: None, running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    async with running_app.pool.acquire() as con:
        doctor = await con.fetchval("SELECT id FROM staff WHERE username = 'bacsi.lan'")
        entry = await con.fetchval(
            """INSERT INTO queue_entry (patient_id, facility_id, triage_level, suggested_level, status, arrived_at)
               SELECT 7, facility_id, 1, 1, 'done', $1 FROM patient WHERE id = 7 RETURNING id""", STARTED)
        consultation = await con.fetchval(
            """INSERT INTO consultation (queue_entry_id, patient_id, doctor_id, status, started_at, ended_at)
               VALUES ($1, 7, $2, 'ended', $3, $3) RETURNING id""", entry, doctor, STARTED)
        await con.execute(
            """INSERT INTO note_version (consultation_id, version, plan, author_id, signed_at, content_sha256,
                                         follow_up_on)
               VALUES ($1, 1, 'Uống nhiều nước', $2, $3, 'x', DATE '2026-12-01')""", consultation, doctor, SIGNED)
    await sign_in(http, running_app)
    page = await (await http.get(f"{running_app.url}/staff/patients/7")).text()
    assert "00:30 21/11/2026" in page and "00:45 21/11/2026" in page  # started, signed: Vietnam's time
    assert "01/12/2026" in page  # a date stays the date it is
    assert "17:30" not in page and "09:30" not in page  # neither UTC nor the server's zone


async def test_invitation_and_outbox_times_are_vietnamese_on_a_server_in_another_zone(
        server_in_los_angeles: None, running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    await sign_in(http, running_app)
    now = running_app.app[clock_key].now()
    slot = datetime(now.year + 1, 1, 15, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam, 17:00 the day before in LA
    invitation = await appointment(http, running_app, slot)
    page = await (await http.get(f"{running_app.url}/staff/invitations/{invitation}")).text()
    assert f"08:00 15/01/{slot.year}" in page and f"17:00 14/01/{slot.year}" not in page
    outbox = await (await http.get(f"{running_app.url}/staff/outbox")).text()
    assert now.astimezone(FACILITY_TZ).strftime("%d/%m/%Y") in outbox
