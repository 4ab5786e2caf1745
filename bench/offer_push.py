"""Offer push latency: a request for an opinion is committed → the specialist's socket receives the offer,
with 1,000 staff sockets connected; against the bare relay's message latency in the same run.

The real app (web.app.create_app over a fresh embedded PostgreSQL) runs in a child process on 127.0.0.1,
and the bare aiohttp relay (bench/bare_relay.py) in another; this process is the load generator. Data is
written through the db modules (facilities, staff, patients, sessions from `db.staff.open_session`, as
bench/slow_consumer.py does): a province ← district ← 10 communes; 40 cardiologists on duty at the
district; 960 more staff (nurses and doctors of the communes and the district). All 1,000 open a staff
socket on the app and say hello. A commune doctor then asks, over HTTP (`POST /api/escalations`, urgent),
one request at a time; routing offers each to the least loaded cardiologist, whose socket receives
`escalation_offer`. The commit instant is PostgreSQL's own (`track_commit_timestamp = on`, the
escalation row's `pg_xact_commit_timestamp(xmin)`); the arrival instant is this process's wall clock (the
same machine clock). The baseline, interleaved request by request: 1,000 sockets on the bare relay
(500 rooms of two), one text frame from one side of a room to the other, send → arrival.

    python bench/offer_push.py [--sockets 1000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402

from bench import harness  # noqa: E402

_decode = msgspec.json.Decoder().decode
_SHARED_PASSWORD = "bench-unused-password"
SPECIALISTS = 40
COMMUNES = 10


@dataclass(frozen=True)
class Setup:
    specialist_cookies: list[str]
    other_cookies: list[str]
    requester_cookie: str
    requester_csrf: str
    patient_id: int


async def enable_commit_timestamps(dsn: str, pgdata: Path) -> None:
    """`track_commit_timestamp` needs a server restart: set it, restart the bench's own server."""
    import asyncpg

    from db.embedded import _run

    con = await asyncpg.connect(dsn)
    try:
        await con.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    finally:
        await con.close()
    await asyncio.to_thread(_run, "pg_ctl", ["-D", str(pgdata), "-w", "-t", "60", "-m", "fast",
                                             "-l", str(pgdata / "log"), "restart"])


async def prepare(dsn: str, sockets: int) -> Setup:
    from db import patients as patients_db
    from db import staff as staff_db
    from db.migrate import migrate
    from db.pool import create_pool

    original = staff_db.hash_password
    shared = original(_SHARED_PASSWORD)
    staff_db.hash_password = lambda password: shared
    pool = await create_pool(dsn, min_size=1, max_size=8)
    try:
        async with pool.acquire() as con:
            await migrate(con)  # the app migrates on start too; whoever is first does it

            async def facility(name: str, level: str, parent: int | None) -> int:
                value: int = await con.fetchval(
                    "INSERT INTO facility (name, level, parent_id) VALUES ($1, $2, $3) RETURNING id",
                    name, level, parent)
                return value

            province = await facility("Bệnh viện tỉnh (bench)", "province", None)
            district = await facility("Trung tâm Y tế huyện (bench)", "district", province)
            communes = [await facility(f"Trạm Y tế xã {n}", "commune", district) for n in range(COMMUNES)]
            patient = await patients_db.create(con, facility_id=communes[0], name="Bệnh nhân thử", phone="0900000001")

        async def account(n: int, facility_id: int, role: str, specialties: tuple[str, ...] = ()) -> tuple[str, str]:
            async with pool.acquire() as con:
                staff_id = await staff_db.create(con, facility_id=facility_id, username=f"bench.{role}.{n}",
                                                 name=f"Thử {n}", role=role, password=_SHARED_PASSWORD,
                                                 specialties=specialties, on_duty=bool(specialties))
                return await staff_db.open_session(con, staff_id, timedelta(hours=2))

        specialists = await asyncio.gather(*(account(n, district, "specialist", ("cardiology",))
                                             for n in range(SPECIALISTS)))
        others = await asyncio.gather(*(account(n, communes[n % COMMUNES] if n % 3 else district,
                                                "nurse" if n % 2 else "doctor")
                                        for n in range(sockets - SPECIALISTS)))
        requester, csrf = await account(99_999, communes[0], "doctor")
    finally:
        staff_db.hash_password = original
        await pool.close()
    return Setup([c for c, _ in specialists], [c for c, _ in others], requester, csrf, patient)


