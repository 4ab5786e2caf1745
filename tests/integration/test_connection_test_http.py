"""The device check's connection test over HTTP: a real aiortc client offers to the server's echo peer,
gets its media back, and reads the server's measurements; errors are precise and tests are private."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import aioice.ice
import pytest

from media.synthetic import PatternVideoTrack, SyntheticClient, ToneAudioTrack
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import patient_link
from web.echo_routes import tests_key

pytestmark = pytest.mark.media


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both aiortc peers gather 127.0.0.1 only (aioice leaves loopback out by default)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def client() -> AsyncIterator[SyntheticClient]:
    c = SyntheticClient(video=PatternVideoTrack(320, 240, fps=15), audio=ToneAudioTrack())
    yield c
    await c.close()


async def test_media_sent_to_the_echo_peer_comes_back_and_is_measured(
        running_app: RunningApp, client: SyntheticClient) -> None:
    token = await patient_link(running_app, 1)
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        offer = await client.offer()
        r = await http.post(f"{running_app.url}/api/p/connection-test", json=dict(offer), headers=auth)
        assert r.status == 201, await r.text()
        answer = await r.json()
        await client.accept_answer({"type": answer["type"], "sdp": answer["sdp"]})
        sink = client.sink("video")
        await asyncio.wait_for(sink.first_frame.wait(), 20)  # our own video, echoed by the server
        async with asyncio.timeout(20):
            while True:
                r = await http.get(f"{running_app.url}/api/p/connection-test/{answer['test']}", headers=auth)
                stats = await r.json()
                if stats["video_frames"] > 0 and stats["connection_state"] == "connected":
                    break
                await asyncio.sleep(0.2)
        assert r.status == 200 and stats["closed"] is False

        other = {"Authorization": f"Bearer {await patient_link(running_app, 2)}"}
        r = await http.get(f"{running_app.url}/api/p/connection-test/{answer['test']}", headers=other)
        assert r.status == 404  # another patient cannot read this test

        r = await http.delete(f"{running_app.url}/api/p/connection-test/{answer['test']}", headers=auth)
        assert r.status == 204
        r = await http.get(f"{running_app.url}/api/p/connection-test/{answer['test']}", headers=auth)
        assert r.status == 404
    assert len(running_app.app[tests_key].peers) == 0


async def test_connection_test_refuses_bad_requests_precisely(running_app: RunningApp) -> None:
    token = await patient_link(running_app, 1)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{running_app.url}/api/p/connection-test"
    async with aiohttp.ClientSession() as http:
        r = await http.post(url, json={"type": "offer", "sdp": "v=0"})
        assert r.status == 401 and (await r.json())["error"]["code"] == "not_authenticated"
        r = await http.post(url, json={"type": "answer", "sdp": "v=0"}, headers=auth)
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"
        r = await http.post(url, json={"type": "offer", "sdp": "hello"}, headers=auth)
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_offer"
        r = await http.post(url, data=b"{", headers={**auth, "Content-Type": "application/json"})
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_json"
    assert len(running_app.app[tests_key].peers) == 0  # nothing left running after refusals
