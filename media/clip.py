"""A video-observed dose clip, checked by decoding it (PyAV) and summed up as a contact sheet (OpenCV).

Browsers' MediaRecorder writes WebM without a duration in its header, so the duration is read from the
packets' timestamps, and every frame is decoded once: a file that does not decode to the end (cut off,
not video) is refused with a precise code. These functions block (CPU-bound): the server runs them in a
worker thread, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

MAX_CLIP_SECONDS = 60.0  # issue 11: a short clip (≤ 60 s) of taking today's dose
SHEET_TILES = 6  # issue 11: 6 evenly spaced frames in one JPEG
SHEET_COLUMNS = 3
TILE_WIDTH = 240  # a tile's width in the sheet (height follows the clip's aspect ratio)
# What browsers' MediaRecorder writes (WebM; MP4 on Safari), as FFmpeg names the demuxers.
RECORDER_FORMATS = frozenset({"matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2"})
# A little slack over the limit: recorders stop a few frames late.
DURATION_SLACK_S = 1.0


class ClipError(ValueError):
    """The file is not an acceptable clip; `code` is stable (docs/protocol.md), `message` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ClipInfo:
    duration_s: float
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class CheckedClip:
    info: ClipInfo
    sheet_jpeg: bytes


def _open(path: Path) -> av.container.InputContainer:
    if path.stat().st_size == 0:
        raise ClipError("clip_empty", "the clip is empty")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ClipError("clip_not_video", f"the file is not a video ({type(exc).__name__})") from None
    if container.format.name not in RECORDER_FORMATS:
        container.close()
        raise ClipError("clip_not_video", "the file is not a WebM or MP4 video")
    return container


def check_clip(path: Path, max_seconds: float = MAX_CLIP_SECONDS) -> CheckedClip:
    """Decode the clip: its duration and video size, and a contact sheet of 6 evenly spaced frames (JPEG).

    Two passes: the packets' timestamps (cheap) give the duration and the 6 instants; then every frame is
    decoded (so a damaged file is caught) and only the 6 nearest are kept. ClipError codes: `clip_empty`,
    `clip_not_video` (no video track, or not a media file), `clip_too_long` (over `max_seconds`),
    `clip_unreadable` (stops decoding: cut off or damaged).
    """
    first, last, packets = _timestamps(path, max_seconds)
    interval = (last - first) / (packets - 1) if packets > 1 else 0.0
    duration = last - first + interval  # the last frame lasts one interval
    targets = [first + (last - first) * (i + 0.5) / SHEET_TILES for i in range(SHEET_TILES)]
    best: list[tuple[float, av.VideoFrame] | None] = [None] * SHEET_TILES
    decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                decoded += 1
                t = float(frame.pts * frame.time_base)
                for i, target in enumerate(targets):
                    kept = best[i]
                    if kept is None or abs(t - target) < kept[0]:
                        best[i] = (abs(t - target), frame)
        except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
            raise ClipError("clip_unreadable", f"the clip stops decoding ({type(exc).__name__}): "
                                               "cut off or damaged") from None
    chosen = [b[1] for b in best if b is not None]
    if not chosen or decoded < packets // 2:
        raise ClipError("clip_unreadable", f"only {decoded} of {packets} frames decode: cut off or damaged")
    info = ClipInfo(round(duration, 3), chosen[0].width, chosen[0].height, decoded)
    return CheckedClip(info, contact_sheet(chosen))


def _timestamps(path: Path, max_seconds: float) -> tuple[float, float, int]:
    """(first, last, count) of the video packets' presentation times, in seconds."""
    first: float | None = None
    last, count = 0.0, 0
    with _open(path) as container:
        if not container.streams.video:
            raise ClipError("clip_not_video", "the file has no video track")
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.time_base is None or packet.size == 0:
                    continue
                t = float(packet.pts * packet.time_base)
                first = t if first is None else min(first, t)
                last = max(last, t)
                count += 1
                if last - first > max_seconds + DURATION_SLACK_S:
                    raise ClipError("clip_too_long", f"the clip is longer than {max_seconds:g} seconds")
        except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
            raise ClipError("clip_unreadable", f"the clip stops reading ({type(exc).__name__}): "
                                               "cut off or damaged") from None
    if first is None:
        raise ClipError("clip_not_video", "the file has no video frames")
    return first, last, count


def contact_sheet(frames: list[av.VideoFrame]) -> bytes:
    """The frames as tiles in one JPEG, `SHEET_COLUMNS` to a row (OpenCV)."""
    tiles = []
    for frame in frames:
        image = frame.to_ndarray(format="bgr24")
        height = max(1, round(image.shape[0] * TILE_WIDTH / image.shape[1]))
        tiles.append(cv2.resize(image, (TILE_WIDTH, height), interpolation=cv2.INTER_AREA))
    rows = [np.hstack(tiles[i:i + SHEET_COLUMNS]) for i in range(0, len(tiles), SHEET_COLUMNS)]
    ok, jpeg = cv2.imencode(".jpg", np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ClipError("clip_unreadable", "the contact sheet could not be encoded")
    return bytes(jpeg.tobytes())


def sheet_tiles(jpeg: bytes) -> tuple[int, int, int]:
    """(tiles, width, height) of a contact sheet made by `contact_sheet` (tests, checks)."""
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ClipError("clip_unreadable", "not a JPEG")
    height, width = image.shape[:2]
    tile_height = height // ((SHEET_TILES + SHEET_COLUMNS - 1) // SHEET_COLUMNS)
    return (width // TILE_WIDTH) * (height // tile_height), width, height


def synthetic_clip(path: Path, seconds: float, width: int = 320, height: int = 240, fps: int = 15) -> None:
    """A VP8 WebM clip like a browser's (moving colour bars), for tests and benchmarks."""
    with av.open(str(path), mode="w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 300_000
        stream.options = {"deadline": "realtime", "cpu-used": "8"}  # fast, like a phone's encoder
        for i in range(round(seconds * fps)):
            image = np.zeros((height, width, 3), dtype=np.uint8)
            image[:, :, 0] = (np.arange(width) + 4 * i) % 256
            image[:, :, 1] = (i * 9) % 256
            cv2.putText(image, str(i), (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