@dataclass
class Arrivals:
    offers: dict[str, float] = field(default_factory=dict)  # escalation id → wall-clock arrival (s)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    relayed: list[float] = field(default_factory=list)  # perf_counter arrival of bare relay frames

    def app_message(self, data: str) -> None:
        if '"escalation_offer"' not in data:
            return
        now = time.time()
        message = _decode(data)
        self.offers[message["escalation"]] = now
        self.arrived.set()


async def read_app(ws: aiohttp.ClientWebSocketResponse, sink: Arrivals) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            sink.app_message(msg.data)


async def open_staff(session: aiohttp.ClientSession, url: str, cookie: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{url}/ws", headers={"Cookie": f"dh_session={cookie}"}, autoping=True)
    await ws.send_str('{"type":"hello","id":"h"}')
    async with asyncio.timeout(60):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT and '"welcome"' in msg.data:
                return ws
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"staff socket closed during hello: {msg}")


class BarePair:
    """Two sockets of one bare-relay room; `relay()` times one frame from the first to the second."""

    def __init__(self, a: aiohttp.ClientWebSocketResponse, b: aiohttp.ClientWebSocketResponse) -> None:
        self.a, self.b = a, b

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, room: str) -> BarePair:
        sides = []
        for _ in range(2):
            ws = await session.ws_connect(f"{url}/ws")
            await ws.send_str(f'{{"room":"{room}"}}')
            async with asyncio.timeout(30):
                msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT or "joined" not in msg.data:
                raise RuntimeError(f"bare relay did not answer joined: {msg}")
            sides.append(ws)
        return cls(sides[0], sides[1])

    async def relay(self, payload: str, limit_s: float) -> float:
        sent = time.perf_counter()
        await self.a.send_str(payload)
        async with asyncio.timeout(limit_s):
            msg = await self.b.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"bare relay frame lost: {msg}")
        return (time.perf_counter() - sent) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": harness.percentile(values, 50), "p90": harness.percentile(values, 90),
            "p99": harness.percentile(values, 99), "max": max(values, default=float("nan")), "count": len(values)}


