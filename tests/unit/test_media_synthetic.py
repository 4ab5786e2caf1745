"""Synthetic media sources and the frame sink, without any network."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from media.errors import MediaError
from media.synthetic import VIDEO_CLOCK_RATE, FrameSink, PatternVideoTrack, ToneAudioTrack

pytestmark = pytest.mark.media


async def test_pattern_frames_have_the_size_format_and_a_90khz_pts() -> None:
    track = PatternVideoTrack(320, 240, fps=100)
    frames = [await track.recv() for _ in range(5)]
    assert all(isinstance(f, VideoFrame) for f in frames)
    assert {(f.width, f.height, f.format.name) for f in frames} == {(320, 240, "yuv420p")}
    assert all(f.time_base == fractions.Fraction(1, VIDEO_CLOCK_RATE) for f in frames)
    assert [f.pts for f in frames] == [0, 900, 1800, 2700, 3600]
    assert track.frames_sent == 5 and track.frames_skipped == 0


async def test_pattern_is_paced_in_real_time() -> None:
    track = PatternVideoTrack(64, 48, fps=50)
    started = time.monotonic()
    for _ in range(11):
        await track.recv()
    assert time.monotonic() - started >= 10 / 50 - 0.005


async def test_pattern_skips_frames_for_a_late_consumer_like_a_camera() -> None:
    track = PatternVideoTrack(64, 48, fps=100)
    first = await track.recv()
    await asyncio.sleep(0.1)  # the consumer is late by about ten frames
    late = await track.recv()
    assert first.pts == 0
    assert late.pts is not None and late.pts >= 8 * 900
    assert track.frames_skipped >= 8 and track.frames_sent == 2


def test_pattern_moves_from_frame_to_frame() -> None:
    track = PatternVideoTrack(320, 240)
    a, b = track.render(1).to_ndarray(), track.render(2).to_ndarray()
    assert (a != b).any()
    assert (track.render(1).to_ndarray() == a).all()  # deterministic


@pytest.mark.parametrize(("width", "height", "fps"), [(321, 240, 15), (320, 8, 15), (320, 240, 0)])
def test_pattern_rejects_odd_or_tiny_sizes_and_bad_fps(width: int, height: int, fps: float) -> None:
    with pytest.raises(ValueError):
        PatternVideoTrack(width, height, fps)


async def test_tone_sends_continuous_20ms_frames_at_48khz() -> None:
    track = ToneAudioTrack(frequency=1000, amplitude=0.5)
    frames = [await track.recv() for _ in range(3)]
    assert all(isinstance(f, AudioFrame) for f in frames)
    assert [f.pts for f in frames] == [0, 960, 1920]
    assert {(f.samples, f.sample_rate, f.format.name, f.layout.name) for f in frames} == {
        (960, 48_000, "s16", "mono")
    }
    signal = np.concatenate([f.to_ndarray().ravel() for f in frames]).astype(float)
    t = np.arange(signal.size) / 48_000
    expected = 0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)
    assert np.abs(signal - expected).max() <= 1  # no glitch at frame boundaries


def test_tone_has_its_frequency() -> None:
    track = ToneAudioTrack(frequency=440)
    samples = np.concatenate([track.render(i * 960).to_ndarray().ravel() for i in range(50)])
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 48_000 / samples.size
    assert abs(peak_hz - 440) <= 1


async def test_stopped_tracks_raise_media_stream_error() -> None:
    for track in (PatternVideoTrack(64, 48), ToneAudioTrack()):
        await track.recv()
        track.stop()
        with pytest.raises(MediaStreamError):
            await track.recv()


async def test_sink_counts_frames_and_signals_the_first() -> None:
    track = PatternVideoTrack(64, 48, fps=100)
    async with FrameSink(track) as sink:
        async with asyncio.timeout(5):
            await sink.first_frame.wait()
            await sink.wait_frames(5)
        assert sink.frames >= 5
        assert sink.kind == "video"
        assert isinstance(sink.last_frame, VideoFrame)
        assert sink.time_to_first_frame_s is not None and sink.time_to_first_frame_s >= 0
    assert sink.ended.is_set()


async def test_sink_ends_with_its_track_and_fails_pending_waits() -> None:
    track = ToneAudioTrack()
    sink = FrameSink(track)
    sink.start()
    waiting = asyncio.create_task(sink.wait_frames(1_000_000))
    async with asyncio.timeout(5):
        await sink.first_frame.wait()
        track.stop()
        await sink.ended.wait()
        with pytest.raises(MediaError) as ended:
            await waiting
    assert ended.value.code == "closed"
    with pytest.raises(MediaError):
        await sink.wait_frames(1_000_000)
    await sink.stop()
    await sink.stop()  # idempotent
