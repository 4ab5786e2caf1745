"""What every benchmark needs: a throw-away PostgreSQL, a server in its own process, percentiles, and
the machine facts that go with a figure.

The server under test always runs in a child process (spawned, so it shares no state with the load
generator) and listens on 127.0.0.1 only, on a port the OS picks; the child reports the port back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import platform
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LOOPBACK = "127.0.0.1"
BENCH_DATABASE = "donghanh_bench"
BENCH_SECRET = "bench-secret-" + "k" * 40


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (capped by the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def machine() -> dict[str, Any]:
    """The facts a reader needs to judge a figure: cores, CPU model, Python and aiohttp versions."""
    import aiohttp

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "aiohttp": aiohttp.__version__, "platform": platform.platform(terse=True)}


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine (tests, browsers) skews tail latencies."""
    return [round(x, 2) for x in os.getloadavg()]


def command_line(argv: list[str] | None) -> str:
    """How this run was started, relative to the repository, for the record."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return " ".join(["python", str(shown), *(sys.argv[1:] if argv is None else argv)])


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def write_result(path: Path, result: dict[str, Any]) -> Path:
    """Write a result file (pretty JSON, UTF-8; NaN where a figure is missing) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def finish(path: Path, result: dict[str, Any]) -> Path:
    """The end of a flat benchmark: the load average after it, the result file written, and each scalar
    figure printed as `key: value` (None printed as missing)."""
    result["load_average_after"] = load_average()
    write_result(path, result)
    for key, value in result.items():
        if isinstance(value, (int, float)) or value is None:
            print(f"{key}: {value}")
    return path


@contextlib.contextmanager
def embedded_database() -> Iterator[tuple[str, Path]]:
    """A fresh embedded PostgreSQL in a temporary directory, deleted afterwards: yields (dsn, temp dir)."""
    from db.embedded import EmbeddedPostgres, ensure_database

    with tempfile.TemporaryDirectory(prefix="dh-bench-") as tmp:
        root = Path(tmp)
        server = EmbeddedPostgres(root / "pg", delete_on_stop=True)
        try:
            asyncio.run(ensure_database(server.dsn(), BENCH_DATABASE))
            yield server.dsn(BENCH_DATABASE), root
        finally:
            server.stop()


def app_settings(dsn: str, data_dir: Path) -> Any:
    """Settings for the real app under test: loopback, a fixed secret (so the load side can sign links)."""
    from web.settings import Settings

    # Every load-generator socket comes from 127.0.0.1: lift the per-address socket cap for them.
    return Settings(database_url=dsn, data_dir=data_dir, host=LOOPBACK, port=0, secret_key=BENCH_SECRET,
                    max_sockets_per_address=1_000_000)


class GcPauses:
    """Records garbage-collector runs in this process: a stop-the-world pause shows up as latency spikes.

    Events are (start in perf_counter ns, generation, milliseconds); perf_counter is the system-wide
    monotonic clock on Linux, so events from the server process line up with the load generator's times.
    """

    def __init__(self) -> None:
        self.events: list[tuple[int, int, float]] = []
        self._started = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            ms = (time.perf_counter_ns() - self._started) / 1e6
            self.events.append((self._started, int(info["generation"]), ms))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def gc_summary(events: Sequence[tuple[int, int, float]],
               window: tuple[int, int] | None = None) -> dict[str, Any]:
    """Count, total and longest pause per generation, of the events that started inside `window` (ns)."""
    if window is not None:
        events = [e for e in events if window[0] <= e[0] <= window[1]]
    out: dict[str, Any] = {}
    for generation in (0, 1, 2):
        ms = [e[2] for e in events if e[1] == generation]
        out[f"gen{generation}"] = {"count": len(ms), "total_ms": round(sum(ms), 2),
                                   "max_ms": round(max(ms, default=0.0), 2)}
    return out


# ---- the server process -----------------------------------------------------------------------------

def _serve(kind: str, options: dict[str, Any], ready: Connection) -> None:
    """Child process entry: build the app, listen on 127.0.0.1:0, report the port, run until SIGTERM."""
    logging_level = options.get("log_level", "WARNING")
    import logging

    logging.basicConfig(level=logging_level, stream=sys.stderr)
    if not options.get("profile"):
        asyncio.run(_serve_async(kind, options, ready))
        return
    import cProfile

    # CPU time (`profile_clock="cpu"`) rather than wall time when other processes share the cores.
    timer = time.process_time if options.get("profile_clock") == "cpu" else None
    with (cProfile.Profile(timer) if timer else cProfile.Profile()) as profile:  # the whole life, start-up too
        asyncio.run(_serve_async(kind, options, ready))
    profile.dump_stats(options["profile"])


async def _serve_async(kind: str, options: dict[str, Any], ready: Connection) -> None:
    from aiohttp import web

    if kind == "app":
        import dataclasses

        from web.app import create_app

        settings = dataclasses.replace(app_settings(options["dsn"], Path(options["data_dir"])),
                                       **options.get("settings", {}))
        app = create_app(settings, demo_data=bool(options.get("demo_data")))
    elif kind == "bare":
        from bench.bare_relay import create_app as create_bare_app

        app = create_bare_app()
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # As the CLI runs it (web.run_app(..., access_log=None)): no access log, default listen backlog.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        with GcPauses() as pauses:
            ready.send(runner.addresses[0][1])
            await stop.wait()
    finally:
        await runner.cleanup()
    ready.send(pauses.events)  # read by ServerProcess.stop()


@dataclass
class ServerProcess:
    """A server under test running in a spawned child process."""

    process: multiprocessing.process.BaseProcess
    port: int
    channel: Connection
    gc_events: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful: sockets closed, pool closed), then SIGKILL if it does not exit in time."""
        if self.process.is_alive():
            os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(EOFError, OSError):
                if self.channel.poll(timeout):
                    self.gc_events = self.channel.recv()
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


@contextlib.contextmanager
def server_process(kind: str, startup_timeout: float = 60.0, **options: Any) -> Iterator[ServerProcess]:
    """Run `kind` ("app" or "bare") in a spawned child; yields once it listens; stops it on exit."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_serve, args=(kind, options, send), name=f"bench-{kind}-server", daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(startup_timeout):
            raise RuntimeError(f"{kind} server did not start within {startup_timeout:.0f} s")
        port = receive.recv()
    except EOFError:
        process.join(5)
        raise RuntimeError(f"{kind} server exited during start-up (exit code {process.exitcode})") from None
    server = ServerProcess(process, int(port), receive)
    try:
        yield server
    finally:
        server.stop()
