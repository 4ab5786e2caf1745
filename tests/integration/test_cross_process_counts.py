"""Counts that span every process sharing the database (issue 12): doctors online in a waiting room and in
/metrics, patients' presence when another process starts, and staff pages an escalation offer reaches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg

from tests.conftest import RunningApp
from tests.integration.processes import bus_env, link_token, serve_one
from tests.integration.test_call_signaling import check_in, connect, staff_session
from tests.integration.test_escalation_http import _ask, _offer_texts
from tests.integration.test_http import signed_in
from tests.integration.test_metrics import scrape, value


async def _row_holds(pool: asyncpg.Pool, staff_id: int, patient_id: int) -> None:
    """Wait until a process's presence row lists this doctor and this patient (written within one
    coalesced queue broadcast of their hello)."""
    async with asyncio.timeout(30):
        while True:
            async with pool.acquire() as con:
                rows = await con.fetch("SELECT doctors, patients FROM process_presence")
            if any(any(d[0] == staff_id for d in r["doctors"]) and patient_id in r["patients"] for r in rows):
                return
            await asyncio.sleep(0.05)


async def test_a_process_that_starts_counts_the_others_at_once_and_marks_nobody_offline(
        clean_env: dict[str, str], dsn: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    env = bus_env(clean_env, dsn)
    async with serve_one(env, pool, str(tmp_path / "a"), "--demo") as a, aiohttp.ClientSession() as http:
        token = await link_token(pool, 1)
        await check_in(http, a, token)
        patient = await connect(http, a, token)  # waiting, page open on A
        await patient.expect("queue")
        doctor_http = await staff_session(a)
        try:
            doctor = await connect(doctor_http, a)  # the doctor's page on A too
            await doctor.expect("queue_list")
            async with pool.acquire() as con:
                doctor_id = await con.fetchval("SELECT id FROM staff WHERE username = 'bacsi.lan'")
            await _row_holds(pool, doctor_id, 1)

            async with serve_one(env, pool, str(tmp_path / "b")) as b:
                # B has just started: it marked offline only the pages nobody holds (the patient's is on A)…
                async with pool.acquire() as con:
                    left = await con.fetchval("SELECT left_at FROM queue_entry WHERE patient_id = 1 "
                                              "AND status = 'waiting'")
                assert left is None
                # …and counts the doctor on A before A has said anything on the bus.
                seen = await scrape(http, b)
                assert value(seen, "donghanh_doctors_online") == 1
                assert value(seen, "donghanh_doctors_online_here") == 0
                # A waiting room served by B shows the doctor on A, and so its expected wait.
                other = await link_token(pool, 2)
                await check_in(http, b, other)
                waiting = await connect(http, b, other)
                place = await waiting.expect("queue")
                assert place["doctors_online"] == 1 and place["eta_s"] is not None
                here = await scrape(http, a)
                assert value(here, "donghanh_doctors_online") == 1
                assert value(here, "donghanh_doctors_online_here") == 1
                await waiting.close()
            # B stopped: its row is gone (A's stays).
            async with pool.acquire() as con:
                assert await con.fetchval("SELECT count(*) FROM process_presence") == 1
            await doctor.close()
            await patient.close()
        finally:
            await doctor_http.close()


async def test_an_urgent_offer_to_a_page_open_on_another_process_is_not_texted(
        two_apps: tuple[RunningApp, RunningApp]) -> None:
    a, b = two_apps
    specialist = await signed_in(b, "bs.timmach")
    requester = await signed_in(a, "bacsi.lan")
    try:
        page = await connect(specialist.http, b)  # the specialist's only page is on B
        # A counts that page once B's presence (sent with B's next queue broadcast) has arrived.
        async with asyncio.timeout(30):
            while a.hub.staff_pages(specialist.id) != 1:  # noqa: ASYNC110 (a bounded poll of another app's state)
                await asyncio.sleep(0.05)
        assert b.hub.staff_pages(specialist.id) == 1  # the same page, seen from where it is
        eid = await _ask(a, {"bacsi.lan": requester, "bs.timmach": specialist}, "urgent")
        await page.expect("escalation_offer", escalation=eid)
        assert await _offer_texts(a, eid) == []  # a page is open (on B): no SMS
        await page.close()
    finally:
        await specialist.http.close()
        await requester.http.close()
