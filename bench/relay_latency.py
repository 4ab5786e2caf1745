"""Signaling relay latency with many connected clients: the real app against a bare aiohttp relay, one run.

The real app (web.app.create_app over a fresh embedded PostgreSQL) and the baseline (bench/bare_relay.py)
each run in a child process on 127.0.0.1; this process is the load generator. It connects patient/doctor
pairs (patients say hello with a join-link token, doctors with their session cookie), joins every pair
to its consultation room, then for a bounded number of rounds, paced at a fixed message rate, one side
of each pair sends an offer (a ~3 KB SDP) or a trickled ICE candidate carrying its send time, and the
other side records receive time minus send time. Rounds alternate between the two servers, so both
see the same machine noise. Run with --help for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench import harness  # noqa: E402
from bench.relay_clients import Peer, Stats, connect_all, settle  # noqa: E402
from bench.relay_clients import encode as _encode  # noqa: E402
from bench.relay_setup import PairSpec, prepare  # noqa: E402
from bench.sdp import ice_candidate, session_description  # noqa: E402

_T = TypeVar("_T")


@dataclass
class Target:
    """One server under test, the pairs it is given and what they measured."""

    name: str
    server: harness.ServerProcess
    specs: list[PairSpec]
    hello: bool
    stats: Stats = field(default_factory=Stats)
    pairs: list[tuple[Peer, Peer]] = field(default_factory=list)
    sent: int = 0
    result: dict[str, Any] = field(default_factory=dict)


async def send_round(target: Target, kind: str, rate: float) -> None:
    """One paced round: every pair relays one message, `rate` per second. The doctor sends offers,
    the patient trickles ICE candidates; each message carries its send time."""
    start = time.perf_counter()
    for i, (patient, doctor) in enumerate(target.pairs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        sender = doctor if kind == "offer" else patient
        stamp = time.perf_counter_ns()
        if kind == "offer":
            message: dict[str, Any] = {"type": "offer", "room": sender.room,
                                       "sdp": session_description(stamp)}
        else:
            message = {"type": "ice", "room": sender.room, "candidate": ice_candidate(stamp)}
        await sender.ws.send_str(_encode(message).decode())
        target.sent += 1


def round_plan(targets: Sequence[_T], r: int) -> tuple[str, list[_T]]:
    """Round r's message kind and the order the servers get it in.

    Kinds alternate (offer, ice, …) and so does the order, in a cycle of four rounds, so that each server
    goes first equally often for each kind. Alternating the order with the kind (the plan before
    2026-11-30) gave the first target every offer round first and every ICE round second; with two
    identical bare relays that cost the first one 1.01-1.26x in p50 over ten runs (0.99-1.01x balanced, three runs)."""
    kind = "offer" if r % 2 == 0 else "ice"
    return kind, (list(targets) if r % 4 in (0, 3) else list(reversed(targets)))


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": harness.percentile(values, 50), "p90": harness.percentile(values, 90),
            "p99": harness.percentile(values, 99), "max": max(values, default=float("nan")),
            "mean": sum(values) / len(values) if values else float("nan"), "count": len(values)}


async def measure(targets: list[Target], args: argparse.Namespace) -> None:
    """Connect every target's clients (one server after the other), then run the rounds interleaved —
    round r goes to each server in turn, in the order `round_plan` gives — so both see the same machine
    noise."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        for t in targets:
            t0, cpu_start = time.perf_counter(), t.server.cpu_seconds()
            async with asyncio.timeout(120):
                t.pairs = await connect_all(session, t.server.url, t.specs, t.stats, hello=t.hello,
                                            concurrency=args.concurrency, deflate=args.deflate)
            t.result = {"clients": 2 * len(t.specs), "rooms": len(t.specs),
                        "connect_join_s": time.perf_counter() - t0,
                        "queue_broadcast_settle_s": await settle(t.stats),
                        "server_rss_mib": t.server.rss_mib()}
            t.result["connect_server_cpu_s"] = t.server.cpu_seconds() - cpu_start
        quiet_s = await servers_quiet(targets)
        for t in targets:
            t.result["quiet_before_window_s"] = quiet_s
        # No collector pauses in the load generator while it timestamps (they showed up as 5-10 ms spikes on
        # both servers alike); the window is bounded, and the reports below still log any that happen.
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu0 = [t.server.cpu_seconds() for t in targets]
        window_start = time.perf_counter_ns()
        with harness.GcPauses() as load_gc:
            for r in range(args.rounds):
                kind, order = round_plan(targets, r)
                for t in order:
                    await send_round(t, kind, args.rate)
            deadline = time.perf_counter() + args.drain_timeout
            # A bounded poll of counters the reader tasks bump (an Event per target would say no more).
            while any(t.stats.received < t.sent for t in targets) and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        window = (window_start, time.perf_counter_ns())
        gc.enable()
        for t, cpu_before in zip(targets, cpu0, strict=True):
            cpu = t.server.cpu_seconds() - cpu_before
            stats, ms = t.stats, t.stats.latencies_ms
            worst = sorted(stats.samples, key=lambda s: s[1], reverse=True)[:10]
            t.result.update({
                "sent": t.sent, "received": stats.received, "lost": t.sent - stats.received,
                "server_cpu_s": cpu, "server_cpu_ms_per_message": 1000 * cpu / t.sent if t.sent else 0.0,
                "other_messages": dict(stats.other), "errors": len(stats.errors),
                "first_errors": stats.errors[:3], "window_ns": window,
                "load_gc": harness.gc_summary(load_gc.events),
                "worst": [{"sent_ns": s, "ms": round(v, 2),
                           "load_gc_ms": _overlapping_gc(load_gc.events, s, v)} for s, v in worst],
                "latency_ms": {"all": summary(ms["offer"] + ms["ice"]), "offer": summary(ms["offer"]),
                               "ice": summary(ms["ice"])}})
        for t in targets:  # one server at a time, so each one's disconnect storm is measured alone
            everyone = [p for pair in t.pairs for p in pair]
            cpu_before = t.server.cpu_seconds()
            await asyncio.wait([asyncio.create_task(p.ws.close()) for p in everyone], timeout=30)
            await asyncio.wait([p.reader for p in everyone], timeout=10)
            t.result["disconnect_server_cpu_s"] = await server_quiet(t.server) - cpu_before
        gc.unfreeze()


