"""The frames the server writes itself (signaling/rooms.py `text_frame`, for `Client.write_now`) read back through
aiohttp's own parser as the text they carry, at every length boundary of RFC 6455's header; and the installed
aiohttp is the one web/ws.py's `_Socket` was written against."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from hypothesis import given
from hypothesis import strategies as st

from signaling.rooms import text_frame
from web import ws


class _Protocol:
    """What aiohttp's queue asks of its protocol: whether reading is paused (it never is here)."""

    _reading_paused = False

    def pause_reading(self) -> None:
        raise AssertionError("a few frames never fill the queue")


def _parsed(*frames: bytes) -> list[Any]:
    loop = asyncio.new_event_loop()
    try:
        queue = WebSocketDataQueue(_Protocol(), 2**20, loop=loop)
        reader = WebSocketReader(queue, 2**20, compress=False, decode_text=True)
        reader.feed_data(b"".join(frames))
        out = []
        while queue._buffer:
            out.append(queue._buffer.popleft()[0])
        return out
    finally:
        loop.close()


def test_frames_at_each_length_boundary_read_back_as_their_text() -> None:
    texts = ["", "a" * 125, "b" * 126, "c" * 65535, "d" * 65536, "Nguyễn Văn A ☎ " * 10]
    messages = _parsed(*(text_frame(t.encode()) for t in texts))
    assert [(m.type, m.data) for m in messages] == [(WSMsgType.TEXT, t) for t in texts]
    assert len(text_frame(b"x" * 125)) == 127 and len(text_frame(b"x" * 126)) == 130
    assert len(text_frame(b"x" * 65536)) == 65536 + 10


@given(st.text(max_size=3000))
def test_any_text_reads_back_as_itself(text: str) -> None:
    [message] = _parsed(text_frame(text.encode()))
    assert (message.type, message.data) == (WSMsgType.TEXT, text)


def test_the_installed_aiohttp_is_the_one_frames_on_arrival_was_written_for() -> None:
    """web/ws.py replaces aiohttp 3.14's `_post_start`; with another version it steps aside (correct, slower).
    If this fails, aiohttp was upgraded: compare `_Socket._post_start` with the new `_post_start`, then move
    FRAMES_ON_ARRIVAL and the pin in pyproject.toml."""
    assert aiohttp.__version__.startswith("3.14.")
    assert ws.FRAMES_ON_ARRIVAL
