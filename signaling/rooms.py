"""Connected clients and consultation rooms (in memory; PostgreSQL holds what must survive a restart)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, Protocol

from care import access
from care.access import Action
from signaling.protocol import encode

log = logging.getLogger(__name__)

Side = Literal["patient", "staff"]


@dataclass(frozen=True)
class PatientIdentity:
    """A patient known by a valid join link (no account)."""

    patient_id: int
    facility_id: int
    link_jti: uuid.UUID


@dataclass(frozen=True)
class StaffIdentity:
    """A signed-in staff member (from the session cookie)."""

    staff_id: int
    facility_id: int
    name: str
    role: str

    @functools.cached_property
    def may_claim(self) -> bool:  # asked for every staff socket each time doctors online are counted
        return access.may_ever(self.role, Action.claim)


class Socket(Protocol):
    """What the hub needs of a websocket (aiohttp's WebSocketResponse, or a test double)."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ..., drain: bool = ...) -> bool: ...

    async def ping(self, message: bytes = ...) -> None: ...


class Transport(Protocol):
    """The part of asyncio's transport the direct-write path and the liveness sweep look at."""

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...


class CloseCode(IntEnum):
    """Websocket close codes the server uses on purpose (docs/protocol.md, "Connection rules")."""

    POLICY_VIOLATION = 1008  # too many invalid messages
    TRY_AGAIN_LATER = 1013  # the socket fell behind: its outgoing queue overflowed; reconnect
    SESSION_ENDED = 4401  # staff: signed out, session expired, account deactivated or password changed
    HELLO_TIMEOUT = 4408  # no `hello` within DONGHANH_HELLO_TIMEOUT seconds
    LINK_REVOKED = 4410  # patient: the station revoked the join link


# More than this many rejected messages in the window closes the socket (policy violation).
ABUSE_ERRORS = 20
ABUSE_WINDOW_S = 10.0
# Messages waiting for one socket beyond this many close it (TRY_AGAIN_LATER); DONGHANH_SOCKET_QUEUE.
DEFAULT_OUTBOX_LIMIT = 256
# A message this short is written straight to the transport (no writer-task hop) when nothing is queued or
# being written and the transport's buffer is empty: aiohttp then cannot wait for the network (it waits only
# once the buffer passed asyncio's 64 KiB mark, and an empty buffer means writing was resumed).
DIRECT_WRITE_CHARS = 4096


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked, uncompressed text frame from the server: RFC 6455, 5.2 (the sockets are opened
    with compress=False, web/ws.py). aiohttp writes the same bytes for `send_str`; this writes them without
    a coroutine."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


@dataclass(frozen=True)
class _Close:
    """In the outbox: close the socket once the messages queued before it have been written."""

    code: int
    reason: bytes


class _Ping:
    """In the outbox: a websocket ping (signaling/liveness.py), written after what was queued before it."""


_PING = _Ping()


class Client:
    """One websocket: who is on it, which rooms it is in, and what is waiting to be written to it.

    Sending never waits for the network: messages go into a bounded outbox that this socket's own
    writer task drains in order (a short one to an idle socket is written at once, which cannot wait
    either), so one slow reader holds up nobody else. A socket whose outbox overflows is closed with
    TRY_AGAIN_LATER (the page reconnects and gets fresh state).
    """

    # Fixed slots, not a per-socket __dict__: relaying reads several of these for every message, across
    # thousands of sockets, and slots are fewer cache lines to fetch and no hashing to find them.
    # The ones the relay reads for every offer and candidate come first, side by side (the first cache lines).
    __slots__ = ("ws", "heard", "close_code", "greeted", "busy", "route_epoch", "route_room", "route_peer",
                 "route_tail", "session", "_transport", "_writer", "_writing", "_outbox",
                 "staff", "staff_session", "address", "patient", "rooms", "last_list_digest", "_errors",
                 "_outbox_limit", "_wake", "pinged", "__weakref__")

    def __init__(self, ws: Socket, staff: StaffIdentity | None, *, staff_session: bytes | None = None,
                 address: str = "", outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
                 transport: Transport | None = None) -> None:
        self.ws = ws
        self.staff = staff
        self.staff_session = staff_session  # hash of the session token the socket was opened with
        self.address = address
        self.patient: PatientIdentity | None = None
        self.greeted = False
        self.session = secrets.token_hex(8)
        self.rooms: set[uuid.UUID] = set()
        self.last_list_digest: str | None = None  # the last queue_list this (staff) socket was sent
        self.close_code: int | None = None  # set once the server decided to close this socket
        self._errors: deque[float] = deque()
        self._outbox: deque[str | _Close | _Ping] = deque()
        self._outbox_limit = outbox_limit
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._writing = False  # the writer holds a message it has not finished writing
        self._transport = transport
        # signaling/liveness.py: a frame (or pong) came in since the last sweep; a ping is out unanswered.
        self.heard = True
        self.pinged = False
        # web/ws.py: the receive loop is handling a message of this socket's (frames behind it wait their turn).
        self.busy = False
        # The hub's relay route from this socket (Hub._relay): valid while the hub's membership epoch is
        # `route_epoch`; for the room whose UUID's int is `route_room`, to `route_peer`, the relayed message
        # ending in `route_tail` (`,"room":…,"from":…,"to":…}`).
        self.route_epoch = -1
        self.route_room = 0
        self.route_peer: Client | None = None
        self.route_tail = ""

    @property
    def side(self) -> Side:
        return "staff" if self.staff is not None else "patient"

    @property
    def ending(self) -> bool:
        """The server is closing this socket: nothing more is accepted from it or queued for it."""
        return self.close_code is not None

    def start(self) -> None:
        """Start the writer (once the socket is open)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.session}")

    async def send(self, message: dict[str, Any]) -> None:
        """Queue a message for this socket, or write it at once if that cannot wait (never waits for the network)."""
        await self.send_text(encode(message))

    async def send_text(self, text: str) -> None:
        """Queue text, or write it at once when that cannot wait for the network (see DIRECT_WRITE_CHARS)."""
        self.write_now(text)

    def write_now(self, text: str) -> None:
        """`send_text` without a coroutine (Hub.relay_now runs inside the transport's data callback).

        The frame goes straight to the transport: `_direct` has checked that nothing of this socket's is queued
        or being written, that the socket is open and that its transport's buffer is empty."""
        if self._direct(len(text)):
            self._transport.write(text_frame(text.encode()))  # type: ignore[union-attr]  # _direct: not None
        else:
            self.post(text)

    def _direct(self, chars: int) -> bool:
        t = self._transport
        return (t is not None and chars <= DIRECT_WRITE_CHARS and self._writer is not None and not self._outbox
                and not self._writing and not self.ending and not self.ws.closed and not t.is_closing()
                and t.get_write_buffer_size() == 0)

    def post(self, text: str) -> None:
        """Queue already-encoded text; on overflow the socket is closed (TRY_AGAIN_LATER)."""
        if self.ending or self.ws.closed:
            return
        if len(self._outbox) >= self._outbox_limit:
            self._overflow()
            return
        self._outbox.append(text)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after the messages already queued (an `error` explaining why, say) have been written."""
        if self.ending:
            return
        self.close_code = code
        self._outbox.append(_Close(code, reason.encode()[:120]))
        self._wake.set()

    def ping(self) -> None:
        """Ask the other end to answer (a websocket ping, after what is queued; it is not counted as a message)."""
        if not self.ending and not self.ws.closed:
            self._outbox.append(_PING)
            self._wake.set()

    def drop(self) -> None:
        """The other end stopped answering: drop the connection without a close handshake (it would not answer
        that either). The receive loop then ends and the hub forgets the socket, as for any lost connection."""
        log.info("dropping a socket that stopped answering pings", extra={"session": self.session})
        if self._transport is not None:
            self._transport.abort()
        elif not self.ending:
            self.close(1001, "no answer to pings")  # a test double without a transport: going away

    def _overflow(self) -> None:
        log.warning("closing a socket whose outgoing queue overflowed", extra={"session": self.session})
        self.close_code = CloseCode.TRY_AGAIN_LATER
        self._outbox.clear()
        # The writer is stuck behind a full transport buffer: stop it and close without draining.
        if self._writer is not None:
            self._writer.cancel()
        self._writer = asyncio.create_task(self._close_now(CloseCode.TRY_AGAIN_LATER, b"too slow: reconnect"),
                                           name=f"ws-close-{self.session}")

    async def _close_now(self, code: int, reason: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ws.close(code=code, message=reason, drain=False)

    async def _write(self) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            item = self._outbox.popleft()
            if isinstance(item, _Close):
                self._outbox.clear()
                await self._close_now(item.code, item.reason)
                return
            if self.ws.closed:
                self._outbox.clear()
                return
            self._writing = True
            try:
                if isinstance(item, _Ping):
                    await self.ws.ping()
                else:
                    await self.ws.send_str(item)
            except ConnectionError:
                self._outbox.clear()
                return  # the receive loop sees the close and disconnects this client
            finally:
                self._writing = False

    async def stop(self) -> None:
        """The socket's receive loop has ended: stop the writer (unsent messages are dropped).

        A writer that is closing the socket is left to finish its close handshake (aiohttp bounds it)."""
        writer, self._writer = self._writer, None
        self._outbox.clear()
        if writer is None or writer.done():
            return
        if self.ending:
            await asyncio.wait({writer}, timeout=1.0)
            if writer.done():
                return
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    def count_error(self, now: float | None = None) -> bool:
        """Record a rejected message; True when the client has become abusive."""
        now = time.monotonic() if now is None else now
        self._errors.append(now)
        while self._errors and self._errors[0] < now - ABUSE_WINDOW_S:
            self._errors.popleft()
        return len(self._errors) > ABUSE_ERRORS


def other(side: Side) -> Side:
    return "staff" if side == "patient" else "patient"


MemberRole = Literal["patient", "doctor", "specialist"]


@dataclass(frozen=True, slots=True)
class Member:
    """Who a socket is in a room: keyed by identity (the patient, the doctor, an invited staff member), so
    the same person's newest socket replaces their older one while other people are added beside them."""

    client: Client
    key: str  # "patient", "doctor", or "staff:<id>" for invited staff
    role: MemberRole
    name: str
    facility: str = ""  # staff members' facility, shown beside their name
    staff_id: int | None = None

    @property
    def rank(self) -> tuple[int, int]:
        # The doctor outranks invited staff (by staff id) who outrank the patient: the lower rank of a pair
        # is impolite. Patient–doctor is as it always was (patient polite); it does not depend on join order,
        # so a member who reconnects keeps their role in every pair.
        order = {"doctor": 0, "specialist": 1, "patient": 2}[self.role]
        return (order, self.staff_id or 0)

    def polite_to(self, peer: Member) -> bool:
        """Perfect negotiation per pair: is this member the polite side of its pair with `peer`?"""
        return self.rank > peer.rank

    def view(self, *, to: Member, media: dict[str, bool] | None) -> dict[str, object]:
        """This member as `to` sees them (in `joined.peers`, `peer_joined`)."""
        return {"peer_session": self.client.session, "role": self.role, "name": self.name,
                "facility": self.facility, "staff_id": self.staff_id, "polite": to.polite_to(self),
                "peer_media": media}


@dataclass(slots=True)
class Room:
    """A consultation's live call: up to MAX_MEMBERS members, one socket each; a member's newest socket wins."""

    id: uuid.UUID
    members: dict[str, Member] = field(default_factory=dict)  # by Member.key
    media: dict[str, dict[str, bool]] = field(default_factory=dict)  # by Member.key
    call_marked: bool = False
    text: str = field(init=False, repr=False)  # str(id), as every relayed message carries it

    def __post_init__(self) -> None:
        self.text = str(self.id)

    def member(self, client: Client) -> Member | None:
        return next((m for m in self.members.values() if m.client is client), None)

    def has(self, client: Client) -> bool:
        return self.member(client) is not None

    def others(self, client: Client) -> list[Member]:
        return [m for m in self.members.values() if m.client is not client]

    def by_session(self, session: str) -> Member | None:
        return next((m for m in self.members.values() if m.client.session == session), None)
