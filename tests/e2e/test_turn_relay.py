"""TURN proven: Debian's coturn on loopback with `use-auth-secret` accepts the time-limited credentials the
app hands out (DONGHANH_TURN_SECRET), and a call whose two Chromium pages may use relayed paths only
(DONGHANH_ICE_TRANSPORT_POLICY=relay) decodes video on both sides over a relay candidate pair."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import RunningApp, make_settings
from tests.e2e.conftest import new_page
from tests.e2e.test_consultation import doctor_signs_in, link_for, patient_reaches_waiting_room, wait_for_decoded_video
from web.settings import Settings

TURNSERVER = os.environ.get("DONGHANH_TURNSERVER", "/usr/bin/turnserver")
MAGIC_COOKIE = 0x2112A442

# The selected candidate pair of the page's call, with its local and remote candidate types.
SELECTED_PAIR = """async () => {
  const call = window.dhCall;
  if (!call || !call.pc) return null;
  const report = await call.pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
  });
  if (!pair) report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
  });
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId), remote = byId.get(pair.remoteCandidateId);
  return { state: pair.state, local: local && local.candidateType, remote: remote && remote.candidateType,
           relayProtocol: local && local.relayProtocol, bytes: pair.bytesReceived };
}"""


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stun_answers(port: int, timeout_s: float) -> bool:
    """Does a STUN binding request to 127.0.0.1:port get an answer within `timeout_s`?"""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        s.sendto(request, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except (TimeoutError, ConnectionRefusedError):
            return False
    return data[8:20] == transaction


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """Debian's coturn on loopback, REST credentials only (`use-auth-secret`); stopped after the test."""
    if shutil.which(TURNSERVER) is None and not os.path.exists(TURNSERVER):
        pytest.skip(f"coturn not found at {TURNSERVER} (apt-get install coturn)")
    turn = Coturn(port=_free_udp_port(), secret=secrets.token_urlsafe(24))
    relay_low = 50_000 + secrets.randbelow(14_000)  # a window of its own: other tests may run a coturn too
    log_path = tmp_path / "turnserver.log"
    args = [TURNSERVER, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={turn.port}", f"--min-port={relay_low}", f"--max-port={relay_low + 400}",
            "--use-auth-secret", f"--static-auth-secret={turn.secret}", "--realm=donghanh.test",
            "--fingerprint", "--no-tcp-relay", "--no-cli", "--no-tls", "--no-dtls",
            # Both browsers are on this machine: their relayed addresses are loopback peers of each other.
            "--allow-loopback-peers",
            f"--pidfile={tmp_path / 'turnserver.pid'}", f"--db={tmp_path / 'turndb'}",
            f"--log-file={log_path}", "--simple-log"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # each attempt waits up to 0.1 s for coturn's answer
            if proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {proc.returncode}; see {log_path}")
            if _stun_answers(turn.port, 0.1):
                break
        else:
            raise RuntimeError(f"turnserver did not answer STUN on port {turn.port}")
        yield turn
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def app_settings(dsn: str, tmp_path: Path, coturn: Coturn) -> Settings:
    return make_settings(dsn, tmp_path, turn_urls=(coturn.url,), turn_secret=coturn.secret,
                         ice_transport_policy="relay")


async def relayed_pair(page: Page) -> dict[str, object]:
    """Poll getStats until the call has a selected candidate pair that succeeded."""
    async with asyncio.timeout(30):
        while True:
            pair = await page.evaluate(SELECTED_PAIR)
            if pair and pair["state"] == "succeeded":
                return pair  # type: ignore[no-any-return]
            await asyncio.sleep(0.25)


async def test_call_through_coturn_only_decodes_video_on_both_sides_over_a_relay_pair(
        running_app: RunningApp, browser: Browser) -> None:
    patient_ctx, patient = await new_page(browser, running_app.url)
    doctor_ctx, doctor = await new_page(browser, running_app.url)
    try:
        await patient_reaches_waiting_room(patient, await link_for(running_app, 1))
        await doctor_signs_in(doctor)
        await expect(doctor.locator("#queue-body tr").first).to_contain_text("Giàng A Páo", timeout=30_000)
        await doctor.click("#claim-next")
        await doctor.wait_for_url("**/staff/c/*")
        await expect(patient.locator("#step-call")).to_be_visible(timeout=30_000)

        for page in (patient, doctor):  # the call's peer connection exists once the peer is announced
            await page.wait_for_function("() => !!(window.dhCall && window.dhCall.pc)", timeout=30_000)
        policies = [await page.evaluate("window.dhCall.pc.getConfiguration().iceTransportPolicy")
                    for page in (patient, doctor)]
        assert policies == ["relay", "relay"]
        assert await wait_for_decoded_video(patient) > 0
        assert await wait_for_decoded_video(doctor) > 0
        for page in (patient, doctor):
            pair = await relayed_pair(page)
            assert pair["local"] == "relay" and pair["remote"] == "relay", pair
            assert pair["relayProtocol"] == "udp", pair
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
