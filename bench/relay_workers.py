"""Relay throughput at saturation: `donghanh serve --workers 1` against `--workers 2`, same load, one run.

Each configuration runs as the real command (a child `serve` process over one fresh embedded PostgreSQL; with
2 workers the kernel spreads connections over two processes with SO_REUSEPORT and a room whose sides landed
on different workers is relayed through the bus). The load generator (this process) connects the same
patient/doctor pairs, waits until every patient has heard its doctor join, then keeps a fixed number of
offers and ICE candidates in flight (a new one is sent as soon as one arrives) for a fixed time, and counts
what arrived. Server CPU (all its processes) and the load generator's own CPU are recorded: on a small
machine the load generator may be what saturates first. Run with --help.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench import harness  # noqa: E402
from bench.relay_clients import Peer, Stats, connect_all, encode  # noqa: E402
from bench.relay_setup import PairSpec, prepare  # noqa: E402
from bench.sdp import ice_candidate, session_description  # noqa: E402


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children alive now (the serve parent and its workers)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}").joinpath("task").iterdir():
                children = task.joinpath("children").read_text().split()
                pending.extend(int(c) for c in children)
    return total


@contextlib.contextmanager
def served(dsn: str, data_dir: Path, workers: int) -> Iterator[tuple[str, int]]:
    """`donghanh serve --workers N` on a free loopback port until it listens; SIGTERM on the way out."""
    import signal
    import socket
    import subprocess

    with socket.socket() as probe:  # a port free now (released at once for the server to take)
        probe.bind((harness.LOOPBACK, 0))
        port = probe.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DONGHANH_")}, "DATABASE_URL": dsn,
           "DONGHANH_SECRET_KEY": harness.BENCH_SECRET, "DONGHANH_DATA_DIR": str(data_dir),
           "DONGHANH_MAX_SOCKETS_PER_ADDRESS": "1000000", "DONGHANH_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", "serve", "--workers",
         str(workers), "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        output = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            output += line
            if not line:
                raise RuntimeError(f"serve exited before listening: {output.decode()[-2000:]}")
            if b"Running on" in line:
                break
        yield f"http://{harness.LOOPBACK}:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _until(stats: Stats, kind: str, wanted: int, limit_s: float = 120.0) -> None:
    start = time.perf_counter()
    while stats.other[kind] < wanted and time.perf_counter() - start < limit_s:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def saturate(pairs: list[tuple[Peer, Peer]], stats: Stats, *, window: int, warmup_s: float,
                   duration_s: float, pid: int) -> dict[str, Any]:
    """Keep `window` messages in flight for warmup + duration; count what arrived during `duration_s`."""
    sent = 0
    n = len(pairs)
    start = time.perf_counter()
    measured_from = start + warmup_s
    end = measured_from + duration_s
    received0 = cpu0 = load_cpu0 = 0.0
    measuring = False
    while True:
        now = time.perf_counter()
        if not measuring and now >= measured_from:
            measuring = True
            received0, cpu0 = stats.received, _tree_cpu_seconds(pid)
            load_cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(
                resource.RUSAGE_SELF).ru_stime
        if now >= end:
            break
        if sent - stats.received >= window:
            await asyncio.sleep(0.0005)
            continue
        patient, doctor = pairs[sent % n]
        stamp = time.perf_counter_ns()
        if (sent // n) % 2 == 0:
            message: dict[str, Any] = {"type": "offer", "room": doctor.room, "sdp": session_description(stamp)}
            sender = doctor
        else:
            message = {"type": "ice", "room": patient.room, "candidate": ice_candidate(stamp)}
            sender = patient
        await sender.ws.send_str(encode(message).decode())
        sent += 1
    received = stats.received - received0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {"messages_per_s": received / duration_s, "received_in_window": received,
              "server_cpu_s": _tree_cpu_seconds(pid) - cpu0, "load_generator_cpu_s": usage.ru_utime + usage.ru_stime
              - load_cpu0, "window_s": duration_s, "in_flight": window}
    deadline = time.perf_counter() + 30
    while stats.received < sent and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    result["sent_total"], result["lost"] = sent, sent - stats.received
    ms = stats.latencies_ms["offer"] + stats.latencies_ms["ice"]
    result["latency_ms_p50"], result["latency_ms_p99"] = harness.percentile(ms, 50), harness.percentile(ms, 99)
    return result


async def run_config(url: str, pid: int, specs: list[PairSpec], args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with asyncio.timeout(300):
            pairs = await connect_all(session, url, specs, stats, hello=True, concurrency=args.concurrency,
                                      deflate=False)
        # The second side of each pair to join hears `peer_joined` (from its own worker or through the bus);
        # with two workers both sides may: at least one per pair before relaying.
        await _until(stats, "peer_joined", len(specs))
        result = {"peer_joined": stats.other["peer_joined"]}
        result.update(await saturate(pairs, stats, window=args.window, warmup_s=args.warmup,
                                     duration_s=args.duration, pid=pid))
        result["errors"], result["first_errors"] = len(stats.errors), stats.errors[:3]
        everyone = [p for pair in pairs for p in pair]
        await asyncio.wait([asyncio.create_task(p.ws.close()) for p in everyone], timeout=30)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Relayed messages per second at saturation with `serve --workers 1` and `--workers 2`.",
        epilog="Example: python bench/relay_workers.py --clients 200 --duration 5  (a quick run)")
    parser.add_argument("--clients", type=int, default=1000, help="connected websockets (even; default 1000)")
    parser.add_argument("--window", type=int, default=200, help="messages kept in flight (default 200)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before counting (default 2)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds counted (default 10)")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once (default 100)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="configurations (default: 1 2)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "relay_workers.json",
                        help="result file (default: bench/results/relay_workers.json)")
    args = parser.parse_args(argv)
    if args.clients < 2 or args.clients % 2:
        parser.error("--clients must be an even number ≥ 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(2 * args.clients + 1024)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "relay_workers", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv), "params": {k: v for k, v in vars(args).items() if k != "output"},
        "method": ("`donghanh serve --workers N` (the real command) over one embedded PostgreSQL; the same "
                   "patient/doctor pairs connect (SO_REUSEPORT spreads them over the workers, so with 2 about half "
                   "the rooms cross processes through the bus); offers (~3 KB) and ICE candidates are kept "
                   "in flight at a fixed window for a fixed time and the relayed ones counted."),
        "load_average_before": harness.load_average(), "configs": {}}
    with harness.embedded_database() as (dsn, tmp):
        specs: list[PairSpec] = []
        for workers in args.workers:
            with served(dsn, tmp / f"w{workers}", workers) as (url, pid):
                if not specs:  # the first serve migrated the database; the same rooms serve every config
                    specs = asyncio.run(prepare(dsn, args.clients // 2, 50, timedelta(hours=2)))
                print(f"--workers {workers}: connecting {args.clients} clients, then saturating…", flush=True)
                config = asyncio.run(run_config(url, pid, specs, args))
                config["load_average_after"] = harness.load_average()
                result["configs"][str(workers)] = config
                print(f"  {config['messages_per_s']:.0f} msg/s relayed; server CPU {config['server_cpu_s']:.1f} s, "
                      f"load generator CPU {config['load_generator_cpu_s']:.1f} s over {args.duration:.0f} s; "
                      f"lost {config['lost']}, errors {config['errors']}", flush=True)
    configs = result["configs"]
    if "1" in configs and "2" in configs:
        result["ratio_2_over_1"] = configs["2"]["messages_per_s"] / configs["1"]["messages_per_s"]
        print(f"throughput --workers 2 / --workers 1: {result['ratio_2_over_1']:.2f}")
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = time.perf_counter() - started
    print(f"machine load average (1 min) before/after: {result['load_average_before'][0]:.2f} / "
          f"{result['load_average_after'][0]:.2f} on {result['machine']['cores']} cores")
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
