"""Both recording designs of issue 11 point 3 over the same throttled link with the same dropped connection, in
one run: how many 10 s clips arrive whole, how much of each is kept, and the server's CPU per clip.

The link is userspace, so it shapes WebRTC too (DevTools' emulation, used by bench/tb_throttled.py, does not
touch WebRTC's UDP): every connection the browser makes goes through `ThrottledLink`, TCP proxies that share
one bottleneck per direction (`--kbit` kbit/s, a 64 KiB queue, then `--delay-ms` one-way delay: 400 kbit/s and
a 2 s round trip by default, DevTools' "Slow 3G") and, once, cut every open connection and refuse new ones for
`--outage` s once 40% of the clip has crossed the link.

1. Chosen: the real app's `/tb/<token>` page (MediaRecorder + the resumable chunked upload), driven by
   bench/tb_throttled.py's `_one_clip` through the link instead of DevTools; the drop comes once 40% of the
   recorded clip's bytes have reached the server. Judged as there: the page says it arrived, one clip stored
   with the sha256 of what the browser recorded, decodes to the recorded length ± 10%, 6-tile contact sheet.
2. Alternative: bench/tb_recording_designs.py's aiortc recording peer (aiortc `MediaRecorder`, then the same
   check and contact sheet). The page may use relayed candidates only (`iceTransportPolicy: "relay"`) through a
   local coturn reached over TURN/TCP through the link (`turn:127.0.0.1:PORT?transport=tcp`), so all its media
   and its HTTP share the bottleneck; the drop comes 40% into the recording (4 s of 10). The page records
   `--seconds` s from "connected", then stops (retrying its stop request while the link is down). Judged the
   same way: the recording arrives, decodes to the recorded length ± 10%, 6-tile contact sheet; the length
   actually kept is reported.

The two designs run side by side, one clip of each at a time on links of their own with the same profile,
`--clips` pairs. Server CPU per clip: the app process (design 1) and the peer process (design 2; coturn, which a
direct UDP path would not need, is not counted), from /proc over the pair.

    python bench/tb_aiortc_throttled.py [--clips 5] [--seconds 10]

Writes bench/results/tb_aiortc_throttled.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from playwright.async_api import Browser, async_playwright  # noqa: E402

from bench import harness  # noqa: E402
from bench.tb_recording_designs import _cpu_seconds, _peer_main  # noqa: E402
from bench.tb_throttled import _cases, _one_clip, duration_ok, judge_stored  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.test_turn_relay import TURNSERVER  # noqa: E402
from web.auth import turn_credentials  # noqa: E402

CHUNK = 4096  # bytes read at once: 80 ms of the link at 400 kbit/s


@dataclass
class _Direction:
    """One direction's bottleneck: bytes leave one after another at `rate` B/s, then take `delay` s."""

    rate: float
    delay: float
    queue_bytes: int
    free_at: float = 0.0  # when the bottleneck has sent everything queued so far

    def schedule(self, size: int) -> tuple[float, float]:
        """(wait before reading more, delivery time) for `size` bytes entering the queue now."""
        now = time.monotonic()
        self.free_at = max(now, self.free_at) + size / self.rate
        backlog_s = self.free_at - now - self.queue_bytes / self.rate
        return max(0.0, backlog_s), self.free_at + self.delay


@dataclass
class ThrottledLink:
    """A phone's link, shared by every connection it carries: throttled and delayed per direction, cut once.

    `listen(port)` opens a proxy to 127.0.0.1:port over this link. `start()`, `sent` (client bytes delivered),
    `drop_after`, `dropped_at`, `cut_connections`, `refused` and `close()` are bench/tb_throttled.py's
    DropProxy's, so its `_one_clip` can use the link. `cut()` drops the link now."""

    target_port: int
    kbit: float
    delay_s: float
    outage: float
    queue_bytes: int = 64 * 1024
    drop_after: int = 1 << 62
    sent: int = 0
    dropped_at: float | None = None
    cut_connections: int = 0
    refused: int = 0
    up: _Direction = field(init=False)
    down: _Direction = field(init=False)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    servers: list[asyncio.Server] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.up = _Direction(self.kbit * 1000 / 8, self.delay_s, self.queue_bytes)
        self.down = _Direction(self.kbit * 1000 / 8, self.delay_s, self.queue_bytes)

    async def start(self) -> int:
        return await self.listen(self.target_port)

    async def listen(self, target_port: int) -> int:
        server = await asyncio.start_server(lambda r, w: self._serve(r, w, target_port), harness.LOOPBACK, 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def _down(self) -> bool:
        return self.dropped_at is not None and time.monotonic() - self.dropped_at < self.outage

    def cut(self) -> None:
        if self.dropped_at is not None:
            return
        self.dropped_at = time.monotonic()
        self.cut_connections = len(self.writers) // 2
        for w in list(self.writers):
            w.transport.abort()
        for d in (self.up, self.down):  # what was queued on the link is lost with it
            d.free_at = 0.0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target_port: int) -> None:
        if self._down():
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(harness.LOOPBACK, target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, self.up, count=True),
                                 self._pipe(up_reader, writer, self.down))
        finally:
            self.writers -= {writer, up_writer}
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: _Direction,
                    count: bool = False) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(queue, writer, count))
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(CHUNK):
                    wait, due = direction.schedule(len(data))
                    queue.put_nowait((due, data))
                    if wait:
                        await asyncio.sleep(wait)  # the link's queue is full: stop reading (TCP backpressure)
            queue.put_nowait(None)
            await deliver
        finally:
            deliver.cancel()

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter,
                       count: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
                if count:
                    self.sent += len(data)
                    if self.dropped_at is None and self.sent >= self.drop_after:
                        self.cut()
                        return
            writer.close()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for w in list(self.writers):
            w.transport.abort()
        for server in self.servers:
            await server.wait_closed()


