"""A dose clip is checked by decoding it: duration, video track, cut-off or damaged files, the contact sheet."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from media.clip import ClipError, check_clip, sheet_tiles, synthetic_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "c.webm"
    synthetic_clip(path, 3.0, 320, 240, fps=10)
    return path


def test_duration_size_and_a_sheet_of_six_tiles(clip: Path) -> None:
    checked = check_clip(clip)
    assert checked.info.duration_s == pytest.approx(3.0, rel=0.1)
    assert (checked.info.width, checked.info.height, checked.info.frames) == (320, 240, 30)
    assert sheet_tiles(checked.sheet_jpeg) == (6, 720, 360)


def test_longer_than_allowed_is_refused(clip: Path) -> None:
    with pytest.raises(ClipError) as caught:
        check_clip(clip, max_seconds=1.0)
    assert caught.value.code == "clip_too_long"
    assert check_clip(clip, max_seconds=2.5).info.frames == 30  # within the 1 s slack of a late stop


@pytest.mark.parametrize(("content", "code"), [
    (b"", "clip_empty"),
    (b"GIF89a not a video" * 50, "clip_not_video"),
    (b"hello, this is a text file\n" * 50, "clip_not_video"),
])
def test_empty_or_not_video_is_refused(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "x.webm"
    path.write_bytes(content)
    with pytest.raises(ClipError) as caught:
        check_clip(path)
    assert caught.value.code == code


def test_an_audio_only_file_has_no_video_track(tmp_path: Path) -> None:
    path = tmp_path / "a.webm"
    with av.open(str(path), mode="w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 48000
        for i in range(10):
            frame.pts = i * 960
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(ClipError) as caught:
        check_clip(path)
    assert caught.value.code == "clip_not_video"
