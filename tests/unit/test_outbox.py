"""A socket's outbox and writer (signaling.rooms.Client) over a stand-in for aiohttp's websocket whose
network can be held: order is kept, a close waits for what was queued before it, overflow closes at once."""

from __future__ import annotations

import asyncio

from signaling.rooms import Client, CloseCode, text_frame
from web.settings import Settings


class HeldSocket:
    """Records what was written; `send_str` blocks while `network` is cleared (a peer that stopped reading)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: tuple[int, bytes, bool] | None = None
        self.network = asyncio.Event()
        self.network.set()
        self.written = asyncio.Event()
        self.closing = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.closed_with is not None

    async def send_str(self, data: str) -> None:
        await self.network.wait()
        self.sent.append(data)
        self.written.set()

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.closed_with = (code, message, drain)
        self.closing.set()
        return True


async def drained(socket: HeldSocket, count: int) -> None:
    async with asyncio.timeout(5):
        while len(socket.sent) < count:
            socket.written.clear()
            await socket.written.wait()


async def test_messages_are_written_in_the_order_they_were_queued() -> None:
    socket = HeldSocket()
    client = Client(socket, None)
    client.start()
    for n in range(50):
        client.post(str(n))
    await drained(socket, 50)
    assert socket.sent == [str(n) for n in range(50)]
    await client.stop()


async def test_close_waits_for_the_messages_queued_before_it_and_later_ones_are_dropped() -> None:
    socket = HeldSocket()
    client = Client(socket, None)
    client.start()
    await client.send({"type": "error", "code": "session_ended"})
    client.close(CloseCode.SESSION_ENDED, "signed out")
    client.post("after the close")
    assert client.ending
    async with asyncio.timeout(5):
        await socket.closing.wait()
    assert socket.closed_with is not None
    assert socket.sent == ['{"type":"error","code":"session_ended"}']
    assert socket.closed_with[:2] == (4401, b"signed out")
    await client.stop()


async def test_an_outbox_that_overflows_closes_the_socket_with_1013_without_draining() -> None:
    socket = HeldSocket()
    client = Client(socket, None, outbox_limit=4)
    client.start()
    socket.network.clear()  # the peer stops reading: the writer is stuck on the first message
    client.post("stuck")
    await asyncio.sleep(0)  # let the writer take it
    for n in range(4):
        client.post(str(n))
    assert not client.ending
    client.post("one too many")
    assert client.close_code == CloseCode.TRY_AGAIN_LATER
    async with asyncio.timeout(5):
        await socket.closing.wait()
    assert socket.closed_with is not None
    assert socket.closed_with == (1013, b"too slow: reconnect", False)
    assert socket.sent == []
    await client.stop()


async def test_stop_ends_an_idle_writer() -> None:
    socket = HeldSocket()
    client = Client(socket, None)
    client.start()
    await asyncio.sleep(0)
    await client.stop()
    client.post("after stop")  # harmless: nobody writes it
    assert socket.sent == []


def test_socket_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"DONGHANH_SOCKET_QUEUE": "64", "DONGHANH_HELLO_TIMEOUT": "5",
                                  "DONGHANH_MAX_SOCKETS_PER_ADDRESS": "500", "DONGHANH_SESSION_CHECK": "2"})
    assert (settings.socket_queue, settings.hello_timeout_s, settings.max_sockets_per_address,
            settings.session_check_s) == (64, 5, 500, 2)
    defaults = Settings.from_env({})
    assert (defaults.socket_queue, defaults.hello_timeout_s, defaults.max_sockets_per_address,
            defaults.session_check_s) == (256, 10, 200, 5)


class Buffer:
    """asyncio's transport as the direct-write path sees it."""

    def __init__(self) -> None:
        self.size = 0
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.size

    def is_closing(self) -> bool:
        return False


async def test_a_short_message_to_an_idle_socket_is_written_at_once_and_order_is_kept_behind_a_queue() -> None:
    socket, buffer = HeldSocket(), Buffer()
    client = Client(socket, None, transport=buffer)
    client.start()
    await client.send_text("direct")
    # Written to the transport as a text frame before send_text returned: no writer-task hop.
    assert buffer.written == [text_frame(b"direct")] and socket.sent == []
    buffer.size = 1  # the network is behind: from now on messages queue…
    await client.send_text("queued")
    buffer.size = 0
    await client.send_text("behind it")  # …and one sent after them waits its turn, even with an empty buffer
    assert socket.sent == []
    await drained(socket, 2)
    assert socket.sent == ["queued", "behind it"] and len(buffer.written) == 1
    client.write_now("direct again")  # the queue is empty again, and so is the buffer
    assert buffer.written[-1] == text_frame(b"direct again")
    await client.send_text("x" * 5000)  # long: always through the writer
    await drained(socket, 3)
    assert socket.sent[-1] == "x" * 5000 and len(buffer.written) == 2
    await client.stop()
