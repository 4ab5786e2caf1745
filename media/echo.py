"""The connection-test peer behind the patient's device check.

The browser offers its camera and microphone to an :class:`EchoPeer`, which
sends every received track straight back. The patient sees and hears
themselves through the server, and the server measures what the clinic's
network will do to a real call: round-trip time, packet loss and bitrate
(:meth:`EchoPeer.stats`).

Echoing means decoding and re-encoding: one 640x480 VP8 stream costs most of a
core. So peers close themselves after ``max_duration_s`` (a forgotten tab
cannot keep a transcoder running) and :class:`EchoPeers` caps how many run at
once. Negotiation is not trickled: like aiortc itself, the answer is returned
once ICE gathering is complete and carries all candidates.

Typical use from a handler::

    peer, answer = await echo_peers.open(await request.json())
    ...
    stats = await echo_peers.get(peer_id).stats()
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)
from av.frame import Frame
from av.packet import Packet

from media.errors import MediaError, MediaErrorCode
from media.rtc import (
    IceServerLike,
    SessionDescriptionDict,
    description_dict,
    rtc_configuration,
    session_description,
)
from media.rtc import ice_servers as normalise_ice_servers

logger = logging.getLogger(__name__)

DEFAULT_MAX_DURATION_S = 60.0
DEFAULT_MAX_PEERS = 4
NEGOTIATION_GRACE_S = 10.0

# What aiortc raises on an offer it cannot use. Its SDP parser asserts on some
# malformed lines, hence AssertionError, IndexError and KeyError.
_REJECTED_OFFER_ERRORS = (
    ValueError,
    AssertionError,
    IndexError,
    KeyError,
    InvalidAccessError,
    OperationError,
    InternalError,
)


@dataclass(frozen=True, slots=True)
class EchoStats:
    """What the connection test measured, summed over all echoed tracks.

    ``packets_*``/``bytes_received`` describe the uplink (browser → server),
    ``packets_sent``/``bytes_sent`` the echo (server → browser).
    """

    rtt_ms: float | None
    """Round-trip time from RTCP receiver reports, averaged over the echoed
    streams; None until the browser has reported on an echoed stream."""
    packets_received: int
    packets_lost: int
    bytes_received: int
    """Bytes received on the transport (media plus RTCP and DTLS overhead)."""
    packets_sent: int
    bytes_sent: int
    audio_tracks: int
    video_tracks: int
    audio_frames: int
    """Audio frames decoded from the browser's tracks."""
    video_frames: int
    """Video frames decoded from the browser's tracks."""
    duration_s: float
    """Seconds from the peer's creation to now, or to its close."""
    connected_s: float | None
    """Seconds the connection was established, None if it never was."""
    connection_state: str
    """aiortc's connection state: new, connecting, connected, failed. In the
    final stats of a closed peer, the state the test ended in."""
    closed: bool

    @property
    def loss_fraction(self) -> float | None:
        """Fraction of uplink packets lost, None before any packet."""
        expected = self.packets_received + self.packets_lost
        return self.packets_lost / expected if expected > 0 else None

    @property
    def receive_kbps(self) -> float | None:
        """Average uplink bitrate while connected, in kbit/s."""
        if not self.connected_s:
            return None
        return self.bytes_received * 8 / 1000 / self.connected_s


