"""One socket stops reading while 1,000 others receive queue broadcasts: does it slow them down?

The real app (web.app.create_app over a fresh embedded PostgreSQL) runs in a child process on 127.0.0.1;
this process is the load generator. 1,000 staff sockets (nurses of a commune station and of its district
centre) say hello and read every `queue_list` they get. One more staff socket, a provincial doctor whose
list is much longer (every waiting patient of the province, 200 shown), is either a normal reader
("baseline" rounds) or a raw TCP socket with a 4 KiB receive buffer that reads its `welcome` and then never
reads again ("stalled" rounds): the server's transport buffer towards it fills within a few broadcasts.
Rounds alternate between the two, each with a fresh province socket, so both see the same machine noise.

In each round a doctor changes a waiting patient's triage level over HTTP (`POST /api/queue/{entry}/level`)
a number of times; every change makes the hub broadcast a new list to all 1,001 sockets. Delivery latency
of one broadcast to one socket = arrival time here − the `now` the server put in that list when it built
it (same machine clock). The first broadcasts of every round are warm-up (they fill the stalled socket's
buffers) and not counted. Run with --help for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402

from bench import harness  # noqa: E402

_decode = msgspec.json.Decoder().decode
# One scrypt hash for every bench account: they sign in by cookie, never by password (as relay_setup does).
_SHARED_PASSWORD = "bench-unused-password"


@dataclass(frozen=True)
class Setup:
    reader_cookies: list[str]
    province_cookie: str
    doctor_cookie: str
    doctor_csrf: str
    entry: str  # waiting at commune A: every socket's list shows it
    private_entry: str  # waiting at commune B: only the province socket's list shows it


async def prepare(dsn: str, readers: int, short_list: int, long_list: int) -> Setup:
    """province ← district A ← commune A (short_list waiting: what the readers see), and province ←
    district B ← commune B (long_list more waiting: only the province doctor sees them)."""
    from db import patients as patients_db
    from db import queue as queue_db
    from db import staff as staff_db
    from db.pool import create_pool

    original = staff_db.hash_password
    shared = original(_SHARED_PASSWORD)
    staff_db.hash_password = lambda password: shared
    pool = await create_pool(dsn, min_size=1, max_size=8)
    try:
        async with pool.acquire() as con:
            async def facility(name: str, level: str, parent: int | None) -> int:
                value: int = await con.fetchval(
                    "INSERT INTO facility (name, level, parent_id, province_code) VALUES ($1, $2, $3, '15') "
                    "RETURNING id", name, level, parent)
                return value

            province = await facility("Bệnh viện tỉnh (bench)", "province", None)
            district_a = await facility("Trung tâm Y tế khu vực A", "district", province)
            commune_a = await facility("Trạm Y tế xã A", "commune", district_a)
            district_b = await facility("Trung tâm Y tế khu vực B", "district", province)
            commune_b = await facility("Trạm Y tế xã B", "commune", district_b)
            entries = []
            for n in range(short_list + long_list):
                at_a = n < short_list
                patient = await patients_db.create(con, facility_id=commune_a if at_a else commune_b,
                                                   name=f"Bệnh nhân {n}", phone=f"09{n:08d}")
                entry, _ = await queue_db.enqueue(
                    con, patient_id=patient, link_jti=None, facility_id=commune_a if at_a else commune_b,
                    level=1, danger_signs=(), reason="ho, sốt" if at_a else ("ho kéo dài, sốt về chiều, " * 20)[:500],
                    checkin={}, audio_only=False)
                entries.append(entry)

        async def account(n: int, facility_id: int, role: str) -> tuple[str, str]:
            async with pool.acquire() as con:
                staff_id = await staff_db.create(con, facility_id=facility_id, username=f"bench.{role}.{n}",
                                                 name=f"Thử {n}", role=role, password=_SHARED_PASSWORD)
                return await staff_db.open_session(con, staff_id, timedelta(hours=2))

        cookies = await asyncio.gather(*(account(n, commune_a if n % 2 else district_a, "nurse")
                                         for n in range(readers)))
        province_cookie, _ = await account(0, province, "doctor")
        doctor_cookie, doctor_csrf = await account(1, province, "doctor")  # may change both lists' entries
    finally:
        staff_db.hash_password = original
        await pool.close()
    return Setup([c for c, _ in cookies], province_cookie, doctor_cookie, doctor_csrf, str(entries[0].id),
                 str(entries[-1].id))


@dataclass
class Broadcasts:
    """Every reader's `queue_list` arrivals: latency samples of the broadcast being measured."""

    expected: int = 0
    arrived: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    measuring: bool = False
    samples_ms: list[float] = field(default_factory=list)

    def arrival(self, message: bytes | str) -> None:
        now = time.time()
        data = _decode(message)
        if data.get("type") != "queue_list":
            return
        if self.measuring:
            built = datetime.fromisoformat(data["now"]).timestamp()
            self.samples_ms.append((now - built) * 1000)
        self.arrived += 1
        if self.arrived >= self.expected:
            self.done.set()


