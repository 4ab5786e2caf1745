"""Connected clients and consultation rooms (in memory; PostgreSQL holds what must survive a restart)."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
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

    @property
    def may_claim(self) -> bool:
        return access.may_ever(self.role, Action.claim)


class Socket(Protocol):
    """What the hub needs of a websocket (aiohttp's WebSocketResponse, or a test double)."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


# More than this many rejected messages in the window closes the socket (policy violation).
ABUSE_ERRORS = 20
ABUSE_WINDOW_S = 10.0


class Client:
    """One websocket: who is on it, which rooms it is in."""

    def __init__(self, ws: Socket, staff: StaffIdentity | None) -> None:
        self.ws = ws
        self.staff = staff
        self.patient: PatientIdentity | None = None
        self.greeted = False
        self.session = secrets.token_hex(8)
        self.rooms: set[uuid.UUID] = set()
        self.last_list_digest: str | None = None  # the last queue_list this (staff) socket was sent
        self._errors: deque[float] = deque()

    @property
    def side(self) -> Side:
        return "staff" if self.staff is not None else "patient"

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(encode(message))

    async def send_text(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except ConnectionResetError:
            pass  # the receive loop sees the close and disconnects this client

    def count_error(self, now: float | None = None) -> bool:
        """Record a rejected message; True when the client has become abusive."""
        now = time.monotonic() if now is None else now
        self._errors.append(now)
        while self._errors and self._errors[0] < now - ABUSE_WINDOW_S:
            self._errors.popleft()
        return len(self._errors) > ABUSE_ERRORS


def other(side: Side) -> Side:
    return "staff" if side == "patient" else "patient"


@dataclass
class Room:
    """A consultation's live call: at most one socket per side; the newest one wins."""

    id: uuid.UUID
    members: dict[Side, Client] = field(default_factory=dict)
    media: dict[Side, dict[str, bool]] = field(default_factory=dict)
    call_marked: bool = False

    def peer_of(self, client: Client) -> Client | None:
        return self.members.get(other(client.side))

    def has(self, client: Client) -> bool:
        return self.members.get(client.side) is client