async def servers_quiet(targets: Sequence[Target]) -> float:
    """Wait until what connecting set off is over; returns the seconds waited.

    The app coalesces queue broadcasts: the one for the last hellos comes up to COALESCE_MAX_S after them,
    often after `settle` saw the lists stop changing (a broadcast that changes no list sends none). One
    such broadcast is ~10 ms of the app's CPU at 1,000 sockets; left to fall into the first rounds, it
    delayed dozens of messages in some runs and none in others."""
    from signaling.hub import COALESCE_MAX_S  # here: the servers' child processes need not import the app

    start = time.perf_counter()
    await asyncio.sleep(COALESCE_MAX_S + 0.5)
    for t in targets:
        await server_quiet(t.server)
    return time.perf_counter() - start


async def server_quiet(server: harness.ServerProcess, limit_s: float = 15.0) -> float:
    """Wait until the server's CPU time stops growing (0.3 s without a tick, at most `limit_s`); return it.
    The close handshake completes before the app's clean-up of a socket, so CPU is what shows that work."""
    last, deadline = server.cpu_seconds(), time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.3)
        now = server.cpu_seconds()
        if now == last:
            break
        last = now
    return last


def _overlapping_gc(events: list[tuple[int, int, float]], sent_ns: int, latency_ms: float) -> float:
    """Milliseconds of garbage collection that started while this message was in flight."""
    end = sent_ns + latency_ms * 1e6
    return round(sum(ms for start, _, ms in events if sent_ns <= start <= end), 2)


def attribute_pauses(run: dict[str, Any], server: harness.ServerProcess) -> None:
    """Once the server has stopped (and sent its GC log): its pauses in the window and in the worst spikes."""
    window = run.pop("window_ns")
    run["server_gc"] = harness.gc_summary(server.gc_events, window)
    for spike in run["worst"]:
        sent = spike.pop("sent_ns")
        spike["at_s"] = round((sent - window[0]) / 1e9, 3)
        spike["server_gc_ms"] = _overlapping_gc(server.gc_events, sent, spike["ms"])


