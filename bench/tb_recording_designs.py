"""The two designs of issue 11 point 3, measured in one run with the same browser and camera: the server's CPU
per video-observed dose clip.

1. Chosen: MediaRecorder in the browser + the resumable chunked upload. The real app in a child process; a
   Chromium page (fake camera, 320x240) opens the patient's `/tb/<token>`, records `--seconds` s and sends
   it; the server receives the chunks, decodes the clip (PyAV), hashes it and makes the OpenCV contact sheet.
2. Alternative: WebRTC to an aiortc recording peer. A small aiohttp server in a child process (this file,
   bench only) answers the page's offer with an `RTCPeerConnection` whose incoming video track goes to
   aiortc's own `MediaRecorder` (aiortc.contrib.media, WebM/VP8); after `--seconds` s the page stops, the
   server stops the recorder and runs the same check and contact sheet on the file (the clip must be checked
   and reviewed as in design 1).

Per clip: the server process's user+system CPU from /proc, from before the page opens to the clip checked,
so each design pays for everything its server does (HTTP, ICE/DTLS/SRTP, jitter buffer, VP8 decode and
encode, or chunk writes, and the check). Loopback, no throttling: the throttled-link figure is
bench/tb_throttled.py (WebRTC's UDP is not throttled by DevTools' network emulation); both designs on one
userspace-throttled link, this peer's media relayed over TURN/TCP, are bench/tb_aiortc_throttled.py.

    python bench/tb_recording_designs.py [--clips 4] [--seconds 10]

Writes bench/results/tb_recording_designs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from playwright.async_api import Browser, async_playwright  # noqa: E402

from bench import harness  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PEER_PAGE = """<!doctype html><meta charset="utf-8"><title>aiortc recording peer</title>
<video id="v" muted playsinline></video>
<script>
window.startClip = async (config) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  const pc = new RTCPeerConnection(config || {});
  window.pc = pc;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
  });
  const answer = await (await fetch("/offer", { method: "POST", body: JSON.stringify(pc.localDescription) })).json();
  await pc.setRemoteDescription(answer);
  await new Promise((resolve, reject) => pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") resolve();
    if (pc.connectionState === "failed") reject(new Error("ICE failed"));
  }));
  window.stopClip = async () => {
    for (const track of stream.getTracks()) track.stop();
    for (let attempt = 0; ; attempt++) {  // a link that is down: retry, as a real page would
      try {
        const result = await (await fetch("/stop", { method: "POST" })).json();
        pc.close();
        return result;
      } catch (error) {
        if (attempt >= 60) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  };
};
</script>"""


# ---- the aiortc recording peer (child process) ------------------------------------------------------------

def _peer_main(out_dir: str, ready: Connection) -> None:
    asyncio.run(_peer_async(Path(out_dir), ready))


async def _peer_async(out_dir: Path, ready: Connection) -> None:
    from aiohttp import web
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRecorder

    from media.clip import MAX_CLIP_SECONDS, ClipError, check_clip, sheet_tiles

    state: dict[str, Any] = {}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PEER_PAGE, content_type="text/html")

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection()
        path = out_dir / f"peer-{len(os.listdir(out_dir))}.webm"
        recorder = MediaRecorder(str(path), format="webm")
        state.update(pc=pc, recorder=recorder, path=path)

        @pc.on("track")
        def on_track(track: Any) -> None:
            recorder.addTrack(track)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await recorder.start()
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def stop(request: web.Request) -> web.Response:
        await state["recorder"].stop()
        await state["pc"].close()
        return web.json_response(await asyncio.to_thread(_check, state["path"]))

    def _check(path: Path) -> dict[str, Any]:
        """What design 1's server does after the last byte: decode, check, contact sheet (and the hash)."""
        try:
            checked = check_clip(path, MAX_CLIP_SECONDS)
        except ClipError as exc:  # e.g. nothing decodable arrived: the figure, not a crash
            return {"error": exc.code, "duration_s": 0.0, "bytes": path.stat().st_size if path.exists() else 0}
        hashlib.sha256(path.read_bytes()).hexdigest()
        return {"duration_s": checked.info.duration_s, "bytes": path.stat().st_size, "width": checked.info.width,
                "height": checked.info.height, "sheet_bytes": len(checked.sheet_jpeg),
                "sheet_tiles": sheet_tiles(checked.sheet_jpeg)[0]}

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_post("/offer", offer)
    app.router.add_post("/stop", stop)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, harness.LOOPBACK, 0)
    await site.start()
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    ready.send(runner.addresses[0][1])
    await done.wait()
    await runner.cleanup()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the two designs, driven from Chromium ----------------------------------------------------------------

