"""Reconnect storm with 10,000 connected sockets: the real app against the bare aiohttp relay, one run.

For each server (the real app over a fresh embedded PostgreSQL; then bench/bare_relay.py), in a child
process on 127.0.0.1: its idle memory is read, every client connects, says hello (real app only: patients
with their join-link token, doctors with their session cookie) and joins its consultation room; the
memory with every socket open gives the memory per socket. Then the server is restarted — SIGTERM (it
closes every socket), a new process on the same database — and every client reconnects, says hello and
rejoins at once (at most `--concurrency` handshakes in flight per client process); the time from the new
process listening to the last `joined`, and the new process's CPU time over that storm (until its CPU
stops growing: queue broadcasts and presence included), per reconnect, are the figures. The load
generator is several processes (`--client-procs`), so 10,000 aiohttp clients are not one Python loop;
server CPU is read from /proc/<pid>/stat of the server process only. Run with --help for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import sys
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import harness  # noqa: E402
from bench.relay_setup import PairSpec, prepare  # noqa: E402

# ---- the client processes --------------------------------------------------------------------------


def _client_main(channel: Connection, specs: list[PairSpec], hello: bool, concurrency: int,
                 fd_limit: int) -> None:
    harness.raise_fd_limit(fd_limit)
    asyncio.run(_client_async(channel, specs, hello, concurrency))


async def _client_async(channel: Connection, specs: list[PairSpec], hello: bool, concurrency: int) -> None:
    import aiohttp

    from bench.relay_clients import Peer, Stats

    loop = asyncio.get_running_loop()
    stats = Stats()
    peers: list[Peer] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        while True:
            command, argument = await loop.run_in_executor(None, channel.recv)
            if command == "connect":
                started = time.perf_counter()
                gate = asyncio.Semaphore(concurrency)
                retries: list[int] = []
                opened = await asyncio.gather(*(
                    _open(session, str(argument), spec, doctor, stats, gate, retries, hello=hello)
                    for spec in specs for doctor in (False, True)), return_exceptions=True)
                peers = [p for p in opened if isinstance(p, Peer)]
                failures = [repr(p) for p in opened if not isinstance(p, Peer)]
                channel.send({"sockets": len(peers), "seconds": time.perf_counter() - started, "retries": len(retries),
                              "failed": len(failures), "first_failures": failures[:3],
                              "last_joined": time.perf_counter(), "errors": len(stats.errors)})
            elif command == "closed":  # the server went away: wait until every socket has seen it
                async with asyncio.timeout(60):
                    await asyncio.gather(*(p.reader for p in peers), return_exceptions=True)
                peers = []
                channel.send({"ok": True})
            elif command == "close":
                await asyncio.wait([asyncio.create_task(p.ws.close()) for p in peers], timeout=60)
                await asyncio.wait([p.reader for p in peers], timeout=10)
                peers = []
                channel.send({"ok": True})
            elif command == "stop":
                channel.send({"ok": True})
                return


async def _open(session: Any, url: str, spec: PairSpec, doctor: bool, stats: Any, gate: asyncio.Semaphore,
                retries: list[int], *, hello: bool) -> Any:
    """One side of a pair connects, says hello and joins, retrying with backoff as a page does."""
    import aiohttp

    from bench.relay_clients import open_peer

    delay = 0.05
    for attempt in range(8):
        try:
            async with gate:
                return await open_peer(session, url, spec.room, stats, hello=hello, deflate=False,
                                       token="" if doctor else spec.patient_token,
                                       cookie=spec.doctor_cookie if doctor else "")
        except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError):
            if attempt == 7:
                raise
            retries.append(1)
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


class Clients:
    """The load generator: `procs` processes, each holding its share of the pairs' sockets."""

    def __init__(self, specs: list[PairSpec], *, hello: bool, procs: int, concurrency: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.channels: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        fd_limit = 2 * len(specs) // procs + 1024
        for i in range(procs):
            mine, theirs = ctx.Pipe()
            process = ctx.Process(target=_client_main, args=(theirs, specs[i::procs], hello, concurrency, fd_limit),
                                  name=f"bench-clients-{i}", daemon=True)
            process.start()
            theirs.close()
            self.channels.append(mine)
            self.processes.append(process)

    def ask(self, command: str, argument: object = None, timeout: float = 600) -> list[dict[str, Any]]:
        for channel in self.channels:
            channel.send((command, argument))
        replies = []
        for channel in self.channels:
            if not channel.poll(timeout):
                raise TimeoutError(f"client process did not answer {command!r} within {timeout:.0f} s")
            replies.append(channel.recv())
        return replies

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError):
            self.ask("stop", timeout=30)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()


# ---- one server ------------------------------------------------------------------------------------