async def measure(app_url: str, bare_url: str, dsn: str, setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    sink = Arrivals()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        gate = asyncio.Semaphore(100)

        async def staff(cookie: str) -> aiohttp.ClientWebSocketResponse:
            async with gate:
                return await open_staff(session, app_url, cookie)

        async def bare(n: int) -> BarePair:
            async with gate:
                return await BarePair.open(session, bare_url, f"room-{n}")

        t0 = time.perf_counter()
        sockets = await asyncio.gather(*(staff(c) for c in setup.specialist_cookies + setup.other_cookies))
        connect_s = time.perf_counter() - t0
        readers = [asyncio.create_task(read_app(ws, sink)) for ws in sockets]
        pairs = await asyncio.gather(*(bare(n) for n in range(args.sockets // 2)))
        print(f"{len(sockets)} staff sockets on the app ({connect_s:.1f} s), {2 * len(pairs)} on the bare relay; "
              "measuring…", flush=True)
        headers = {"Cookie": f"dh_session={setup.requester_cookie}; dh_csrf={setup.requester_csrf}",
                   "X-CSRF-Token": setup.requester_csrf}
        body = {"patient_id": setup.patient_id, "specialty": "cardiology", "urgency": "urgent",
                "question": "Đau ngực 30 phút, vã mồ hôi: cần ý kiến tim mạch ngay?", "consent": True}
        payload = '{"type":"chat","text":"' + "x" * 120 + '"}'  # about the size of an escalation_offer
        asked: list[tuple[str, float, float]] = []  # (escalation id, POST sent, response arrived), wall clock
        bare_ms: list[float] = []
        lost = 0
        for n in range(args.requests + args.warmup):
            sent = time.time()
            async with session.post(f"{app_url}/api/escalations", json=body, headers=headers) as r:
                if r.status != 201:
                    raise RuntimeError(f"ask answered {r.status}: {await r.text()}")
                escalation = (await r.json())["id"]
            answered = time.time()
            try:
                async with asyncio.timeout(args.timeout):
                    while escalation not in sink.offers:
                        sink.arrived.clear()
                        await sink.arrived.wait()
            except TimeoutError:
                lost += 1
            latency = await pairs[n % len(pairs)].relay(payload, args.timeout)
            if n >= args.warmup:
                asked.append((escalation, sent, answered))
                bare_ms.append(latency)
            await asyncio.sleep(args.gap)
        con = await asyncpg.connect(dsn)
        try:
            rows = await con.fetch("SELECT id, pg_xact_commit_timestamp(xmin) AS committed FROM escalation "
                                   "WHERE id = ANY ($1::uuid[])", [uuid.UUID(e) for e, _, _ in asked])
        finally:
            await con.close()
        committed = {str(r["id"]): r["committed"].timestamp() for r in rows}
        for ws in sockets:
            await ws.close()
        for pair in pairs:
            await pair.a.close()
            await pair.b.close()
        await asyncio.wait(readers, timeout=15)
    push_ms = [(sink.offers[e] - committed[e]) * 1000 for e, _, _ in asked if e in sink.offers]
    ask_ms = [(sink.offers[e] - s) * 1000 for e, s, _ in asked if e in sink.offers]
    http_ms = [(a - s) * 1000 for _, s, a in asked]
    before_response = sum(1 for e, _, a in asked if e in sink.offers and sink.offers[e] <= a)
    return {"connect_s": round(connect_s, 1), "lost_offers": lost,
            "offer_push_ms": summary(push_ms), "post_to_offer_ms": summary(ask_ms),
            "post_response_ms": summary(http_ms),
            "offers_before_http_response": before_response, "bare_relay_ms": summary(bare_ms)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000, help="staff sockets on the app (default 1000)")
    parser.add_argument("--requests", type=int, default=300, help="measured requests (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="requests before measuring (default 20)")
    parser.add_argument("--gap", type=float, default=0.02, help="pause between requests, seconds (default 0.02)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one offer (default 10)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "offer_push.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(2 * args.sockets + 1024)
    started = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "offer_push", "date": harness.now_iso(), "machine": harness.machine(),
                              "command": harness.command_line(argv), "method": __doc__,
                              "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "load_average_before": harness.load_average()}
    with harness.embedded_database() as (dsn, tmp):
        asyncio.run(enable_commit_timestamps(dsn, tmp / "pg"))
        setup = asyncio.run(prepare(dsn, args.sockets))
        with harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app")) as app, \
                harness.server_process("bare") as bare:
            result.update(asyncio.run(measure(app.url, bare.url, dsn, setup, args)))
    push, base = result["offer_push_ms"], result["bare_relay_ms"]
    result["ratios"] = {k: push[k] / base[k] for k in ("p50", "p90", "p99")}
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"\n{args.requests} offers with {args.sockets} staff sockets connected (lost {result['lost_offers']})")
    print(f"{'':34}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, key in (("committed → offer received", "offer_push_ms"),
                      ("POST sent → offer received", "post_to_offer_ms"),
                      ("POST sent → HTTP response", "post_response_ms"),
                      ("bare relay frame (baseline)", "bare_relay_ms")):
        r = result[key]
        print(f"{name:34}{r['p50']:9.2f}{r['p90']:9.2f}{r['p99']:9.2f}{r['max']:9.2f}")
    ratio = result["ratios"]
    print(f"{'ratio push / bare relay':34}{ratio['p50']:9.2f}{ratio['p90']:9.2f}{ratio['p99']:9.2f}")
    print(f"load {result['load_average_before']} → {result['load_average_after']}")
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
