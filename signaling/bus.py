"""Messages between app processes that share one PostgreSQL, over LISTEN/NOTIFY.

Each process holds one pooled connection that LISTENs on `CHANNEL`; `publish()` NOTIFYs from another
pooled connection. A message is JSON `{"kind": ..., "at": <unix time>, "body": {...}}`; messages published
while a NOTIFY is under way are sent together, in order, as one notification
`{"from": <process>, "batch": [message, ...]}` of at most NOTIFY's 8,000-byte limit (under load, a relayed
call set-up costs one database round trip per batch instead of per message). A message whose text alone would
pass the limit is stored in a row (db/bus.py) and its notification carries `{"from", "row": id}` instead.
A process ignores its own notifications.

Losing the listening connection loses the notifications sent meanwhile, so after reconnecting the bus
calls `on_resync`: the hub then rebuilds what it shows from PostgreSQL, which is where queue entries and
consultations live anyway. A watchdog also pings the connection, so a silently dead one is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from db import bus as bus_db

log = logging.getLogger(__name__)

CHANNEL = "donghanh_bus"
# PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more; stay clear of the edge.
MAX_NOTIFY_BYTES = 7_900

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]


@dataclass
class BusStats:
    published: int = 0  # messages (several may share one notification)
    notifications: int = 0
    received: int = 0
    via_row: int = 0
    reconnects: int = 0
    last_lag_s: float = 0.0  # publish → handled, for the last message from another process
    lag_sum_s: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)


class Bus:
    """One process's end of the bus: `publish()` to every other process, `on_message(kind, body)` from them."""

    def __init__(self, pool: asyncpg.Pool, *, on_message: Handler, on_resync: Resync,
                 watchdog_s: float = 5.0, process_id: str | None = None) -> None:
        self.pool = pool
        self.process_id = process_id or uuid.uuid4().hex[:12]
        self._on_message = on_message
        self._on_resync = on_resync
        self.watchdog_s = watchdog_s
        self.stats = BusStats()
        self._con: Any = None  # the pooled connection that LISTENs (a PoolConnectionProxy)
        self._lost = asyncio.Event()
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        # Messages waiting for the sender, in publishing order, each with the future its publisher awaits.
        self._outgoing: deque[tuple[str, asyncio.Future[None]]] = deque()
        self._sender: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._keep_listening(), name="bus-listener")

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._handlers):
            task.cancel()
        await self._release()

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend pid of the listening connection (tests end it to prove reconnection)."""
        return None if self._con is None or self._con.is_closed() else int(self._con.get_server_pid())

    async def listening(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the listening connection is up (after a reconnection, say)."""
        async with asyncio.timeout(timeout):
            await self._listening.wait()

    async def _listen(self) -> None:
        con = await self.pool.acquire()
        try:
            con.add_termination_listener(self._terminated)
            await con.add_listener(CHANNEL, self._notified)
        except BaseException:
            await self.pool.release(con)
            raise
        self._con = con
        self._lost.clear()
        self._listening.set()

    async def _release(self) -> None:
        con, self._con = self._con, None
        self._listening.clear()
        if con is None:
            return
        with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            if not con.is_closed():
                await con.remove_listener(CHANNEL, self._notified)
        with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            await self.pool.release(con)

    def _terminated(self, _con: object) -> None:
        self._listening.clear()
        self._lost.set()

    async def _keep_listening(self) -> None:
        """Reconnect when the listening connection is lost (noticed at once, or by the watchdog's ping)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.watchdog_s):
                    await self._lost.wait()
            if not self._lost.is_set():
                try:
                    async with asyncio.timeout(self.watchdog_s):
                        await bus_db.ping(self._con)
                    continue
                except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError):
                    log.warning("bus: the listening connection does not answer; reconnecting")
            await self._reconnect()

    async def _reconnect(self) -> None:
        await self._release()
        delay = 0.1
        while True:
            try:
                await self._listen()
                break
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError):
                log.warning("bus: cannot listen yet; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.stats.reconnects += 1
        log.info("bus: listening again; resynchronising from the database")
        try:
            await self._on_resync()
        except (asyncpg.PostgresError, OSError):
            log.exception("bus: resynchronisation failed")

    # ---- sending and receiving -----------------------------------------------------------------------

    async def publish(self, kind: str, body: dict[str, Any]) -> None:
        """Send `body` to every other process listening on this database; returns once it is sent (with the
        messages published meanwhile, in order). Raises what the database raised."""
        text = json.dumps({"kind": kind, "at": time.time(), "body": body}, separators=(",", ":"),
                          ensure_ascii=False)
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing.append((text, sent))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_outgoing(), name="bus-sender")
        await sent

    async def _send_outgoing(self) -> None:
        """Drain the outgoing messages: as many as fit in one notification each time, in order."""
        while self._outgoing:
            batch: list[tuple[str, asyncio.Future[None]]] = []
            size = len(self._batch_text([]))
            while self._outgoing:
                text, sent = self._outgoing[0]
                length = len(text.encode()) + 1  # and its comma
                if batch and size + length > MAX_NOTIFY_BYTES:
                    break
                self._outgoing.popleft()
                batch.append((text, sent))
                size += length
            try:
                async with self.pool.acquire() as con:
                    if size > MAX_NOTIFY_BYTES:  # one message, too large for a notification: through a row
                        row_id = await bus_db.store(con, self._batch_text([batch[0][0]]))
                        payload = json.dumps({"from": self.process_id, "row": row_id})
                        self.stats.via_row += 1
                    else:
                        payload = self._batch_text([text for text, _ in batch])
                    await bus_db.notify(con, CHANNEL, payload)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                for _, sent in batch:
                    if not sent.done():
                        sent.set_exception(exc)
                continue
            except BaseException:
                for _, sent in batch:
                    sent.cancel()
                raise
            self.stats.published += len(batch)
            self.stats.notifications += 1
            for _, sent in batch:
                if not sent.done():
                    sent.set_result(None)

    def _batch_text(self, texts: list[str]) -> str:
        return f'{{"from":{json.dumps(self.process_id)},"batch":[{",".join(texts)}]}}'

    def _notified(self, _con: object, _pid: int, _channel: str, payload: str) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(payload))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _handle(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("from") == self.process_id:
                return
            if "row" in message:
                async with self.pool.acquire() as con:
                    stored = await bus_db.load(con, int(message["row"]))
                if stored is None:
                    log.warning("bus: payload row %s is gone; resynchronising", message["row"])
                    await self._on_resync()
                    return
                message = json.loads(stored)
            # A batch, or (from a process of an earlier version) one message with its sender.
            for item in message["batch"] if "batch" in message else [message]:
                kind, body = str(item["kind"]), item["body"]
                self.stats.received += 1
                self.stats.kinds[kind] = self.stats.kinds.get(kind, 0) + 1
                await self._on_message(kind, body)
                lag = max(0.0, time.time() - float(item["at"]))
                self.stats.last_lag_s = lag
                self.stats.lag_sum_s += lag
        except (ValueError, KeyError, TypeError):
            log.exception("bus: malformed notification ignored")
        except (asyncpg.PostgresError, OSError):
            log.exception("bus: handling a notification failed")
