"""signaling/liveness.py: silent sockets are pinged by one sweep and dropped when they stay silent."""

from __future__ import annotations

import asyncio

from signaling import liveness, scan
from signaling.rooms import Client


class PingedSocket:
    """Records text and pings in the order the writer wrote them."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.wrote = asyncio.Event()
        self.closed = False

    async def send_str(self, data: str) -> None:
        self.written.append(data)
        self.wrote.set()

    async def ping(self, message: bytes = b"") -> None:
        self.written.append("<ping>")
        self.wrote.set()

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.closed = True
        return True


class Line:
    """The transport: whether the sweep aborted it."""

    def __init__(self) -> None:
        self.aborted = False
        self.dropped = asyncio.Event()

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True
        self.dropped.set()


async def written(socket: PingedSocket, count: int) -> None:
    async with asyncio.timeout(5):
        while len(socket.written) < count:
            socket.wrote.clear()
            await socket.wrote.wait()


async def test_a_socket_heard_from_is_left_alone() -> None:
    socket, line = PingedSocket(), Line()
    client = Client(socket, None, transport=line)
    client.start()
    for _ in range(5):
        client.heard = True  # what the receive loop sets on every frame
        assert liveness.sweep([client]) == 0
    await asyncio.sleep(0)
    assert socket.written == [] and not line.aborted
    await client.stop()


async def test_a_silent_socket_is_pinged_after_what_was_queued_then_dropped_if_still_silent() -> None:
    socket, line = PingedSocket(), Line()
    client = Client(socket, None, transport=line)
    client.start()
    client.post("queued before")
    assert liveness.sweep([client]) == 0  # heard since it connected: the mark is cleared
    assert liveness.sweep([client]) == 0  # silent for a whole look: pinged
    await written(socket, 2)
    assert socket.written == ["queued before", "<ping>"]
    assert not line.aborted
    assert liveness.sweep([client]) == 1  # no pong, no frame by the next look: dropped
    assert line.aborted
    await client.stop()


async def test_a_pong_before_the_next_look_keeps_the_socket() -> None:
    socket, line = PingedSocket(), Line()
    client = Client(socket, None, transport=line)
    client.start()
    liveness.sweep([client])
    liveness.sweep([client])
    await written(socket, 1)
    client.heard = True  # the pong came in
    for _ in range(3):  # and it keeps answering each ping
        assert liveness.sweep([client]) == 0
        assert liveness.sweep([client]) == 0
        client.heard = True
    assert not line.aborted
    await client.stop()


async def test_run_sweeps_every_half_interval_until_cancelled() -> None:
    socket, line = PingedSocket(), Line()
    client = Client(socket, None, transport=line)
    client.start()
    task = asyncio.create_task(liveness.run(lambda: [client], 0.02))
    await asyncio.wait_for(line.dropped.wait(), 5)  # heard → cleared → pinged → dropped: three looks
    task.cancel()
    assert "<ping>" in socket.written
    await client.stop()


async def test_scans_go_a_slice_at_a_time_and_let_other_work_run_between() -> None:
    """signaling/scan.py: 250 items in slices of 100, 100, 50; a callback scheduled before the scan runs
    before the second slice is handed out, and an item added meanwhile is not in this scan."""
    items = set(range(250))
    seen: list[list[int]] = []
    ran: list[int] = []

    def meanwhile() -> None:
        ran.append(len(seen))
        items.add(999)

    asyncio.get_running_loop().call_soon(meanwhile)
    async for part in scan.slices(items):
        seen.append(part)
    assert [len(part) for part in seen] == [100, 100, 50]
    assert sorted(x for part in seen for x in part) == list(range(250))
    assert ran == [1]  # after the first slice, before the second
