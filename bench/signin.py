"""Sign-in attempts per second on one account, with throttling off and on, in one run; and another
user's websocket round trip while the sign-ins hammer the server.

An attacker with `--clients` connections in parallel (8 by default, as in issue 7) sends wrong passwords
for one demo account as fast as the server answers, for `--seconds` per phase, each request from a
different address behind the local proxy (`X-Forwarded-For`: a botnet, so only the per-account throttle
applies). Phase 1 runs the real app with `DONGHANH_SIGNIN_THROTTLE=false` (every attempt's password is
checked: scrypt in the app's thread pool), phase 2 a fresh app process on the same database with
throttling on. Meanwhile a signed-in doctor pings over her websocket, one ping at a time; her round
trip is measured idle first (the baseline) and during each phase.

    python bench/signin.py [--seconds 15] [--clients 8]    # ~45 s
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench import harness  # noqa: E402

RESULT = harness.RESULTS / "signin.json"
TARGET, PASSWORD, PINGER = "bacsi.lan", "demo1234", "bacsi.minh"


def _jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def _csrf(http: aiohttp.ClientSession, url: str) -> str:
    from yarl import URL

    return http.cookie_jar.filter_cookies(URL(url))["dh_csrf"].value


@dataclass
class Storm:
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


async def _storm(url: str, clients: int, seconds: float, addresses: itertools.count[int]) -> Storm:
    storm = Storm()
    deadline = time.perf_counter() + seconds

    async def attacker() -> None:
        async with _jar() as http:
            await http.get(f"{url}/staff/login")
            token = _csrf(http, url)
            while time.perf_counter() < deadline:
                n = next(addresses)
                address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
                r = await http.post(f"{url}/staff/login", allow_redirects=False,
                                    headers={"X-Forwarded-For": address},
                                    data={"username": TARGET, "password": f"guess-{n}", "_csrf": token})
                await r.read()
                storm.statuses[r.status] = storm.statuses.get(r.status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(attacker() for _ in range(clients)))
    storm.seconds = time.perf_counter() - started
    return storm


class Pinger:
    """A signed-in doctor's socket: ping, wait for the pong, record the round trip, again."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.samples: list[float] = []
        self._seq = 0

    @classmethod
    async def connect(cls, url: str) -> Pinger:
        http = _jar()
        await http.get(f"{url}/staff/login")
        r = await http.post(f"{url}/staff/login", allow_redirects=False,
                            data={"username": PINGER, "password": PASSWORD, "_csrf": _csrf(http, url)})
        assert r.status == 303, r.status
        ws = await http.ws_connect(f"{url}/ws")
        await ws.send_json({"type": "hello", "id": "h"})
        while (await ws.receive_json())["type"] != "welcome":
            pass
        return cls(http, ws)

    async def ping_until(self, done: asyncio.Event | None, count: int | None = None) -> list[float]:
        samples: list[float] = []
        while (done is None or not done.is_set()) and (count is None or len(samples) < count):
            self._seq += 1
            ping_id = f"p{self._seq}"
            sent = time.perf_counter()
            await self.ws.send_json({"type": "ping", "id": ping_id})
            while True:
                msg = await self.ws.receive_json(timeout=30)
                if msg.get("type") == "pong" and msg.get("id") == ping_id:
                    break
            samples.append((time.perf_counter() - sent) * 1000)
        return samples

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


def _latency(samples: list[float]) -> dict[str, Any]:
    return {"pings": len(samples), "p50_ms": round(harness.percentile(samples, 50), 3),
            "p99_ms": round(harness.percentile(samples, 99), 3)}


async def _phase(url: str, clients: int, seconds: float, addresses: itertools.count[int]) -> dict[str, Any]:
    pinger = await Pinger.connect(url)
    try:
        idle = await pinger.ping_until(None, count=200)
        done = asyncio.Event()
        ping_task = asyncio.create_task(pinger.ping_until(done))
        storm = await _storm(url, clients, seconds, addresses)
        done.set()
        during = await ping_task
    finally:
        await pinger.close()
    checked = storm.statuses.get(401, 0)
    answered = sum(storm.statuses.values())
    return {"statuses": {str(k): v for k, v in sorted(storm.statuses.items())}, "seconds": round(storm.seconds, 2),
            "attempts_answered_per_s": round(answered / storm.seconds, 2),
            "guesses_checked_per_s": round(checked / storm.seconds, 3),
            "guesses_checked": checked, "ping_idle": _latency(idle), "ping_during": _latency(during)}