# ---- coturn on loopback, TCP only -------------------------------------------------------------------------

@dataclass(frozen=True)
class Turn:
    port: int
    secret: str

    def config(self, port: int) -> dict[str, Any]:
        """The page's RTCPeerConnection configuration: relayed candidates only, TURN over TCP at `port` (the
        link's proxy to coturn), with coturn's REST credentials."""
        username, password = turn_credentials(self.secret, 3600)
        return {"iceTransportPolicy": "relay",
                "iceServers": [{"urls": [f"turn:127.0.0.1:{port}?transport=tcp"],
                                "username": username, "credential": password}]}


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((harness.LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def coturn(tmp: Path) -> Iterator[Turn]:
    """coturn as tests/e2e/test_turn_relay.py starts it (`use-auth-secret`), listening on TCP only."""
    turn = Turn(port=_free_tcp_port(), secret=secrets.token_urlsafe(24))
    relay_low = 50_000 + secrets.randbelow(14_000)
    log_path = tmp / "turnserver.log"
    proc = subprocess.Popen(
        [TURNSERVER, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={turn.port}",
         f"--min-port={relay_low}", f"--max-port={relay_low + 400}", "--use-auth-secret",
         f"--static-auth-secret={turn.secret}", "--realm=donghanh.test", "--fingerprint", "--no-udp",
         "--no-tcp-relay", "--no-cli", "--no-tls", "--no-dtls", "--allow-loopback-peers",
         f"--pidfile={tmp / 'turnserver.pid'}", f"--db={tmp / 'turndb'}", f"--log-file={log_path}", "--simple-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(OSError), socket.create_connection((harness.LOOPBACK, turn.port), 0.1):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"turnserver did not listen on TCP port {turn.port}")
        yield turn
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- design 2 over the link --------------------------------------------------------------------------------

SELECTED = """async () => {
  const report = await window.pc.getStats();
  const byId = new Map(); report.forEach((s) => byId.set(s.id, s));
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
  });
  const local = pair && byId.get(pair.localCandidateId);
  return local ? { type: local.candidateType, relayProtocol: local.relayProtocol || null } : null;
}"""


async def _peer_clip(browser: Browser, args: argparse.Namespace, peer_port: int, turn: Turn) -> dict[str, Any]:
    link = ThrottledLink(peer_port, args.kbit, args.delay_ms / 1000, args.outage)
    page_port = await link.start()
    turn_port = await link.listen(turn.port)
    context = await browser.new_context(base_url=f"http://{harness.LOOPBACK}:{page_port}",
                                        permissions=["camera", "microphone"])
    page = await context.new_page()
    page.set_default_timeout(args.timeout * 1000)
    out: dict[str, Any] = {"arrived": False, "kept_s": 0.0}
    config = turn.config(turn_port)
    try:
        await page.goto("/")
        started = time.perf_counter()
        await asyncio.wait_for(page.evaluate("(config) => window.startClip(config)", config), args.timeout)
        out["connect_s"] = round(time.perf_counter() - started, 1)
        out["path"] = await page.evaluate(SELECTED)
        drop = (asyncio.get_running_loop().call_later(args.drop_at * args.seconds, link.cut)
                if args.drop_at > 0 else None)
        await page.wait_for_timeout(args.seconds * 1000)  # the clip's length, from "connected"
        if drop is not None:
            drop.cancel()
        out["state_at_stop"] = await page.evaluate("window.pc.connectionState")
        stopped = time.perf_counter()
        result = await asyncio.wait_for(page.evaluate("window.stopClip()"), args.timeout)
        out["stop_to_checked_s"] = round(time.perf_counter() - stopped, 1)
        out.update(result)
        out["arrived"] = "error" not in result
        out["kept_s"] = round(float(result.get("duration_s", 0.0)), 2)
    except Exception as exc:  # noqa: BLE001 - a clip that does not arrive is the figure, not a crash
        out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        out.update({"dropped": link.dropped_at is not None, "cut_connections": link.cut_connections,
                    "refused_connections": link.refused})
        await context.close()
        await link.close()
    out["intact"] = bool(out["arrived"] and duration_ok(out["kept_s"], args.seconds) and out.get("sheet_tiles") == 6)
    return out


async def run(args: argparse.Namespace, dsn: str, data_dir: Path, server: harness.ServerProcess, peer_port: int,
              peer_pid: int, turn: Turn) -> dict[str, Any]:
    cases = await _cases(dsn, args.clips)
    chosen: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _, case_id, token in cases:
                app_before, peer_before = server.cpu_seconds(), _cpu_seconds(peer_pid)
                link = ThrottledLink(server.port, args.kbit, args.delay_ms / 1000, args.outage)
                one, two = await asyncio.gather(
                    _one_clip(browser, server.port, token, args.seconds, args.drop_at, args.outage, args.timeout,
                              network=None, proxy=link),
                    _peer_clip(browser, args, peer_port, turn))
                one["server_cpu_s"] = round(server.cpu_seconds() - app_before, 3)
                two["server_cpu_s"] = round(_cpu_seconds(peer_pid) - peer_before, 3)
                con = await asyncpg.connect(dsn)
                try:
                    await judge_stored(con, data_dir, case_id, one, args.seconds)
                finally:
                    await con.close()
                chosen.append(one)
                peer.append(two)
                print(f"  pair {len(chosen)}: chosen intact={one['intact']} dropped={one['dropped']} "
                      f"stop→arrived={one.get('stop_to_arrived_s')} s | aiortc peer intact={two['intact']} "
                      f"dropped={two['dropped']} kept={two['kept_s']} s path={two.get('path')} "
                      f"state@stop={two.get('state_at_stop')} {two.get('error', '')}", file=sys.stderr, flush=True)
        finally:
            await browser.close()

    def median(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    chosen_ok, peer_ok = sum(r["intact"] for r in chosen), sum(r["intact"] for r in peer)
    chosen_cpu, peer_cpu = median(chosen, "server_cpu_s"), median(peer, "server_cpu_s")
    return {
        "clips_per_design": len(cases), "clip_seconds": args.seconds,
        "chosen_intact": chosen_ok, "aiortc_peer_intact": peer_ok,
        "chosen_success_share": round(chosen_ok / len(chosen), 2) if chosen else None,
        "aiortc_peer_success_share": round(peer_ok / len(peer), 2) if peer else None,
        "ratio_success_aiortc_peer_over_chosen": round(peer_ok / chosen_ok, 2) if chosen_ok else None,
        "chosen_dropped": sum(r["dropped"] for r in chosen), "aiortc_peer_dropped": sum(r["dropped"] for r in peer),
        "chosen_stop_to_arrived_s_median": median([r for r in chosen if r["arrived"]], "stop_to_arrived_s"),
        "aiortc_peer_kept_s_median": median(peer, "kept_s"),
        "aiortc_peer_kept_s_min": min((r["kept_s"] for r in peer), default=None),
        "aiortc_peer_kept_s_max": max((r["kept_s"] for r in peer), default=None),
        "aiortc_peer_kept_share_median": round((median(peer, "kept_s") or 0) / args.seconds, 2),
        "aiortc_peer_connect_s_median": median(peer, "connect_s"),
        "chosen_server_cpu_s_per_clip": chosen_cpu, "aiortc_peer_server_cpu_s_per_clip": peer_cpu,
        "ratio_cpu_aiortc_peer_over_chosen": round(peer_cpu / chosen_cpu, 1) if chosen_cpu and peer_cpu else None,
        "chosen": chosen, "aiortc_peer": peer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=5, help="clips per design")
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length per clip")
    parser.add_argument("--kbit", type=float, default=400.0, help="link rate each way, kbit/s")
    parser.add_argument("--delay-ms", type=float, default=1000.0, help="one-way delay (2 s round trip)")
    parser.add_argument("--drop-at", type=float, default=0.4,
                        help="share of the clip across the link when it drops (0: no drop)")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds the link stays down")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a step may take")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "tb_aiortc_throttled.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "tb_aiortc_throttled", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv), "load_average_before": harness.load_average(),
        "link": {"kbit_each_way": args.kbit, "one_way_delay_ms": args.delay_ms, "queue_bytes": 64 * 1024},
        "drop": {"at_share_of_clip": args.drop_at, "outage_s": args.outage},
        "method": (__doc__ or "").split("\n\n", 1)[1].split("\n\n    python")[0].replace("\n", " ").strip()}
    ctx = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dh-peer-") as out_dir, harness.embedded_database() as (dsn, tmp), \
            coturn(tmp) as turn, \
            harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app"), demo_data=True) as server:
        receive, send = ctx.Pipe(duplex=False)
        peer = ctx.Process(target=_peer_main, args=(out_dir, send), daemon=True)
        peer.start()
        try:
            if not receive.poll(60):
                raise RuntimeError("the aiortc peer did not start")
            result.update(asyncio.run(run(args, dsn, tmp / "app", server, receive.recv(), peer.pid or 0, turn)))
        finally:
            if peer.pid and peer.is_alive():
                os.kill(peer.pid, signal.SIGTERM)
            peer.join(20)
    result["run_s"] = round(time.perf_counter() - started, 1)
    harness.finish(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
