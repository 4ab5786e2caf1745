"""A synthetic WebRTC client for load tests and benchmarks.

- :class:`PatternVideoTrack` and :class:`ToneAudioTrack` stand in for a
  camera and a microphone: generated, real-time paced, cheap.
- :class:`FrameSink` consumes a received track and counts decoded frames.
- :class:`SyntheticClient` wires them into an aiortc peer connection that can
  offer (to an :class:`~media.echo.EchoPeer`, say) or answer another client.

Example, one connection test against an echo peer in the same process::

    client = SyntheticClient()
    peer, answer = await echo_peers.open(await client.offer())
    await client.accept_answer(answer)
    async with asyncio.timeout(20):
        await client.sink("video").first_frame.wait()
    await client.close()

The video pattern (scrolling colour bars and a moving square, copied straight
into reused YUV planes with numpy) costs about 0.05 ms per 320x240 frame,
0.1 ms at 640x480 and 0.2 ms at 1280x720: negligible next to the VP8 encoder,
which aiortc already runs in a thread, so it is generated on the event loop.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
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

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000
"""RTP clock of video: pts of :class:`PatternVideoTrack` count 1/90000 s."""

# Colour bars in BT.601 limited-range YUV: white, yellow, cyan, green,
# magenta, red, blue, black.
_BARS_YUV = np.array(
    [
        (235, 128, 128),
        (210, 16, 146),
        (170, 166, 16),
        (145, 54, 34),
        (106, 202, 222),
        (81, 90, 240),
        (41, 240, 110),
        (16, 128, 128),
    ],
    dtype=np.uint8,
)

_Plane = npt.NDArray[np.uint8]


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class PatternVideoTrack(MediaStreamTrack):
    """A camera stand-in: scrolling colour bars with a square bouncing across.

    Frames are ``yuv420p`` (what the VP8/H.264 encoders want, so no conversion),
    with pts in a 1/90000 time base and paced to ``fps`` in real time. Like a
    camera, it does not queue: a consumer that falls behind gets the current
    frame, its pts jumping ahead, and :attr:`frames_skipped` counts the gap.
    Motion matters: a static image encodes to almost nothing and would
    understate the bitrate and CPU of a real call.
    """

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0) -> None:
        super().__init__()
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"size must be even and at least 16x16, got {width}x{height}")
        if not 0 < fps <= 120:
            raise ValueError(f"fps must be in (0, 120], got {fps}")
        self.width = width
        self.height = height
        self.fps = fps
        self.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.frames_sent = 0
        self.frames_skipped = 0
        self._index = -1
        self._start: float | None = None
        self._y, self._u, self._v = self._bars()
        self._buffer: _Plane = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self._box = max(8, (height // 6) & ~1)

    def _bars(self) -> tuple[_Plane, _Plane, _Plane]:
        # Each plane twice side by side: a scrolled plane is then a slice.
        bar = (np.arange(2 * self.width) * len(_BARS_YUV) // self.width) % len(_BARS_YUV)
        chroma_bar = bar[::2]
        y = np.repeat(_BARS_YUV[bar, 0][np.newaxis, :], self.height, axis=0)
        u = np.repeat(_BARS_YUV[chroma_bar, 1][np.newaxis, :], self.height // 2, axis=0)
        v = np.repeat(_BARS_YUV[chroma_bar, 2][np.newaxis, :], self.height // 2, axis=0)
        return y, u, v

    def render(self, index: int) -> VideoFrame:
        """The frame number ``index`` of the pattern (pts left unset)."""
        w, h, box = self.width, self.height, self._box
        # yuv420p packed as from_ndarray wants it: Y rows, then U, then V.
        # from_ndarray copies, so the buffer is reused from frame to frame.
        packed = self._buffer
        chroma = packed[h:].reshape(2, h // 2, w // 2)
        y, u, v = packed[:h], chroma[0], chroma[1]
        # Scroll two luma pixels per frame; chroma moves one of its own pixels.
        shift = index % (w // 2)
        y[:] = self._y[:, 2 * shift : 2 * shift + w]
        u[:] = self._u[:, shift : shift + w // 2]
        v[:] = self._v[:, shift : shift + w // 2]
        # Bounce a mid-grey square diagonally (positions even, for chroma).
        x = _triangle(3 * index, w - box) & ~1
        top = _triangle(2 * index, h - box) & ~1
        y[top : top + box, x : x + box] = 128
        u[top // 2 : (top + box) // 2, x // 2 : (x + box) // 2] = 128
        v[top // 2 : (top + box) // 2, x // 2 : (x + box) // 2] = 128
        return VideoFrame.from_ndarray(packed, format="yuv420p")

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
            index = 0
        else:
            due = math.floor((now - self._start) * self.fps)
            index = max(self._index + 1, due)
            self.frames_skipped += index - self._index - 1
            await _sleep_until(self._start + index / self.fps)
            if self.readyState != "live":
                raise MediaStreamError
        self._index = index
        frame = self.render(index)
        frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = self.time_base
        self.frames_sent += 1
        return frame


def _triangle(step: int, span: int) -> int:
    """0, 1, …, span, span-1, …, 0, 1, …: a position bouncing in [0, span]."""
    if span <= 0:
        return 0
    phase = step % (2 * span)
    return phase if phase <= span else 2 * span - phase


class ToneAudioTrack(MediaStreamTrack):
    """A microphone stand-in: a continuous sine, mono s16, in 20 ms frames.

    pts count samples (time base 1/sample_rate) and never skip: audio must be
    continuous, so a consumer that falls behind gets frames back to back until
    it has caught up with real time.
    """

    kind = "audio"

    def __init__(
        self,
        frequency: float = 440.0,
        sample_rate: int = 48_000,
        amplitude: float = 0.25,
        ptime: float = 0.020,
    ) -> None:
        super().__init__()
        if not 0 < frequency < sample_rate / 2:
            raise ValueError(f"frequency must be in (0, {sample_rate / 2}), got {frequency}")
        if not 0 <= amplitude <= 1:
            raise ValueError(f"amplitude must be in [0, 1], got {amplitude}")
        samples = sample_rate * ptime
        if samples != int(samples) or samples < 1:
            raise ValueError(f"ptime {ptime} s is not a whole number of samples at {sample_rate} Hz")
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.amplitude = amplitude
        self.samples_per_frame = int(samples)
        self.time_base = fractions.Fraction(1, sample_rate)
        self.frames_sent = 0
        self._next_sample = 0
        self._start: float | None = None

    def render(self, first_sample: int) -> AudioFrame:
        """The frame starting at sample ``first_sample`` (pts left unset)."""
        t = np.arange(first_sample, first_sample + self.samples_per_frame) / self.sample_rate
        wave = self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency * t)
        samples = wave.astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        return frame

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await _sleep_until(self._start + self._next_sample / self.sample_rate)
            if self.readyState != "live":
                raise MediaStreamError
        first = self._next_sample
        frame = self.render(first)
        frame.pts = first
        frame.time_base = self.time_base
        self._next_sample += self.samples_per_frame
        self.frames_sent += 1
        return frame


class FrameSink:
    """Consumes a received track, counting decoded frames.

    :attr:`first_frame` is set on the first frame and :attr:`ended` when the
    track ends. Use it as ``async with FrameSink(track) as sink:`` or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.kind = track.kind
        self.frames = 0
        self.first_frame = asyncio.Event()
        self.ended = asyncio.Event()
        self.started_at: float | None = None
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.last_frame: Frame | Packet[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def time_to_first_frame_s(self) -> float | None:
        """Seconds from :meth:`start` to the first frame, None before it."""
        if self.first_frame_at is None or self.started_at is None:
            return None
        return self.first_frame_at - self.started_at

    def start(self) -> None:
        """Start consuming (once; later calls do nothing)."""
        if self._task is None:
            self.started_at = time.monotonic()
            self._task = asyncio.create_task(self._consume(), name=f"frame-sink-{self.kind}")

    async def stop(self) -> None:
        """Stop consuming. Idempotent."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves
        self._finish()

    async def wait_frames(self, count: int) -> None:
        """Return once ``count`` frames have been received.

        Raises :class:`MediaError` ``closed`` if the track ends before. Wrap in
        :func:`asyncio.timeout` to bound the wait.
        """
        if self.frames >= count:
            return
        if self.ended.is_set():
            raise MediaError(MediaErrorCode.CLOSED, f"{self.kind} track ended after {self.frames} frames")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    async def __aenter__(self) -> FrameSink:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _consume(self) -> None:
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    return
                now = time.monotonic()
                self.frames += 1
                self.last_frame = frame
                self.last_frame_at = now
                if self.first_frame_at is None:
                    self.first_frame_at = now
                    self.first_frame.set()
                if self._waiters:
                    self._wake(lambda count: count <= self.frames, None)
        finally:
            self._finish()

    def _finish(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            error = MediaError(MediaErrorCode.CLOSED, f"{self.kind} track ended after {self.frames} frames")
            self._wake(lambda count: True, error)

    def _wake(self, due: Callable[[int], bool], error: MediaError | None) -> None:
        pending = []
        for count, waiter in self._waiters:
            if waiter.done():
                continue
            if due(count):
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
            else:
                pending.append((count, waiter))
        self._waiters = pending


class SyntheticClient:
    """An aiortc peer sending a test pattern and a tone, counting what it gets.

    Every track received from the other side gets a started :class:`FrameSink`
    (see :attr:`sinks` and :meth:`sink`). The client can make the offer
    (:meth:`offer` then :meth:`accept_answer`) or answer one (:meth:`answer`).
    Like aiortc, it does not trickle: descriptions carry all candidates.
    """

    def __init__(
        self,
        *,
        ice_servers: Iterable[IceServerLike] = (),
        video: PatternVideoTrack | bool = True,
        audio: ToneAudioTrack | bool = True,
    ) -> None:
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.video: PatternVideoTrack | None = None
        self.audio: ToneAudioTrack | None = None
        if isinstance(video, PatternVideoTrack):
            self.video = video
        elif video:
            self.video = PatternVideoTrack()
        if isinstance(audio, ToneAudioTrack):
            self.audio = audio
        elif audio:
            self.audio = ToneAudioTrack()
        self.sinks: list[FrameSink] = []
        self._closing: asyncio.Task[None] | None = None
        for track in (self.video, self.audio):
            if track is not None:
                self.pc.addTrack(track)
        self.pc.on("track", self._on_track)

    def sink(self, kind: str) -> FrameSink:
        """The sink of the first received track of ``kind`` ("audio"/"video")."""
        for sink in self.sinks:
            if sink.kind == kind:
                return sink
        raise LookupError(f"no {kind} track received (connection state {self.pc.connectionState!r})")

    async def offer(self) -> SessionDescriptionDict:
        """Create and return an offer, with candidates."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self._local()

    async def accept_answer(self, answer: Mapping[str, object] | RTCSessionDescription) -> None:
        """Apply the remote answer to our :meth:`offer`."""
        await self.pc.setRemoteDescription(session_description(answer, "answer"))

    async def answer(self, offer: Mapping[str, object] | RTCSessionDescription) -> SessionDescriptionDict:
        """Accept a remote offer and return our answer, with candidates."""
        await self.pc.setRemoteDescription(session_description(offer, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self._local()

    async def close(self) -> None:
        """Stop the sinks, the tracks and the connection. Idempotent."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())
        await asyncio.shield(self._closing)

    def _local(self) -> SessionDescriptionDict:
        local = self.pc.localDescription
        assert local is not None, "setLocalDescription has just completed"
        return description_dict(local)

    def _on_track(self, track: MediaStreamTrack) -> None:
        sink = FrameSink(track)
        sink.start()
        self.sinks.append(sink)

    async def _close(self) -> None:
        await self.pc.close()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        await asyncio.gather(*(sink.stop() for sink in self.sinks))