class _CountingTrack(MediaStreamTrack):
    """Passes frames of a remote track through, counting them."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.frames = 0
        self._source = source

    async def recv(self) -> Frame | Packet[Any]:
        try:
            frame = await self._source.recv()
        except MediaStreamError:
            self.stop()
            raise
        self.frames += 1
        return frame


class EchoPeer:
    """One connection test: answers a browser's offer and echoes its media.

    Create it, call :meth:`answer` once with the browser's offer, read
    :meth:`stats` while it runs and :meth:`close` it when done. It closes
    itself after ``max_duration_s`` or when the connection fails; after that,
    :meth:`stats` keeps returning the final figures.
    """

    def __init__(
        self,
        *,
        ice_servers: Iterable[IceServerLike] = (),
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
        on_close: Callable[[EchoPeer], None] | None = None,
    ) -> None:
        if max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
        self.id = uuid.uuid4().hex
        self.max_duration_s = max_duration_s
        self._on_close = on_close
        self._pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._relay = MediaRelay()
        self._sources: list[_CountingTrack] = []
        self._echoes: list[MediaStreamTrack] = []
        self._created_at = time.monotonic()
        self._connected_at: float | None = None
        self._disconnected_at: float | None = None
        self._answered = False
        self._expiry: asyncio.Task[None] | None = None
        self._negotiation: asyncio.Task[RTCSessionDescription] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._final_stats: EchoStats | None = None
        self._closed = asyncio.Event()
        self._pc.on("connectionstatechange", self._on_connection_state)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has started (explicitly or by itself)."""
        return self._closing is not None

    async def answer(self, offer: Mapping[str, object] | RTCSessionDescription) -> SessionDescriptionDict:
        """Accept the browser's ``offer`` and return the answer, with candidates.

        Every audio and video track the browser sends is echoed on the same
        transceiver. Raises :class:`MediaError` ``bad_offer`` for an offer
        without audio or video or one aiortc rejects, ``closed`` if the peer
        closed meanwhile. May be called once; the max-duration clock starts here.
        """
        if self._answered:
            raise MediaError(MediaErrorCode.BAD_OFFER, f"echo peer {self.id} already answered an offer")
        if self.closed:
            raise MediaError(MediaErrorCode.CLOSED, f"echo peer {self.id} is closed")
        description = session_description(offer, "offer")
        self._answered = True
        self._expiry = asyncio.create_task(self._expire(), name=f"echo-expiry-{self.id}")
        self._negotiation = asyncio.create_task(self._negotiate(description), name=f"echo-answer-{self.id}")
        try:
            local = await asyncio.shield(self._negotiation)
        except BaseException as exc:
            closed_meanwhile = self.closed
            await self.close()  # whatever went wrong, release the transports
            if isinstance(exc, MediaError):
                raise
            if isinstance(exc, _REJECTED_OFFER_ERRORS):
                raise MediaError(MediaErrorCode.BAD_OFFER, f"offer rejected: {exc}") from exc
            if isinstance(exc, InvalidStateError) and closed_meanwhile:
                raise MediaError(
                    MediaErrorCode.CLOSED, f"echo peer {self.id} closed while answering"
                ) from exc
            raise
        if self.closed:
            raise MediaError(MediaErrorCode.CLOSED, f"echo peer {self.id} closed while answering")
        logger.info(
            "echo peer %s answered: %d audio, %d video track(s)",
            self.id,
            self._track_count("audio"),
            self._track_count("video"),
        )
        return description_dict(local)

    async def stats(self) -> EchoStats:
        """Current measurements, or the final ones once closed."""
        if self._final_stats is not None:
            return self._final_stats
        if self._closing is not None:
            # The snapshot is taken at the start of closing; wait for it.
            await asyncio.shield(self._closing)
            assert self._final_stats is not None
            return self._final_stats
        return await self._collect_stats()

    async def close(self) -> None:
        """Stop echoing and release the connection. Idempotent; concurrent
        callers all return once the peer is fully closed."""
        await asyncio.shield(self._start_closing("closed by caller"))

    async def wait_closed(self) -> None:
        """Return once the peer has closed, for whatever reason."""
        await self._closed.wait()

    # -- internals ---------------------------------------------------------

    async def _negotiate(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        await self._pc.setRemoteDescription(offer)
        self._echo_remote_tracks()
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        local = self._pc.localDescription
        if local is None:
            raise InvalidStateError("no local description after setLocalDescription")
        return local

    def _echo_remote_tracks(self) -> None:
        for transceiver in self._pc.getTransceivers():
            remote = transceiver.receiver.track
            if remote is None or transceiver.sender.track is not None:
                continue
            source = _CountingTrack(remote)
            # Video: unbuffered, so a slow encoder skips to the newest frame
            # instead of piling up latency. Audio: buffered, because dropping
            # 20 ms frames is audible and encoding Opus never falls behind.
            echo = self._relay.subscribe(source, buffered=source.kind == "audio")
            transceiver.sender.replaceTrack(echo)
            transceiver.direction = "sendrecv"
            self._sources.append(source)
            self._echoes.append(echo)
        if not self._sources:
            raise MediaError(MediaErrorCode.BAD_OFFER, "offer sends no audio or video track")

    def _track_count(self, kind: str) -> int:
        return sum(1 for s in self._sources if s.kind == kind)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        now = time.monotonic()
        if state == "connected" and self._connected_at is None:
            self._connected_at = now
        elif state in ("failed", "closed") and self._connected_at is not None:
            self._disconnected_at = self._disconnected_at or now
        if state == "failed":
            logger.info("echo peer %s: connection failed", self.id)
            self._start_closing("connection failed")

    async def _expire(self) -> None:
        await asyncio.sleep(self.max_duration_s)
        self._expiry = None  # this task is the caller: closing must not cancel it
        await self._start_closing(f"max duration {self.max_duration_s:g} s reached")

    def _start_closing(self, reason: str) -> asyncio.Task[None]:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(reason), name=f"echo-close-{self.id}")
        return self._closing

    async def _close(self, reason: str) -> None:
        expiry, self._expiry = self._expiry, None
        if expiry is not None:
            expiry.cancel()
        negotiation = self._negotiation
        if negotiation is not None and not negotiation.done():
            # aiortc 1.16 leaks the UDP sockets of an ICE gathering cut short by
            # close(), so let the answer finish first (host candidates take
            # milliseconds; an unreachable STUN/TURN server is bounded here).
            await asyncio.wait({negotiation}, timeout=NEGOTIATION_GRACE_S)
        state_at_end = self._pc.connectionState
        try:
            final = await self._collect_stats()
        except Exception:
            # Closing must finish; the stats are a nicety.
            logger.exception("echo peer %s: could not collect final stats", self.id)
            final = None
        try:
            await self._pc.close()
        finally:
            for echo in self._echoes:
                echo.stop()
            for source in self._sources:
                source.stop()
            ended = time.monotonic()
            if self._connected_at is not None and self._disconnected_at is None:
                self._disconnected_at = ended
            self._final_stats = final or self._empty_stats(ended, state_at_end)
            logger.info("echo peer %s closed: %s", self.id, reason)
            self._closed.set()
            if self._on_close is not None:
                self._on_close(self)

    def _timing(self, now: float) -> tuple[float, float | None]:
        connected_s = None
        if self._connected_at is not None:
            connected_s = (self._disconnected_at or now) - self._connected_at
        return now - self._created_at, connected_s

    def _empty_stats(self, now: float, connection_state: str) -> EchoStats:
        duration_s, connected_s = self._timing(now)
        return EchoStats(
            rtt_ms=None,
            packets_received=0,
            packets_lost=0,
            bytes_received=0,
            packets_sent=0,
            bytes_sent=0,
            audio_tracks=self._track_count("audio"),
            video_tracks=self._track_count("video"),
            audio_frames=0,
            video_frames=0,
            duration_s=duration_s,
            connected_s=connected_s,
            connection_state=connection_state,
            closed=True,
        )

    async def _collect_stats(self) -> EchoStats:
        report = await self._pc.getStats()
        rtts: list[float] = []
        packets_received = packets_lost = bytes_received = packets_sent = bytes_sent = 0
        for item in report.values():
            if isinstance(item, RTCInboundRtpStreamStats):
                packets_received += item.packetsReceived
                packets_lost += max(0, item.packetsLost)
            elif isinstance(item, RTCRemoteInboundRtpStreamStats):
                # aiortc leaves roundTripTime None until a report matches an SR.
                if item.roundTripTime is not None:
                    rtts.append(item.roundTripTime)
            elif isinstance(item, RTCOutboundRtpStreamStats):
                packets_sent += item.packetsSent
                bytes_sent += item.bytesSent
            elif isinstance(item, RTCTransportStats):
                bytes_received += item.bytesReceived
        duration_s, connected_s = self._timing(time.monotonic())
        return EchoStats(
            rtt_ms=1000 * sum(rtts) / len(rtts) if rtts else None,
            packets_received=packets_received,
            packets_lost=packets_lost,
            bytes_received=bytes_received,
            packets_sent=packets_sent,
            bytes_sent=bytes_sent,
            audio_tracks=self._track_count("audio"),
            video_tracks=self._track_count("video"),
            audio_frames=sum(s.frames for s in self._sources if s.kind == "audio"),
            video_frames=sum(s.frames for s in self._sources if s.kind == "video"),
            duration_s=duration_s,
            connected_s=connected_s,
            connection_state=self._pc.connectionState,
            closed=self._closing is not None,
        )


