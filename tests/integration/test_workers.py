"""Real server processes on one PostgreSQL: `serve --workers 2` shares one port between two processes, and two
`serve` processes joined by the bus carry a call whose patient is on one and doctor on the other."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable

import aiohttp
import asyncpg

from tests.integration.processes import Remote, link_token, served
from tests.integration.test_call_signaling import check_in, connect, staff_session
from tests.integration.test_cli import SECRET, _free_port, donghanh


async def _pids_seen(url: str, enough: Callable[[set[str]], bool], limit_s: float = 60.0) -> set[str]:
    """Scrape /metrics on fresh connections until `enough(pids)` (or `limit_s`): which processes answer on
    this port. The first worker prints "Running on"; on a loaded machine the others may still be starting."""
    pids: set[str] = set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            while not enough(pids):
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                    text = await (await http.get(f"{url}/metrics")).text()
                pids |= set(re.findall(r'donghanh_process_info\{bus="true",pid="(\d+)"\}', text))
    return pids


async def test_two_serve_processes_carry_a_call_across_them(two_processes: tuple[Remote, Remote],
                                                            pool: asyncpg.Pool) -> None:
    a, b = two_processes
    async with aiohttp.ClientSession() as http:
        token = await link_token(pool, 1)
        await check_in(http, a, token)
        patient = await connect(http, a, token)  # process A
        await patient.expect("queue")
        doctor_http = await staff_session(b)
        try:
            doctor = await connect(doctor_http, b)  # process B
            listing = await doctor.expect("queue_list")
            assert [e["patient"]["id"] for e in listing["entries"]] == [1]
            ref = await doctor.send(type="claim_next")
            room = (await doctor.expect("paired", id=ref))["room"]
            assert (await patient.expect("paired"))["room"] == room
            await patient.send(type="join", room=room)
            await patient.expect("joined")
            await doctor.send(type="join", room=room)
            # The doctor learns of the patient on the other process in `joined.peers` (or, if the bus has
            # not told its process yet, by `peer_joined` right after); the patient by `peer_joined`.
            if not (await doctor.expect("joined"))["peers"]:
                await doctor.expect("peer_joined")
            await patient.expect("peer_joined")
            await doctor.send(type="offer", room=room, sdp="v=0 offer")
            assert (await patient.expect("offer"))["sdp"] == "v=0 offer"
            await patient.send(type="answer", room=room, sdp="v=0 answer")
            assert (await doctor.expect("answer"))["sdp"] == "v=0 answer"
            await patient.send(type="chat", room=room, text="Chào bác sĩ")
            assert (await doctor.expect("chat"))["message"]["text"] == "Chào bác sĩ"
            await doctor.send(type="end", room=room)
            assert (await patient.expect("ended"))["by"] == "doctor"
            await doctor.close()
            await patient.close()
        finally:
            await doctor_http.close()


async def test_serve_with_two_workers_shares_the_port_and_carries_a_call(
        clean_env: dict[str, str], dsn: str, pool: asyncpg.Pool) -> None:
    env = {**clean_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET}
    port = _free_port()
    async with served(env, "--demo", "--workers", "2", "--port", str(port)):
        url = f"http://127.0.0.1:{port}"
        assert len(await _pids_seen(url, lambda pids: len(pids) >= 2)) == 2  # two processes answer on one port
        app = Remote(url, pool)
        async with aiohttp.ClientSession() as http:
            token = await link_token(pool, 1)
            await check_in(http, app, token)
            patient = await connect(http, app, token)
            await patient.expect("queue")
            doctor_http = await staff_session(app)
            try:
                doctor = await connect(doctor_http, app)
                ref = await doctor.send(type="claim_next")
                room = (await doctor.expect("paired", id=ref))["room"]
                assert (await patient.expect("paired"))["room"] == room
                await patient.send(type="join", room=room)
                await patient.expect("joined")
                await doctor.send(type="join", room=room)
                await doctor.expect("joined")
                await doctor.send(type="offer", room=room, sdp="v=0 offer")
                # Whichever worker holds each socket, the offer arrives (after the peer was announced).
                assert (await patient.expect("offer"))["sdp"] == "v=0 offer"
                await doctor.send(type="end", room=room)
                assert (await patient.expect("ended"))["by"] == "doctor"
                await doctor.close()
                await patient.close()
            finally:
                await doctor_http.close()


async def test_workers_out_of_range_is_a_configuration_error(clean_env: dict[str, str]) -> None:
    run = await donghanh("serve", "--workers", "0", env=clean_env)
    assert run.code == 2 and "--workers: expected 1 to 64, got 0" in run.err
