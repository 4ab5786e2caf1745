"""Relay latency when a room's two sides are on different app processes, against one process, in one run.

Two real app processes (each web.app.create_app in its own child, `DONGHANH_BUS` on) share one fresh
embedded PostgreSQL. Half the patient/doctor pairs have both sides on process X (one process: the relay
stays in memory); the other half have the patient on X and the doctor on Y (the relay goes through
PostgreSQL LISTEN/NOTIFY, signaling/bus.py). Rounds alternate between the two halves, paced at the same
rate, so both see the same machine noise; every message carries its send time. Run with --help.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench import harness  # noqa: E402
from bench.relay_clients import Peer, Stats, open_peer  # noqa: E402
from bench.relay_latency import Target, round_plan, send_round, summary  # noqa: E402
from bench.relay_setup import PairSpec, prepare  # noqa: E402


async def _connect_split(session: aiohttp.ClientSession, patient_url: str, doctor_url: str, specs: list[PairSpec],
                         stats: Stats, concurrency: int) -> list[tuple[Peer, Peer]]:
    """Patients on one process first, then their doctors on the other (so each doctor's process has heard,
    or hears right after its `joined`, of the patient through the bus)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: PairSpec, doctor: bool) -> Peer:
        async with gate:
            return await open_peer(session, doctor_url if doctor else patient_url, spec.room, stats, hello=True,
                                   deflate=False, token="" if doctor else spec.patient_token,
                                   cookie=spec.doctor_cookie if doctor else "")

    patients = await asyncio.gather(*(one(spec, False) for spec in specs))
    doctors = await asyncio.gather(*(one(spec, True) for spec in specs))
    return list(zip(patients, doctors, strict=True))


async def _peers_known(stats: Stats, wanted: int, limit_s: float = 60.0) -> float:
    """Wait until the patients have heard `peer_joined` for their doctor on the other process."""
    start = time.perf_counter()
    while stats.other["peer_joined"] < wanted and time.perf_counter() - start < limit_s:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


async def _bus_counts(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The bus counters of one process, from its /metrics (messages published and received, NOTIFYs sent)."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for key, prefix in (("published", 'donghanh_bus_messages_total{direction="published"}'),
                            ("received", 'donghanh_bus_messages_total{direction="received"}'),
                            ("notifications", "donghanh_bus_notifications_total"),
                            ("last_lag_s", "donghanh_bus_lag_seconds")):
            if line.startswith(prefix + " "):
                counts[key] = float(line.rsplit(" ", 1)[1])
    return counts