IceServersSource = Iterable[IceServerLike] | Callable[[], Iterable[IceServerLike]]


class EchoPeers:
    """The live echo peers of one server process, at most ``max_peers`` at once.

    ``ice_servers`` is a list, or a callable returning one for each new peer
    (TURN REST credentials expire, so they are minted per peer). Closed peers
    leave the registry by themselves.
    """

    def __init__(
        self,
        *,
        max_peers: int = DEFAULT_MAX_PEERS,
        ice_servers: IceServersSource = (),
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
    ) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be at least 1, got {max_peers}")
        if max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
        self.max_peers = max_peers
        self.max_duration_s = max_duration_s
        # A static list is checked now, so a bad URL fails at startup.
        self._ice_servers: Callable[[], Iterable[IceServerLike]]
        if callable(ice_servers):
            self._ice_servers = ice_servers
        else:
            static = normalise_ice_servers(ice_servers)
            self._ice_servers = lambda: static
        self._peers: dict[str, EchoPeer] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def is_live(self, peer_id: str) -> bool:
        """Whether a peer with this id is still running (closed peers leave by themselves)."""
        return peer_id in self._peers

    def get(self, peer_id: str) -> EchoPeer:
        """The live peer with this id; :class:`MediaError` ``not_found`` otherwise."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise MediaError(MediaErrorCode.NOT_FOUND, f"no live echo peer {peer_id!r}")
        return peer

    async def open(
        self, offer: Mapping[str, object] | RTCSessionDescription
    ) -> tuple[EchoPeer, SessionDescriptionDict]:
        """Start a connection test for ``offer``; return the peer and its answer.

        Raises :class:`MediaError` ``busy`` when ``max_peers`` tests run
        already, ``bad_offer`` when the offer is unusable.
        """
        description = session_description(offer, "offer")  # reject junk before taking a slot
        if len(self._peers) >= self.max_peers:
            raise MediaError(
                MediaErrorCode.BUSY,
                f"{len(self._peers)} connection tests running, the limit is {self.max_peers}",
            )
        # Registered before the first await, so concurrent opens cannot overshoot.
        peer = EchoPeer(
            ice_servers=self._ice_servers(),
            max_duration_s=self.max_duration_s,
            on_close=self._forget,
        )
        self._peers[peer.id] = peer
        try:
            answer = await peer.answer(description)
        except BaseException:
            await peer.close()
            raise
        return peer, answer

    async def close_all(self) -> None:
        """Close every live peer (at shutdown)."""
        peers = list(self._peers.values())
        if peers:
            await asyncio.gather(*(peer.close() for peer in peers))

    def _forget(self, peer: EchoPeer) -> None:
        self._peers.pop(peer.id, None)