async def _chosen_clip(browser: Browser, server: harness.ServerProcess, token: str, seconds: float) -> dict[str, Any]:
    context = await browser.new_context(base_url=server.url, permissions=["camera", "microphone"])
    page = await context.new_page()
    try:
        before = server.cpu_seconds()
        await page.goto(f"/tb/{token}")
        await page.click("#record")
        await page.wait_for_selector("#stop", state="visible", timeout=30_000)
        await page.wait_for_timeout(seconds * 1000)  # the clip's length
        await page.click("#stop")
        await page.wait_for_selector("body[data-sent=true]", timeout=120_000)
        return {"cpu_s": server.cpu_seconds() - before}
    finally:
        await context.close()


async def _peer_clip(browser: Browser, port: int, pid: int, seconds: float) -> dict[str, Any]:
    context = await browser.new_context(base_url=f"http://{harness.LOOPBACK}:{port}",
                                        permissions=["camera", "microphone"])
    page = await context.new_page()
    try:
        before = _cpu_seconds(pid)
        await page.goto("/")
        await page.evaluate("window.startClip()")
        await page.wait_for_timeout(seconds * 1000)  # the clip's length
        result = await page.evaluate("window.stopClip()")
        return {"cpu_s": _cpu_seconds(pid) - before, **result}
    finally:
        await context.close()


async def _tokens(dsn: str, count: int) -> list[str]:
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
        tokens = []
        for n in range(count):
            patient_id = await patients.create(con, facility_id=commune, name=f"Bệnh nhân {n}", birth_year=1980)
            await tb_db.register(con, SYSTEM, patient_id, commune, tb_db.NewCase(
                today - timedelta(days=12), "2HRZE/4HR", True, started_on=today - timedelta(days=10)))
            tokens.append((await issue_link(con, LinkSigner(harness.BENCH_SECRET), patient_id, 7200))[0])
        return tokens
    finally:
        await con.close()


async def run(args: argparse.Namespace, dsn: str, server: harness.ServerProcess, peer_port: int,
              peer_pid: int) -> dict[str, Any]:
    tokens = await _tokens(dsn, args.clips)
    chosen: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for token in tokens:  # alternate, so both designs see the same machine load
                chosen.append(await _chosen_clip(browser, server, token, args.seconds))
                peer.append(await _peer_clip(browser, peer_port, peer_pid, args.seconds))
                print(f"  clip {len(chosen)}: chosen {chosen[-1]['cpu_s']:.2f} s CPU, "
                      f"aiortc peer {peer[-1]['cpu_s']:.2f} s CPU ({peer[-1]['duration_s']:.1f} s recorded)",
                      file=sys.stderr, flush=True)
        finally:
            await browser.close()
    chosen_cpu = statistics.median(c["cpu_s"] for c in chosen)
    peer_cpu = statistics.median(p["cpu_s"] for p in peer)
    return {"clips_per_design": len(tokens), "clip_seconds": args.seconds, "resolution": "320x240",
            "chosen_server_cpu_s_per_clip": round(chosen_cpu, 3),
            "aiortc_peer_server_cpu_s_per_clip": round(peer_cpu, 3),
            "ratio_aiortc_peer_over_chosen": round(peer_cpu / chosen_cpu, 1) if chosen_cpu else None,
            "aiortc_peer_recorded_s_median": round(statistics.median(p["duration_s"] for p in peer), 1),
            "aiortc_peer_clip_bytes_median": statistics.median(p["bytes"] for p in peer),
            "chosen": chosen, "aiortc_peer": peer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="clips per design")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "tb_recording_designs", "date": harness.now_iso(),
                              "machine": harness.machine(), "command": harness.command_line(argv),
                              "load_average_before": harness.load_average(),
                              "method": (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()}
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="dh-peer-") as out_dir, harness.embedded_database() as (dsn, tmp), \
            harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app"), demo_data=True) as server:
        receive, send = ctx.Pipe(duplex=False)
        peer = ctx.Process(target=_peer_main, args=(out_dir, send), daemon=True)
        peer.start()
        try:
            if not receive.poll(60):
                raise RuntimeError("the aiortc peer did not start")
            started = time.perf_counter()
            result.update(asyncio.run(run(args, dsn, server, receive.recv(), peer.pid or 0)))
            result["run_s"] = round(time.perf_counter() - started, 1)
        finally:
            if peer.pid and peer.is_alive():
                os.kill(peer.pid, signal.SIGTERM)
            peer.join(20)
    harness.finish(Path(__file__).resolve().parent / "results" / "tb_recording_designs.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