def _profile_path(args: argparse.Namespace, name: str) -> str | None:
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    return str(args.profile.resolve() / f"{name}.prof")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Signaling relay latency of the real app vs a bare aiohttp relay, measured in one run. "
                    "Both servers run in a child process on 127.0.0.1; this process generates the load.",
        epilog="Example: python bench/relay_latency.py --clients 200 --rounds 10  (a quick run)")
    parser.add_argument("--clients", type=int, default=1000,
                        help="connected websockets, half patients, half doctors (even; default 1000)")
    parser.add_argument("--rounds", type=int, default=100,
                        help="rounds; in each, every pair relays one message (default 100: offer, ice, …; "
                             "with 20, two identical relays' p99 differ by up to 1.5×, see bench/README.md)")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="paced send rate over all pairs, messages per second (default 1000)")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="handshakes (connect+hello+join) in flight at once (default 100)")
    parser.add_argument("--facilities", type=int, default=50,
                        help="commune health stations the pairs are spread over (default 50)")
    parser.add_argument("--deflate", action="store_true",
                        help="offer permessage-deflate like browsers do (default: uncompressed frames)")
    parser.add_argument("--drain-timeout", type=float, default=15.0,
                        help="seconds to wait for in-flight messages after the last send (default 15)")
    parser.add_argument("--aim-ratio", type=float, default=1.5,
                        help="aim: p50 and p99 of the real app at most this many times the bare relay's (1.5)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "relay_latency.json",
                        help="result file (default: bench/results/relay_latency.json, which "
                             "write_benchmarks.py reads)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write a cProfile of each server process to DIR/<server>.prof (slows them down; "
                             "read with python -m pstats)")
    parser.add_argument("--only", choices=("both", "ours", "bare", "calibrate"), default="both",
                        help="measure both servers (default), or only one (for debugging: no ratios); "
                             "'calibrate' measures a second bare relay in the app's place (an A/A run: the "
                             "ratios this method gives when the two servers are the same program)")
    args = parser.parse_args(argv)
    if args.clients < 2 or args.clients % 2:
        parser.error("--clients must be an even number ≥ 2")
    if args.rounds < 1 or args.rate <= 0:
        parser.error("--rounds must be ≥ 1 and --rate > 0")
    return args


