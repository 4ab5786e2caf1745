"""Echo peer bookkeeping that needs no connection: stats maths, limits, errors."""

from __future__ import annotations

import dataclasses

import pytest

from media.echo import EchoPeer, EchoPeers, EchoStats
from media.errors import MediaError

pytestmark = pytest.mark.media

STATS = EchoStats(
    rtt_ms=None,
    packets_received=0,
    packets_lost=0,
    bytes_received=0,
    packets_sent=0,
    bytes_sent=0,
    audio_tracks=1,
    video_tracks=1,
    audio_frames=0,
    video_frames=0,
    duration_s=0.0,
    connected_s=None,
    connection_state="new",
    closed=False,
)


def test_loss_fraction_is_unknown_before_any_packet() -> None:
    assert STATS.loss_fraction is None
    assert dataclasses.replace(STATS, packets_received=95, packets_lost=5).loss_fraction == 0.05


def test_receive_bitrate_counts_only_connected_time() -> None:
    assert STATS.receive_kbps is None
    assert dataclasses.replace(STATS, bytes_received=125_000, connected_s=2.0).receive_kbps == 500


def test_registry_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        EchoPeers(max_peers=0)
    with pytest.raises(ValueError):
        EchoPeers(max_duration_s=0)


def test_registry_checks_static_ice_servers_at_construction() -> None:
    with pytest.raises(ValueError):
        EchoPeers(ice_servers=[{"urls": "stun:"}])


async def test_junk_offer_is_refused_without_taking_a_slot() -> None:
    peers = EchoPeers(max_peers=1)
    with pytest.raises(MediaError) as refused:
        await peers.open({"type": "offer"})
    assert refused.value.code == "bad_offer"
    assert len(peers) == 0
    with pytest.raises(MediaError) as missing:
        peers.get("nope")
    assert missing.value.code == "not_found"


async def test_unanswered_peer_closes_idempotently_with_empty_stats() -> None:
    closed: list[EchoPeer] = []
    peer = EchoPeer(on_close=closed.append)
    await peer.close()
    await peer.close()
    await peer.wait_closed()
    stats = await peer.stats()
    assert peer.closed and stats.closed and stats.packets_received == 0
    assert closed == [peer]
    with pytest.raises(MediaError) as late:
        await peer.answer({"sdp": "v=0\r\n", "type": "offer"})
    assert late.value.code == "closed"