def _first_hour_by_rule() -> int:
    """Most guesses the account rule lets through in an hour to an attacker who retries the moment each
    wait ends (the same arithmetic as the unit test for ASVS V2.2.1)."""
    from datetime import timedelta

    from web.throttle import ACCOUNT

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    at, failures, guesses = t0, 0, 0
    while at < t0 + timedelta(hours=1):
        failures = ACCOUNT.count_after(failures, at, at)
        guesses += 1
        at += ACCOUNT.delay(failures)
    return guesses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase (default 15)")
    parser.add_argument("--clients", type=int, default=8, help="parallel attacking connections (default 8)")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    load_before = harness.load_average()
    addresses = itertools.count(1)
    phases: dict[str, Any] = {}
    with harness.embedded_database() as (dsn, root):
        for name, throttled in (("throttling_off", False), ("throttling_on", True)):
            with harness.server_process("app", dsn=dsn, data_dir=str(root / "data"), demo_data=True,
                                        settings={"signin_throttle": throttled}) as server:
                phases[name] = asyncio.run(_phase(server.url, args.clients, args.seconds, addresses))
    off, on = phases["throttling_off"], phases["throttling_on"]
    ratio = on["guesses_checked_per_s"] / off["guesses_checked_per_s"] if off["guesses_checked_per_s"] else None
    ping_ratio = off["ping_during"]["p50_ms"] / off["ping_idle"]["p50_ms"]
    data = {
        "benchmark": "signin",
        "date": harness.now_iso(),
        "machine": harness.machine(),
        "command": harness.command_line(argv),
        "method": (
            f"Embedded PostgreSQL, the real app with demo data in a child process on 127.0.0.1. {args.clients} "
            f"connections send wrong passwords for one account as fast as they are answered, for "
            f"{args.seconds:.0f} s, each request from a new address (X-Forwarded-For through the trusted local "
            "proxy, so only the per-account throttle applies): first with DONGHANH_SIGNIN_THROTTLE=false, "
            "then in a new app process on the same database with throttling on. 'Guesses checked' are "
            "attempts whose password was verified (401); throttled attempts are refused unchecked (429). "
            "Meanwhile another signed-in doctor pings over her websocket, one ping at a time; p50 round trip "
            "idle (200 pings before the storm) and during it."),
        "phases": phases,
        "guesses_per_s_throttling_off": off["guesses_checked_per_s"],
        "guesses_per_s_throttling_on": on["guesses_checked_per_s"],
        "ratio_on_over_off": round(ratio, 4) if ratio is not None else None,
        "attempts_answered_per_s_throttling_on": on["attempts_answered_per_s"],
        "guesses_first_hour_by_rule": _first_hour_by_rule(),
        "ping_p50_ms_idle": off["ping_idle"]["p50_ms"],
        "ping_p50_ms_during_unthrottled_sign_ins": off["ping_during"]["p50_ms"],
        "ping_ratio_during_over_idle": round(ping_ratio, 2),
        "ping_p99_ms_idle": off["ping_idle"]["p99_ms"],
        "ping_p99_ms_during_unthrottled_sign_ins": off["ping_during"]["p99_ms"],
        "load_average_before": load_before,
        "load_average_after": harness.load_average(),
    }
    harness.write_result(args.output, data)
    print(f"guesses checked per second on one account: {off['guesses_checked_per_s']} without throttling, "
          f"{on['guesses_checked_per_s']} with it (ratio {data['ratio_on_over_off']}); "
          f"ping p50 {off['ping_idle']['p50_ms']} ms idle, {off['ping_during']['p50_ms']} ms during "
          f"unthrottled sign-ins; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