async def read_all(ws: aiohttp.ClientWebSocketResponse, sink: Broadcasts | None) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT and sink is not None:
            sink.arrival(msg.data)


async def open_reader(session: aiohttp.ClientSession, url: str, cookie: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{url}/ws", headers={"Cookie": f"dh_session={cookie}"}, autoping=True)
    await ws.send_str('{"type":"hello","id":"h"}')
    async with asyncio.timeout(60):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT and b'"welcome"' in msg.data.encode():
                return ws
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"reader socket closed during hello: {msg}")


class StalledSocket:
    """A websocket client on a raw TCP socket with a tiny receive buffer: says hello, reads `welcome`, then
    never reads again (a phone whose browser tab froze)."""

    def __init__(self, port: int, cookie: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the window
        self.sock.settimeout(30)
        self.sock.connect((harness.LOOPBACK, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {harness.LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Cookie: dh_session={cookie}\r\n\r\n").encode())
        seen = b""
        while b"\r\n\r\n" not in seen:
            seen += self.sock.recv(4096)
        if not seen.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"stalled socket was refused: {seen[:80]!r}")
        self.sock.sendall(self._frame(b'{"type":"hello","id":"h"}'))
        while b'"welcome"' not in seen:
            seen += self.sock.recv(4096)

    @staticmethod
    def _frame(payload: bytes) -> bytes:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([0x81, 0x80 | len(payload)]) + mask + masked

    def unread_bytes(self) -> int:
        import fcntl
        import termios

        buffer = bytearray(4)
        fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, buffer)
        return int.from_bytes(buffer, sys.byteorder)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


async def change_level(session: aiohttp.ClientSession, url: str, setup: Setup, entry: str, level: int) -> None:
    r = await session.post(f"{url}/api/queue/{entry}/level", json={"level": f"NC{level}"},
                           headers={"Cookie": f"dh_session={setup.doctor_cookie}; dh_csrf={setup.doctor_csrf}",
                                    "X-CSRF-Token": setup.doctor_csrf})
    if r.status != 200:
        raise RuntimeError(f"change_level answered {r.status}: {await r.text()}")


async def run_round(kind: str, session: aiohttp.ClientSession, url: str, port: int, setup: Setup,
                    sink: Broadcasts, readers: int, args: argparse.Namespace, level: list[int]) -> dict[str, Any]:
    """One round: a fresh province socket (reading or stalled), warm-up broadcasts, measured broadcasts."""
    stalled: StalledSocket | None = None
    province: aiohttp.ClientWebSocketResponse | None = None
    province_reader: asyncio.Task[None] | None = None
    if kind == "stalled":
        stalled = await asyncio.to_thread(StalledSocket, port, setup.province_cookie)
    else:
        province = await open_reader(session, url, setup.province_cookie)
        province_reader = asyncio.create_task(read_all(province, None))
    samples_before = len(sink.samples_ms)
    # Warm-up: changes only the province socket's list shows (the readers' lists are unchanged, so they are
    # not sent again). Each is a ~140 KB list to the province socket: a stalled one's buffers fill up.
    for n in range(args.warmup):
        await change_level(session, url, setup, setup.private_entry, 2 + n % 2)
        await asyncio.sleep(0.08)  # past the hub's 50 ms coalescing: one broadcast each
    timeouts = 0
    sink.measuring = True
    for _ in range(args.broadcasts):
        sink.expected, sink.arrived = readers, 0
        sink.done.clear()
        level[0] = 2 if level[0] == 1 else 1
        await change_level(session, url, setup, setup.entry, level[0])
        try:
            async with asyncio.timeout(args.broadcast_timeout):
                await sink.done.wait()
        except TimeoutError:
            timeouts += 1
        await asyncio.sleep(args.gap)
    sink.measuring = False
    result: dict[str, Any] = {"kind": kind, "samples": len(sink.samples_ms) - samples_before,
                              "timeouts": timeouts}
    if stalled is not None:
        result["stalled_unread_bytes"] = stalled.unread_bytes()
        stalled.close()
    if province is not None:
        await province.close()
    if province_reader is not None:
        await asyncio.wait({province_reader}, timeout=5)
    return result


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": harness.percentile(values, 50), "p90": harness.percentile(values, 90),
            "p99": harness.percentile(values, 99), "max": max(values, default=float("nan")),
            "count": len(values)}


async def measure(server: harness.ServerProcess, setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        gate = asyncio.Semaphore(100)

        async def one(cookie: str) -> aiohttp.ClientWebSocketResponse:
            async with gate:
                return await open_reader(session, server.url, cookie)

        t0 = time.perf_counter()
        readers = await asyncio.gather(*(one(c) for c in setup.reader_cookies))
        connect_s = time.perf_counter() - t0
        sinks = {"baseline": Broadcasts(), "stalled": Broadcasts()}
        # One sink per round kind; every reader reports to whichever kind is running.
        current: list[Broadcasts] = [sinks["baseline"]]

        class Forward(Broadcasts):
            def arrival(self, message: bytes | str) -> None:
                current[0].arrival(message)

        forward = Forward()
        tasks = [asyncio.create_task(read_all(ws, forward)) for ws in readers]
        await asyncio.sleep(1.0)  # let the hello broadcasts pass before the first round
        level = [1]
        rounds = []
        for r in range(args.rounds):
            order = ("baseline", "stalled") if r % 2 == 0 else ("stalled", "baseline")
            for kind in order:
                current[0] = sinks[kind]
                rounds.append(await run_round(kind, session, server.url, server.port, setup, sinks[kind],
                                              len(readers), args, level))
                print(f"round {len(rounds):2d} {kind:8s} {rounds[-1]}", flush=True)
        for ws in readers:
            await ws.close()
        await asyncio.wait(tasks, timeout=15)
    return {"connect_s": connect_s, "rounds": rounds,
            "baseline_ms": summary(sinks["baseline"].samples_ms), "stalled_ms": summary(sinks["stalled"].samples_ms)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Queue-broadcast delivery latency to 1,000 sockets while one more socket stops reading, as a "
                    "ratio against rounds where that socket reads normally (same run, rounds alternating).",
        epilog="Example: python bench/slow_consumer.py --readers 200 --rounds 2  (a quick run)")
    parser.add_argument("--readers", type=int, default=1000, help="staff sockets that read (default 1000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="pairs of rounds (one baseline, one stalled, order alternating; default 3)")
    parser.add_argument("--warmup", type=int, default=40,
                        help="broadcasts per round that only the province socket gets (~140 KB each, not measured): "
                             "they fill a stalled socket's buffers (default 40)")
    parser.add_argument("--broadcasts", type=int, default=15, help="measured broadcasts per round (default 15)")
    parser.add_argument("--short-list", type=int, default=10, help="patients the readers see waiting (default 10)")
    parser.add_argument("--long-list", type=int, default=190,
                        help="more waiting patients only the province socket sees (default 190)")
    parser.add_argument("--gap", type=float, default=0.05, help="pause after each broadcast, seconds (default 0.05)")
    parser.add_argument("--broadcast-timeout", type=float, default=10.0,
                        help="seconds to wait for every reader to get one broadcast before counting a timeout")
    parser.add_argument("--aim-ratio", type=float, default=1.5,
                        help="aim: stalled/baseline p50 and p99 at most this (default 1.5, from issue 7)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "slow_consumer.json",
                        help="result file (default: bench/results/slow_consumer.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(args.readers + 1024)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "slow_consumer", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "output"},
        "method": ("The real app (over embedded PostgreSQL) runs in a child process on 127.0.0.1. "
                   f"{args.readers:,d} staff sockets read every queue_list; one more staff socket, whose list is "
                   f"longer ({args.short_list + args.long_list} waiting, 200 shown, about 140 KB), either reads "
                   "normally (baseline rounds) or is a raw TCP socket with a 4 KiB receive buffer that stops reading "
                   "after its welcome (stalled rounds). Rounds alternate, a fresh province socket each. A doctor "
                   "changes a triage level over HTTP; each change is one broadcast. Latency = arrival at the reader "
                   "− the `now` the server stamped on the list when it built it. Before the measured broadcasts of "
                   f"each round, {args.warmup} changes that only the province list shows send it ~140 KB each (about "
                   f"{args.warmup * 0.14:.1f} MB, more than the kernel and transport buffers hold), so a stalled "
                   "socket is truly stuck when the measured broadcasts start."),
    }
    result["load_average_before"] = harness.load_average()
    with harness.embedded_database() as (dsn, tmp):
        with harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app")) as server:
            t0 = time.perf_counter()
            setup = asyncio.run(prepare(dsn, args.readers, args.short_list, args.long_list))
            result["prepare_s"] = time.perf_counter() - t0
            print(f"prepared {args.readers} staff sessions and {args.short_list + args.long_list} waiting patients "
                  f"in {result['prepare_s']:.1f} s; connecting…", flush=True)
            result.update(asyncio.run(measure(server, setup, args)))
    base, stalled = result["baseline_ms"], result["stalled_ms"]
    result["ratios"] = {k: stalled[k] / base[k] for k in ("p50", "p90", "p99")}
    timeouts = sum(r["timeouts"] for r in result["rounds"])
    result["timeouts"] = timeouts
    met = result["ratios"]["p50"] <= args.aim_ratio and result["ratios"]["p99"] <= args.aim_ratio and timeouts == 0
    result["aim"] = {"text": f"delivery latency p50 and p99 to the {args.readers:,d} reading sockets with one socket "
                             f"stalled ≤ {args.aim_ratio:g}× the same without it, measured in the same run, "
                             "no broadcast missing", "ratio": args.aim_ratio, "met": met}
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = time.perf_counter() - started
    print(f"\nqueue_list delivery to {args.readers} readers ({base['count']:.0f} / {stalled['count']:.0f} samples)")
    print(f"{'':22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, r in (("province socket reads", base), ("province socket stalled", stalled)):
        print(f"{name:22}{r['p50']:9.2f}{r['p90']:9.2f}{r['p99']:9.2f}{r['max']:9.2f}")
    ratio = result["ratios"]
    print(f"{'ratio stalled/reads':22}{ratio['p50']:9.2f}{ratio['p90']:9.2f}{ratio['p99']:9.2f}")
    print(f"timeouts {timeouts}; aim: {result['aim']['text']} → {'met' if met else 'NOT met'}")
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