async def measure(one: Target, split: Target, y: harness.ServerProcess, args: argparse.Namespace) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with asyncio.timeout(300):
            one.pairs = await _connect_split(session, one.server.url, one.server.url, one.specs, one.stats,
                                             args.concurrency)
            split.pairs = await _connect_split(session, split.server.url, y.url, split.specs, split.stats,
                                               args.concurrency)
        known_s = await _peers_known(split.stats, len(split.specs))
        one.result = {"pairs": len(one.specs), "sides": "both on process X"}
        split.result = {"pairs": len(split.specs), "sides": "patient on X, doctor on Y", "peers_known_s": known_s,
                        "peer_joined": split.stats.other["peer_joined"]}
        await asyncio.sleep(1.0)  # queue broadcasts after the connections settle
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu0 = (one.server.cpu_seconds(), y.cpu_seconds())
        for r in range(args.rounds):
            kind, order = round_plan([one, split], r)
            for t in order:
                await send_round(t, kind, args.rate)
        deadline = time.perf_counter() + args.drain_timeout
        while any(t.stats.received < t.sent for t in (one, split)) and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        gc.enable()
        cpu_x, cpu_y = one.server.cpu_seconds() - cpu0[0], y.cpu_seconds() - cpu0[1]
        for t in (one, split):
            ms = t.stats.latencies_ms
            t.result.update({"sent": t.sent, "received": t.stats.received, "lost": t.sent - t.stats.received,
                             "errors": len(t.stats.errors), "first_errors": t.stats.errors[:3],
                             "latency_ms": {"all": summary(ms["offer"] + ms["ice"]), "offer": summary(ms["offer"]),
                                            "ice": summary(ms["ice"])}})
        total = one.sent + split.sent
        one.result["cpu_note"] = "X and Y CPU over the window is shared by both halves; see cpu_window_s"
        split.result["cpu_window_s"] = {"x": cpu_x, "y": cpu_y, "messages_both_halves": total}
        split.result["bus"] = {name: await _bus_counts(session, server.url) for name, server in (("x", one.server),
                                                                                                 ("y", y))}
        for t in (one, split):
            everyone = [p for pair in t.pairs for p in pair]
            await asyncio.wait([asyncio.create_task(p.ws.close()) for p in everyone], timeout=30)
        gc.unfreeze()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Relay latency with a room's two sides on two app processes joined by the bus (PostgreSQL "
                    "LISTEN/NOTIFY), against both sides on one process, in one run.",
        epilog="Example: python bench/relay_processes.py --clients 200 --rounds 10  (a quick run)")
    parser.add_argument("--clients", type=int, default=1000,
                        help="connected websockets in all, half in one-process rooms, half in split rooms (a "
                             "multiple of 4; default 1000)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per half (default 20: offer, ice, …)")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="paced send rate within a round, messages per second (default 1000)")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once (default 100)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to wait for in-flight messages after the last send (default 30)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "relay_processes.json",
                        help="result file (default: bench/results/relay_processes.json)")
    args = parser.parse_args(argv)
    if args.clients < 4 or args.clients % 4:
        parser.error("--clients must be a multiple of 4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(2 * args.clients + 1024)
    started = time.perf_counter()
    pairs = args.clients // 4  # per half
    result: dict[str, Any] = {
        "benchmark": "relay_processes", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv), "params": {k: v for k, v in vars(args).items() if k != "output"},
        "method": ("Two app processes (DONGHANH_BUS on) share one embedded PostgreSQL; half the pairs have both "
                   "sides on process X, half have the patient on X and the doctor on Y (relayed through "
                   "LISTEN/NOTIFY). Rounds of offers (~3 KB) and ICE candidates, stamped with their send time, "
                   "alternate between the halves at the same paced rate; receive time minus send time."),
        "load_average_before": harness.load_average()}
    with contextlib.ExitStack() as stack:
        dsn, tmp = stack.enter_context(harness.embedded_database())
        bus = {"bus": True}
        x = stack.enter_context(harness.server_process("app", dsn=dsn, data_dir=str(tmp / "x"), settings=bus))
        y = stack.enter_context(harness.server_process("app", dsn=dsn, data_dir=str(tmp / "y"), settings=bus))
        specs = asyncio.run(prepare(dsn, 2 * pairs, 50, timedelta(hours=2)))
        one = Target("one_process", x, specs[:pairs], hello=True)
        split = Target("two_processes", x, specs[pairs:], hello=True)
        print(f"connecting {args.clients} clients to two processes, then relaying…")
        asyncio.run(measure(one, split, y, args))
    result["one_process"], result["two_processes"] = one.result, split.result
    o, s = one.result["latency_ms"]["all"], split.result["latency_ms"]["all"]
    result["ratios"] = {k: s[k] / o[k] for k in ("p50", "p90", "p99")}
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = time.perf_counter() - started
    print(f"\nRelay latency, {args.clients} clients ({pairs} rooms per half), {args.rounds} rounds at {args.rate:.0f} "
          "msg/s per half")
    print(f"{'':34}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'lost':>6}{'errors':>8}")
    for label, r in (("one process (both sides on X)", one.result), ("two processes (X → Y via bus)", split.result)):
        lat = r["latency_ms"]["all"]
        print(f"{label:34}{lat['p50']:9.2f}{lat['p90']:9.2f}{lat['p99']:9.2f}{lat['max']:9.2f}{r['lost']:6d}"
              f"{r['errors']:8d}")
    ratio = result["ratios"]
    print(f"{'ratio two/one':34}{ratio['p50']:9.2f}{ratio['p90']:9.2f}{ratio['p99']:9.2f}")
    print(f"bus (whole run, connecting included): {split.result['bus']}")
    print(f"machine load average (1 min) before/after: {result['load_average_before'][0]:.2f} / "
          f"{result['load_average_after'][0]:.2f} on {result['machine']['cores']} cores")
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