def _quiet(server: harness.ServerProcess, limit_s: float = 30.0) -> tuple[float, float]:
    """Wait until the server's CPU time stops growing (0.5 s without a tick); (CPU seconds, when it stopped)."""
    last, last_change = server.cpu_seconds(), time.perf_counter()
    deadline = last_change + limit_s
    while time.perf_counter() < deadline:
        time.sleep(0.5)
        now = server.cpu_seconds()
        if now == last:
            break
        last, last_change = now, time.perf_counter()
    return last, last_change


def _connect(clients: Clients, server: harness.ServerProcess, count: int) -> dict[str, Any]:
    """Everyone connects, says hello and joins; the time and the server's CPU and memory it took."""
    rss_idle = server.rss_mib()
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    replies = clients.ask("connect", server.url)
    all_joined = max(r["last_joined"] for r in replies) - t0
    cpu_joined = server.cpu_seconds() - cpu0
    cpu_quiet, quiet_at = _quiet(server)
    rss = server.rss_mib()
    sockets = sum(r["sockets"] for r in replies)
    failures = [f for r in replies for f in r["first_failures"]]
    if sockets != count:
        print(f"  only {sockets:,d} of {count:,d} sockets joined; first failures: {failures}", flush=True)
    return {"sockets": sockets, "all_joined_s": all_joined, "quiet_s": quiet_at - t0,
            "server_cpu_until_joined_s": cpu_joined, "server_cpu_s": cpu_quiet - cpu0,
            "server_cpu_ms_per_socket": 1000 * (cpu_quiet - cpu0) / max(1, sockets),
            "retries": sum(r["retries"] for r in replies), "errors": sum(r["errors"] for r in replies),
            "failed": count - sockets, "first_failures": failures,
            "rss_idle_mib": rss_idle, "rss_mib": rss, "kib_per_socket": 1024 * (rss - rss_idle) / max(1, sockets)}


def run_server(name: str, kind: str, specs: list[PairSpec], args: argparse.Namespace,
               options: dict[str, Any]) -> dict[str, Any]:
    count = 2 * len(specs)
    clients = Clients(specs, hello=kind == "app", procs=args.client_procs, concurrency=args.concurrency)
    result: dict[str, Any] = {"clients": count}
    try:
        with harness.server_process(kind, **options) as first:
            print(f"{name}: connecting {count:,d} sockets…", flush=True)
            result["first_connect"] = _connect(clients, first, count)
            _print(name, "first connect", result["first_connect"])
            first.stop(timeout=10)  # SIGTERM: the app closes every socket and exits (killed after 10 s)
        clients.ask("closed", timeout=120)
        profile = _profile_path(args, name)
        with harness.server_process(kind, **options, profile=profile, profile_clock="cpu") as second:
            print(f"{name}: restarted; everyone reconnects at once…", flush=True)
            result["reconnect"] = _connect(clients, second, count)
            _print(name, "reconnect", result["reconnect"])
            clients.ask("close", timeout=120)
    finally:
        clients.stop()
    return result


def _print(name: str, phase: str, r: dict[str, Any]) -> None:
    print(f"  {name} {phase}: {r['sockets']:,d} sockets joined in {r['all_joined_s']:.1f} s "
          f"(quiet after {r['quiet_s']:.1f} s), server CPU {r['server_cpu_s']:.2f} s = "
          f"{r['server_cpu_ms_per_socket']:.3f} ms/socket, memory {r['rss_idle_mib']:.0f} → {r['rss_mib']:.0f} MiB "
          f"= {r['kib_per_socket']:.1f} KiB/socket, retries {r['retries']}, errors {r['errors']}", flush=True)


