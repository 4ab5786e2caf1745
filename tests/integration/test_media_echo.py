"""The connection-test echo peer, end to end over loopback (no STUN).

A synthetic client (test pattern + tone) offers to an echo peer in the same
process and must get its own media back, decoded. 320x240 at 15 fps keeps the
transcoding cheap on a small CI machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aioice.ice
import pytest
from av import VideoFrame

from media.echo import EchoPeer, EchoPeers, EchoStats
from media.errors import MediaError, MediaErrorCode
from media.synthetic import PatternVideoTrack, SyntheticClient, ToneAudioTrack

pytestmark = [pytest.mark.media, pytest.mark.timeout(60)]

# Generous waits, not performance thresholds: a loaded CI machine may be slow
# to gather candidates, connect and produce a first keyframe.
FIRST_FRAME_TIMEOUT_S = 20.0


def make_client() -> SyntheticClient:
    return SyntheticClient(video=PatternVideoTrack(320, 240, fps=15), audio=ToneAudioTrack())


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gather 127.0.0.1 as the only host candidate.

    aioice leaves loopback out of host candidates, so without this the test
    would depend on the machine having another interface (a network-less CI
    sandbox has none) and would check an IPv6 pair as well.
    """

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", loopback)


@pytest.fixture
async def client() -> AsyncIterator[SyntheticClient]:
    client = make_client()
    yield client
    await client.close()


@pytest.fixture
async def echo_peers() -> AsyncIterator[EchoPeers]:
    peers = EchoPeers(max_peers=1)
    yield peers
    await peers.close_all()


async def connect(client: SyntheticClient, echo_peers: EchoPeers) -> EchoPeer:
    peer, answer = await echo_peers.open(await client.offer())
    await client.accept_answer(answer)
    return peer


async def wait_for_stats(peer: EchoPeer, ready: str) -> EchoStats:
    """Poll the peer's stats until ``ready`` (an attribute) is truthy.

    aiortc raises no event when RTCP arrives, so polling it is."""
    async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
        while True:
            stats = await peer.stats()
            if getattr(stats, ready):
                return stats
            await asyncio.sleep(0.1)


async def test_echo_returns_the_clients_video_and_audio(
    client: SyntheticClient, echo_peers: EchoPeers
) -> None:
    peer = await connect(client, echo_peers)

    async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
        await client.sink("video").wait_frames(5)
        await client.sink("audio").wait_frames(10)

    video = client.sink("video").last_frame
    assert isinstance(video, VideoFrame)
    assert (video.width, video.height) == (320, 240)
    stats = await wait_for_stats(peer, "rtt_ms")
    assert stats.connection_state == "connected"
    assert (stats.audio_tracks, stats.video_tracks) == (1, 1)
    assert stats.packets_received > 0
    assert stats.bytes_received > 0
    assert stats.packets_sent > 0
    assert stats.video_frames >= 5 and stats.audio_frames >= 10
    assert stats.rtt_ms is not None and stats.rtt_ms >= 0
    assert stats.receive_kbps is not None and stats.receive_kbps > 0
    assert not stats.closed


async def test_close_is_idempotent_and_keeps_final_stats(
    client: SyntheticClient, echo_peers: EchoPeers
) -> None:
    peer = await connect(client, echo_peers)
    await wait_for_stats(peer, "packets_received")

    await asyncio.gather(peer.close(), peer.close())
    await peer.close()

    assert peer.closed
    final = await peer.stats()
    assert final.closed and final.packets_received > 0
    assert final.connection_state == "connected"  # how the test ended
    assert await peer.stats() == final
    assert len(echo_peers) == 0
    with pytest.raises(MediaError) as not_found:
        echo_peers.get(peer.id)
    assert not_found.value.code == "not_found"
    async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
        await client.sink("video").ended.wait()  # the echo stopped


async def test_registry_refuses_a_peer_beyond_its_limit(
    client: SyntheticClient, echo_peers: EchoPeers
) -> None:
    first = await connect(client, echo_peers)
    assert echo_peers.get(first.id) is first
    second = make_client()
    try:
        offer = await second.offer()
        with pytest.raises(MediaError) as busy:
            await echo_peers.open(offer)
        assert busy.value.code == MediaErrorCode.BUSY
        assert str(busy.value.code) == "busy"  # what the JSON error carries
        assert len(echo_peers) == 1

        await first.close()
        # The slot is free again.
        peer, answer = await echo_peers.open(offer)
        await second.accept_answer(answer)
        assert echo_peers.get(peer.id) is peer
    finally:
        await second.close()


async def test_registry_rejects_an_offer_without_media(echo_peers: EchoPeers) -> None:
    data_only = SyntheticClient(video=False, audio=False)
    data_only.pc.createDataChannel("probe")
    try:
        with pytest.raises(MediaError) as rejected:
            await echo_peers.open(await data_only.offer())
    finally:
        await data_only.close()
    assert rejected.value.code == "bad_offer"
    assert len(echo_peers) == 0


async def test_peer_closes_itself_after_max_duration(client: SyntheticClient) -> None:
    peers = EchoPeers(max_peers=1, max_duration_s=0.5)
    try:
        peer = await connect(client, peers)
        async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
            await peer.wait_closed()
        assert peer.closed and len(peers) == 0
        final = await peer.stats()
        assert final.closed and final.duration_s >= 0.5
    finally:
        await peers.close_all()


async def test_closing_during_negotiation_refuses_the_offer_with_closed(
    client: SyntheticClient, echo_peers: EchoPeers
) -> None:
    opening = asyncio.create_task(echo_peers.open(await client.offer()))
    await asyncio.sleep(0)  # let open() register the peer and start answering
    assert len(echo_peers) == 1

    await echo_peers.close_all()

    with pytest.raises(MediaError) as closed:
        await opening
    assert closed.value.code == "closed"
    assert len(echo_peers) == 0
