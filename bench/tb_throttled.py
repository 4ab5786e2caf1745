"""Video-observed dose clips over a throttled 3G link with a dropped connection (issue 11 point 3): does the
chosen design (MediaRecorder in the browser + the resumable chunked upload) get every clip in, intact, with
its contact sheet?

Real app in a child process (embedded PostgreSQL, demo data), real Chromium with the fake camera. Each clip:
a patient's `/tb/<token>` page records ~`--seconds` s and sends it, with the page's network throttled by
Chrome DevTools' own "Slow 3G" preset (Network.emulateNetworkConditions: 2 s latency, 400 kbit/s each way,
as DevTools defines it) and every TCP connection to the server going through a proxy in this process that,
once `--drop-at` of the clip's bytes have passed, cuts every open connection mid-chunk and refuses new ones for
`--outage` s (the phone losing its signal). A clip counts as arrived intact when the page says it arrived,
the server stored exactly one current clip for the day whose sha256 equals the sha256 of the bytes the
browser recorded (read in the page), it decodes (PyAV) to the recorded length ± 10%, and its contact sheet
has 6 tiles. Also the server's CPU per clip (the whole upload and the check, from /proc) and the time from
"stop" to "arrived".

    python bench/tb_throttled.py [--clips 8] [--seconds 10] [--parallel 2]

Writes bench/results/tb_throttled.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from playwright.async_api import Browser, async_playwright  # noqa: E402

from bench import harness  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# Chrome DevTools' "Slow 3G" preset (front_end/core/sdk/NetworkManager.ts): 500 kbit/s × 0.8, latency 400 ms × 5.
SLOW_3G = {"offline": False, "latency": 2000, "downloadThroughput": 500 * 1000 / 8 * 0.8,
           "uploadThroughput": 500 * 1000 / 8 * 0.8}

# Keeps every Blob the page builds from parts (the recorded clip), so the bench can hash what was recorded.
KEEP_BLOBS = """(() => {
  const Original = window.Blob;
  window.__blobs = [];
  window.Blob = class extends Original {
    constructor(parts, options) { super(parts, options); window.__blobs.push(this); }
  };
})();"""
RECORDED_SHA256 = """async () => {
  const blob = window.__blobs[window.__blobs.length - 1];
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""), blob.size];
}"""


@dataclass
class DropProxy:
    """A TCP proxy to the app that, once `drop_after` client bytes have passed, cuts every open connection
    and refuses new ones for `outage` seconds (once)."""

    target_port: int
    drop_after: int
    outage: float
    sent: int = 0
    dropped_at: float | None = None
    cut_connections: int = 0
    refused: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, harness.LOOPBACK, 0)
        return int(self.server.sockets[0].getsockname()[1])

    def _down(self) -> bool:
        return self.dropped_at is not None and time.monotonic() - self.dropped_at < self.outage

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down():
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(harness.LOOPBACK, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, count=True), self._pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool = False) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while data := await reader.read(16384):
                writer.write(data)
                await writer.drain()
                if count:
                    self.sent += len(data)
                    if self.dropped_at is None and self.sent >= self.drop_after:
                        self.dropped_at = time.monotonic()
                        self.cut_connections = len(self.writers) // 2
                        for w in list(self.writers):
                            w.transport.abort()
                        return
        writer.transport.abort()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            await self.server.wait_closed()


async def _cases(dsn: str, count: int) -> list[tuple[int, int, str]]:
    """(patient id, case id, link token) for `count` demo patients, each on treatment since 10 days ago."""
    from care.appointments import FACILITY_TZ
    from db import patients
    from db import tb as tb_db
    from db.audit import SYSTEM
    from web.auth import LinkSigner, issue_link

    today = datetime.now(FACILITY_TZ).date()
    con = await asyncpg.connect(dsn)
    await con.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        commune = await con.fetchval("SELECT min(id) FROM facility WHERE level = 'commune'")
        out = []
        for n in range(count):
            patient_id = await patients.create(con, facility_id=commune, name=f"Bệnh nhân lao {n}", sex=None,
                                               birth_year=1980, phone=None)
            case_id = await tb_db.register(con, SYSTEM, patient_id, commune, tb_db.NewCase(
                today - timedelta(days=12), "2HRZE/4HR", True, started_on=today - timedelta(days=10)))
            token, _ = await issue_link(con, LinkSigner(harness.BENCH_SECRET), patient_id, 7200)
            out.append((patient_id, case_id, token))
        return out
    finally:
        await con.close()


async def _one_clip(browser: Browser, app_port: int, token: str, seconds: float, drop_at: float,
                    outage: float, timeout_s: float, network: dict[str, Any] | None = SLOW_3G,
                    proxy: Any = None) -> dict[str, Any]:
    """One clip recorded and sent from a patient's page. `network` is the DevTools emulation (None: none);
    `proxy` replaces the DropProxy (anything with its start/sent/drop_after/dropped_at/cut_connections/refused/
    close, e.g. bench/tb_aiortc_throttled.py's ThrottledLink, which throttles in userspace instead)."""
    if proxy is None:
        proxy = DropProxy(app_port, drop_after=1 << 62, outage=outage)
    port = await proxy.start()
    context = await browser.new_context(base_url=f"http://{harness.LOOPBACK}:{port}",
                                        permissions=["camera", "microphone"])
    page = await context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    failed_requests: list[str] = []
    page.on("requestfailed", lambda r: failed_requests.append(r.method))
    out: dict[str, Any] = {"arrived": False}
    try:
        await page.add_init_script(KEEP_BLOBS)
        await page.goto(f"/tb/{token}")
        if network is not None:
            cdp = await context.new_cdp_session(page)
            await cdp.send("Network.enable")
            await cdp.send("Network.emulateNetworkConditions", network)
        await page.click("#record")
        await page.wait_for_selector("#stop", state="visible", timeout=30_000)
        await page.wait_for_timeout(seconds * 1000)  # the clip's length: the patient holds the phone this long
        before_upload = proxy.sent
        stopped = time.perf_counter()
        await page.click("#stop")
        # The link drops once `drop_at` of the recorded clip's bytes have gone up (the POST that opens the
        # upload takes a 2 s round trip first, time enough to read the clip's size).
        recorded = await page.wait_for_function(
            "() => window.__blobs.length && window.__blobs[window.__blobs.length - 1].size")
        if drop_at > 0:
            proxy.drop_after = before_upload + int(drop_at * await recorded.json_value())
        try:
            await page.wait_for_selector("body[data-sent=true]", timeout=timeout_s * 1000)
            out["arrived"] = True
            out["stop_to_arrived_s"] = round(time.perf_counter() - stopped, 2)
        except Exception as exc:  # noqa: BLE001 - a clip that does not arrive is the figure, not a crash
            out["error"] = f"{type(exc).__name__}: {await page.locator('#progress').text_content()}"
        sha, size = await page.evaluate(RECORDED_SHA256)
        out.update({"recorded_sha256": sha, "recorded_bytes": size, "dropped": proxy.dropped_at is not None,
                    "cut_connections": proxy.cut_connections, "refused_connections": proxy.refused,
                    "failed_requests": len(failed_requests),
                    "progress": await page.locator("#progress").text_content()})
    finally:
        await context.close()
        await proxy.close()
    return out


def _check_stored(data_dir: Path, clip: asyncpg.Record | None, recorded: dict[str, Any], seconds: float) -> bool:
    from media.clip import MAX_CLIP_SECONDS, check_clip, sheet_tiles

    if clip is None or clip["sha256"] != recorded.get("recorded_sha256"):
        return False
    path, sheet = data_dir / clip["path"], data_dir / clip["sheet_path"]
    if not (path.exists() and sheet.exists()) or path.stat().st_size != recorded["recorded_bytes"]:
        return False
    checked = check_clip(path, MAX_CLIP_SECONDS)
    return bool(abs(checked.info.duration_s - clip["duration_s"]) < 0.5
                and duration_ok(checked.info.duration_s, seconds)
                and sheet_tiles(sheet.read_bytes())[0] == 6)


def duration_ok(duration_s: float, seconds: float) -> bool:
    """The clip's decoded length is what was recorded ± 10% (the page's stop may land up to 1.5 s late)."""
    return 0.9 * seconds <= duration_s <= 1.1 * (seconds + 1.5)


async def judge_stored(con: asyncpg.Connection, data_dir: Path, case_id: int, outcome: dict[str, Any],
                       seconds: float) -> None:
    """Adds `stored_clips` and `intact` (arrived, one clip, day video_pending, file checked) to `outcome`."""
    rows = await con.fetch("SELECT * FROM tb_clip WHERE case_id = $1", case_id)
    current = [r for r in rows if r["current"]]
    day = await con.fetchval("SELECT status FROM tb_dose WHERE case_id = $1 ORDER BY taken_on DESC LIMIT 1",
                             case_id)
    outcome["stored_clips"] = len(rows)
    outcome["intact"] = bool(outcome["arrived"] and len(rows) == 1 and day == "video_pending"
                             and _check_stored(data_dir, current[0] if current else None, outcome, seconds))


async def run(args: argparse.Namespace, dsn: str, data_dir: Path, server: harness.ServerProcess) -> dict[str, Any]:
    cases = await _cases(dsn, args.clips)
    results: list[dict[str, Any]] = []
    cpu: list[float] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for first in range(0, len(cases), args.parallel):
                batch = cases[first:first + args.parallel]
                before = server.cpu_seconds()
                outcomes = await asyncio.gather(*(
                    _one_clip(browser, server.port, token, args.seconds, args.drop_at, args.outage,
                              args.timeout) for _, _, token in batch))
                cpu.append((server.cpu_seconds() - before) / len(batch))
                con = await asyncpg.connect(dsn)
                try:
                    for (_, case_id, _), outcome in zip(batch, outcomes, strict=True):
                        await judge_stored(con, data_dir, case_id, outcome, args.seconds)
                        results.append(outcome)
                        print(f"  clip {len(results)}: arrived={outcome['arrived']} intact={outcome['intact']} "
                              f"dropped={outcome['dropped']} cut={outcome['cut_connections']} "
                              f"stop→arrived={outcome.get('stop_to_arrived_s')} s", file=sys.stderr, flush=True)
                finally:
                    await con.close()
        finally:
            await browser.close()
    arrived = [r for r in results if r["arrived"]]
    return {
        "clips": len(results), "arrived": len(arrived), "intact_with_contact_sheet": sum(r["intact"] for r in results),
        "dropped_mid_upload": sum(r["dropped"] for r in results),
        "connections_cut": sum(r["cut_connections"] for r in results),
        "connections_refused_during_outage": sum(r["refused_connections"] for r in results),
        "failed_browser_requests": sum(r["failed_requests"] for r in results),
        "recorded_bytes_median": statistics.median(r["recorded_bytes"] for r in results) if results else 0,
        "stop_to_arrived_s_median": round(statistics.median(r["stop_to_arrived_s"] for r in arrived), 1)
        if arrived else None,
        "stop_to_arrived_s_max": max((r["stop_to_arrived_s"] for r in arrived), default=None),
        "server_cpu_s_per_clip_median": round(statistics.median(cpu), 3) if cpu else None,
        "per_clip": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length per clip")
    parser.add_argument("--parallel", type=int, default=2, help="clips recorded and sent at once")
    parser.add_argument("--drop-at", type=float, default=0.4, help="share of the clip sent when the link drops")
    parser.add_argument("--outage", type=float, default=8.0, help="seconds the link stays down")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a clip may take to arrive")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "tb_throttled", "date": harness.now_iso(), "machine": harness.machine(),
                              "command": harness.command_line(argv), "load_average_before": harness.load_average(),
                              "network": {"preset": "DevTools Slow 3G", **SLOW_3G},
                              "drop": {"at_share_of_clip": args.drop_at, "outage_s": args.outage},
                              "method": (__doc__ or "").split("\n\n")[1].replace("\n", " ").strip()}
    with harness.embedded_database() as (dsn, tmp), \
            harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app"), demo_data=True) as server:
        result.update(asyncio.run(run(args, dsn, tmp / "app", server)))
    harness.finish(Path(__file__).resolve().parent / "results" / "tb_throttled.json", result)
    return 0 if result["intact_with_contact_sheet"] == result["clips"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