def report(result: dict[str, Any]) -> None:
    ours, bare = result.get("ours"), result.get("bare")
    print(f"\nRelay latency, {result['params']['clients']} clients, {result['params']['rounds']} rounds at "
          f"{result['params']['rate']:.0f} msg/s per server "
          f"(offer {result['offer_bytes']} B, ice {result['ice_bytes']} B)")
    print(f"{'':22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'lost':>6}{'connect+join s':>16}")
    calibration = bool(result.get("calibration"))
    names = (("bare A (app's place)", "bare B") if calibration
             else ("ours (real app)", "bare aiohttp relay"))
    for name, r in zip(names, (ours, bare), strict=True):
        if r:
            lat = r["latency_ms"]["all"]
            print(f"{name:22}{lat['p50']:9.2f}{lat['p90']:9.2f}{lat['p99']:9.2f}{lat['max']:9.2f}"
                  f"{r['lost']:6d}{r['connect_join_s']:16.2f}")
    if "ratios" in result:
        ratio = result["ratios"]
        print(f"{'ratio ours/bare':22}{ratio['p50']:9.2f}{ratio['p90']:9.2f}{ratio['p99']:9.2f}{'':15}"
              f"{ratio['connect_join']:16.2f}")
    if ours:
        print(f"server CPU per relayed message: ours {ours['server_cpu_ms_per_message']:.3f} ms"
              + (f", bare {bare['server_cpu_ms_per_message']:.3f} ms" if bare else ""))
        for key, label in (("connect_server_cpu_s", "connecting"),
                           ("disconnect_server_cpu_s", "disconnecting")):
            print(f"server CPU for {label} everyone: ours {ours[key]:.2f} s"
                  + (f", bare {bare[key]:.2f} s" if bare else ""))
        print(f"queue broadcasts after connecting settled in {ours['queue_broadcast_settle_s']:.1f} s; "
              f"server RSS with all clients {ours['server_rss_mib']:.0f} MiB; errors {ours['errors']}")
    print(f"machine load average (1 min) before/after: {result['load_average_before'][0]:.2f} / "
          f"{result['load_average_after'][0]:.2f} on {result['machine']['cores']} cores")
    if calibration:
        print("calibration run (two bare relays): no aim; the ratios are this method's noise")
    else:
        print(f"aim: {result['aim']['text']} → {'met' if result['aim']['met'] else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(2 * args.clients + 1024)
    started = time.perf_counter()
    pair_count = args.clients // 2
    result: dict[str, Any] = {
        "benchmark": "relay_latency", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv),
        "params": {k: v for k, v in vars(args).items() if k not in ("only", "output", "profile")},
        "method": ("The real app (over embedded PostgreSQL) and a bare aiohttp websocket relay each run in "
                   "their own child process on 127.0.0.1; a third process connects the same number of "
                   "patient/doctor pairs to each, joins every pair to its room, then sends paced rounds of "
                   "offers (~3 KB SDP) and ICE candidates stamped with their send time. Rounds alternate "
                   "between the two servers (same messages, same pacing, same moment's machine noise) and "
                   "the receiving side records receive time minus send time."),
        "offer_bytes": len(_encode({"type": "offer", "room": "0" * 36, "sdp": session_description(0)})),
        "ice_bytes": len(_encode({"type": "ice", "room": "0" * 36, "candidate": ice_candidate(0)})),
    }
    result["load_average_before"] = harness.load_average()
    with contextlib.ExitStack() as stack:
        targets: list[Target] = []
        if args.only in ("both", "ours"):
            dsn, tmp = stack.enter_context(harness.embedded_database())
            server = stack.enter_context(harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app"),
                                                                profile=_profile_path(args, "app")))
            prep_start = time.perf_counter()
            specs = asyncio.run(prepare(dsn, pair_count, args.facilities, timedelta(hours=2)))
            result["prepare_s"] = time.perf_counter() - prep_start
            print(f"prepared {pair_count} consultations in {result['prepare_s']:.1f} s")
            targets.append(Target("ours", server, specs, hello=True))
        if args.only == "calibrate":  # a bare relay where the app would be: same place in every round
            server = stack.enter_context(harness.server_process("bare", profile=_profile_path(args, "bare_a")))
            specs = [PairSpec(f"bare-a-room-{i:05d}") for i in range(pair_count)]
            targets.append(Target("ours", server, specs, hello=False))
        if args.only in ("both", "bare", "calibrate"):
            server = stack.enter_context(harness.server_process("bare", profile=_profile_path(args, "bare")))
            specs = [PairSpec(f"bare-room-{i:05d}") for i in range(pair_count)]
            targets.append(Target("bare", server, specs, hello=False))
        print("connecting, then relaying (rounds interleaved between the servers)…")
        asyncio.run(measure(targets, args))
    for t in targets:  # the servers have stopped and sent their GC logs
        attribute_pauses(t.result, t.server)
        result[t.name] = t.result
    ours, bare = result.get("ours"), result.get("bare")
    if ours and bare:
        o, b = ours["latency_ms"]["all"], bare["latency_ms"]["all"]
        result["ratios"] = {k: o[k] / b[k] for k in ("p50", "p90", "p99")}
        result["ratios"]["connect_join"] = ours["connect_join_s"] / bare["connect_join_s"]
        result["ratios"]["server_cpu_per_message"] = (ours["server_cpu_ms_per_message"]
                                                      / bare["server_cpu_ms_per_message"])
    ratios = result.get("ratios", {})
    if args.only == "calibrate":
        result["calibration"] = True
        result["method"] += (" Calibration run: both servers are the bare relay, the first in the real app's "
                             "place, so the ratios show the method's own noise.")
    result["aim"] = {"text": f"relay latency p50 and p99 of the real app ≤ {args.aim_ratio:g}× the bare aiohttp "
                             f"relay's, measured in the same run with {args.clients} connected clients, "
                             "no message lost",
                     "ratio": args.aim_ratio,
                     "met": bool(ours and ratios and args.only != "calibrate" and ratios["p50"] <= args.aim_ratio
                                 and ratios["p99"] <= args.aim_ratio and ours["lost"] == 0)}
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = time.perf_counter() - started
    report(result)
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