def _profile_path(args: argparse.Namespace, name: str) -> str | None:
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    return str(args.profile.resolve() / f"{name}-reconnect.prof")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Memory per socket and the reconnect storm after a restart: the real app vs a bare aiohttp "
                    "relay, measured in one run.",
        epilog="Example: python bench/reconnect_storm.py --clients 2000  (a quick run)")
    parser.add_argument("--clients", type=int, default=10_000,
                        help="websockets, half patients, half doctors, one room per pair (even; default 10000)")
    parser.add_argument("--client-procs", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=250,
                        help="handshakes (connect+hello+join) in flight at once per client process (default 250)")
    parser.add_argument("--facilities", type=int, default=50, help="commune health stations (default 50)")
    parser.add_argument("--aim-memory-ratio", type=float, default=2.0,
                        help="aim: memory per socket at most this many times the bare relay's (default 2)")
    parser.add_argument("--aim-cpu-ratio", type=float, default=3.0,
                        help="aim: server CPU per reconnect at most this many times the bare relay's (default 3)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "reconnect_storm.json",
                        help="result file (default: bench/results/reconnect_storm.json)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write a CPU-time cProfile of each restarted server to DIR/<server>-reconnect.prof")
    parser.add_argument("--only", choices=("both", "ours", "bare"), default="both",
                        help="measure both servers (default), or only one (for debugging: no ratios)")
    args = parser.parse_args(argv)
    if args.clients < 2 or args.clients % 2 or args.client_procs < 1:
        parser.error("--clients must be an even number ≥ 2 and --client-procs ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(args.clients + 1024)
    started = time.perf_counter()
    pairs = args.clients // 2
    result: dict[str, Any] = {
        "benchmark": "reconnect_storm", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv),
        "params": {k: v for k, v in vars(args).items() if k not in ("only", "output", "profile")},
        "method": ("Each server runs in a child process on 127.0.0.1 (the real app over embedded PostgreSQL, "
                   "then the bare aiohttp relay); "
                   f"{args.client_procs} load-generator processes hold the sockets. Every client connects, "
                   "says hello (real app: patients with their join-link token, doctors with their session "
                   "cookie) and joins its room; memory per socket is the server's RSS with every socket open "
                   "minus its idle RSS, over the sockets. Then the server is restarted (SIGTERM closes every "
                   "socket; a new process starts on the same database) and every client reconnects, says "
                   f"hello and rejoins at once, at most {args.concurrency} handshakes in flight per load "
                   "process, with backoff on failure. Reconnect time runs from the new process listening to "
                   "the last `joined`; server CPU (from /proc/<pid>/stat of the server process only) runs "
                   "until the new process's CPU time stops growing (queue broadcasts included)."),
    }
    result["load_average_before"] = harness.load_average()
    with contextlib.ExitStack() as stack:
        if args.only in ("both", "ours"):
            dsn, tmp = stack.enter_context(harness.embedded_database())
            # A doctor's patient is requeued after DONGHANH_REQUEUE_GRACE without them (60 s); on these shared
            # cores a first connection of 10,000 sockets can take longer, which would end rooms mid-benchmark.
            options = {"dsn": dsn, "data_dir": str(tmp / "app"), "settings": {"requeue_grace_s": 3600}}
            # The app migrates on start: the first server creates the schema before the data is written.
            with harness.server_process("app", **options):
                pass
            prep = time.perf_counter()
            specs = asyncio.run(prepare(dsn, pairs, args.facilities, timedelta(hours=4)))
            result["prepare_s"] = time.perf_counter() - prep
            print(f"prepared {pairs:,d} consultations in {result['prepare_s']:.1f} s", flush=True)
            result["ours"] = run_server("ours", "app", specs, args, options)
        if args.only in ("both", "bare"):
            specs = [PairSpec(f"bare-room-{i:05d}") for i in range(pairs)]
            result["bare"] = run_server("bare", "bare", specs, args, {})
    ours, bare = result.get("ours"), result.get("bare")
    if ours and bare:
        result["ratios"] = {
            "memory_per_socket": ours["first_connect"]["kib_per_socket"] / bare["first_connect"]["kib_per_socket"],
            "reconnect_cpu_per_socket": (ours["reconnect"]["server_cpu_ms_per_socket"]
                                         / bare["reconnect"]["server_cpu_ms_per_socket"]),
            "reconnect_time": ours["reconnect"]["all_joined_s"] / bare["reconnect"]["all_joined_s"],
        }
    ratios = result.get("ratios", {})
    result["aim"] = {
        "text": f"with {args.clients:,d} sockets, server memory per socket ≤ {args.aim_memory_ratio:g}× the bare "
                f"relay's, and server CPU per reconnect (connect, hello, join) after a restart ≤ "
                f"{args.aim_cpu_ratio:g}× the bare relay's handshake, every socket rejoined",
        "memory_met": bool(ratios) and ratios["memory_per_socket"] <= args.aim_memory_ratio,
        "cpu_met": bool(ratios) and ratios["reconnect_cpu_per_socket"] <= args.aim_cpu_ratio}
    result["aim"]["met"] = result["aim"]["memory_met"] and result["aim"]["cpu_met"]
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = time.perf_counter() - started
    if ratios:
        print(f"ratios ours/bare: memory per socket {ratios['memory_per_socket']:.2f}, CPU per reconnect "
              f"{ratios['reconnect_cpu_per_socket']:.2f}, reconnect time {ratios['reconnect_time']:.2f}")
    print(f"machine load average (1 min) before/after: {result['load_average_before'][0]:.2f} / "
          f"{result['load_average_after'][0]:.2f}")
    print(f"aim: {result['aim']['text']} → {'met' if result['aim']['met'] else 'NOT met'}")
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
