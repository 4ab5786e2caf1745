"""The websocket hub: authenticates sockets, pairs patients with doctors, relays call signaling.

Live sockets and rooms are in memory; queue entries, consultations and chat are in PostgreSQL,
so after a restart clients reconnect with their token and carry on where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import WSCloseCode

from care import access
from care.access import Action, Relation, Role
from db import audit, scope, usecases
from db import chat as chat_db
from db import consultations as consultations_db
from db import facilities as facilities_db
from db import links as links_db
from db import presence as presence_db
from db import queue as queue_db
from db import staff as staff_db
from db.errors import DbError
from signaling import protocol as p
from signaling import queue as queue_view
from signaling import safety
from signaling.batch import Batcher
from signaling.bus import Bus
from signaling.errors import SignalingError
from signaling.rooms import (
    DEFAULT_OUTBOX_LIMIT,
    Client,
    CloseCode,
    Member,
    PatientIdentity,
    Room,
    Socket,
    StaffIdentity,
    Transport,
)
from signaling.scan import slices
from signaling.stats import HubStats

log = logging.getLogger(__name__)

# Resolves a join-link token on the connection the hello already holds (one pool round for the whole hello).
PatientAuthenticator = Callable[[asyncpg.Connection, str], Awaitable[PatientIdentity]]
# The same for many tokens in one statement (a batch of hellos): each an identity or its refusal, in order.
PatientsAuthenticator = Callable[[asyncpg.Connection, Sequence[str]],
                                 Awaitable[Sequence[PatientIdentity | BaseException]]]
IceServers = Callable[[], list[dict[str, Any]]]

# Wait this long after a queue change before broadcasting, so a burst of changes costs one broadcast.
COALESCE_S = 0.05
# ...and at least this many times as long as the last broadcast took: during a reconnect storm (every page
# says hello, each a queue change) broadcasts then take at most about a tenth of the process's time
# instead of following each other back to back; a quiet process still broadcasts within COALESCE_S.
COALESCE_FACTOR = 10
COALESCE_MAX_S = 2.0  # lists and places are never older than this (plus one broadcast)
# A broadcast lets other tasks run after this many patients' places (writes are synchronous when a socket's
# buffer is empty: 10,000 of them would hold the event loop for a good part of a second).
BROADCAST_SLICE = 250
# With the bus: each process says who is online there at least this often; silent for the TTL, forgotten.
PRESENCE_S = 10.0
PRESENCE_TTL_S = 3 * PRESENCE_S
# Group commit of claims and ends (signaling/batch.py): at most this many in one statement.
CLAIM_BATCH = 100

# A claim or an end as its batcher carries it: the socket, and the chosen entry (None: the next patient) or
# the consultation to end.
_ClaimItem = tuple[Client, uuid.UUID | None]
_EndItem = tuple[Client, uuid.UUID]


def _iso(value: datetime) -> str:
    return value.isoformat()


class Hub:
    """All live sockets of this process."""

    def __init__(self, pool: asyncpg.Pool, *, authenticate_patient: PatientAuthenticator,
                 ice_servers: IceServers, max_message_bytes: int, requeue_grace_s: int,
                 authenticate_patients: PatientsAuthenticator | None = None,
                 outbox_limit: int = DEFAULT_OUTBOX_LIMIT, hello_timeout_s: float = 10.0,
                 max_sockets_per_address: int = 200, session_check_s: float = 5.0,
                 offline_grace_s: int = 600, ice_transport_policy: str = "all") -> None:
        self.pool = pool
        self._authenticate_patient = authenticate_patient
        self._authenticate_patients = authenticate_patients
        # Group commit of the reconnect storm's database work (signaling/batch.py): hellos, joins and the staff
        # session check of socket upgrades that arrive while a batch runs go together, on one pool connection
        # and a few statements per batch instead of a few per socket. Alone, each runs at once.
        self._hellos: Batcher[_HelloRequest, _Greeting] = Batcher(self._run_hellos, name="hello")
        self._joins: Batcher[_JoinRequest, None] = Batcher(self._run_joins, name="join")
        self._upgrades: Batcher[bytes, staff_db.Session | None] = Batcher(self._run_sessions, name="upgrade")
        self._ice_servers = ice_servers
        self.ice_transport_policy = ice_transport_policy
        self.max_message_bytes = max_message_bytes
        self.requeue_grace_s = requeue_grace_s
        self.outbox_limit = outbox_limit
        self.hello_timeout_s = hello_timeout_s
        self.max_sockets_per_address = max_sockets_per_address
        self.session_check_s = session_check_s
        self.offline_grace_s = offline_grace_s  # a patient whose page closed keeps their place this long
        self.clients: set[Client] = set()
        self.rooms: dict[uuid.UUID, Room] = {}
        self.patients: dict[int, set[Client]] = {}
        self._per_address: Counter[str] = Counter()
        self._hello_timers: dict[Client, asyncio.TimerHandle] = {}
        # Sockets whose hello is being handled (waiting for the database in a reconnect storm, say), and those
        # of them whose hello timeout passed meanwhile: judged when their hello is done, not closed under it.
        self._saying_hello: set[Client] = set()
        self._hello_late: set[Client] = set()
        self._queue_dirty = asyncio.Event()
        self._alerts: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.stats = HubStats()
        # Set by the app when several processes share the database (DONGHANH_BUS): queue changes, pairing,
        # endings and requeues then reach sockets held by the other processes too.
        self.bus: Bus | None = None
        self._queue_publish = False
        self._alerts_out: list[dict[str, Any]] = []
        # Room members held by other processes, as their notifications described them (bus only).
        self.remote: dict[uuid.UUID, dict[str, RemoteMember]] = {}
        # Grows whenever a room's members change (here or, as heard, elsewhere): the relay routes sockets keep
        # (Client.route_*) are valid only while it has not moved.
        self.membership_epoch = 0
        # Who is online on the other processes, from their latest `queue` notification (bus only).
        self.remote_presence: dict[str, RemotePresence] = {}
        self._saved_presence: tuple[Any, ...] | None = None  # this process's presence row as last written
        self._saved_presence_at = 0.0
        # Claims and ends arriving while a batch of them runs go together in the next: one pool connection,
        # one session check and one statement (the claims or ends and all their audit events) per batch
        # (docs/scale.md, "Claims per second"). None: the socket's session had ended, it was closed and
        # nothing was done.
        self._claims: Batcher[_ClaimItem, consultations_db.Consultation | None] = Batcher(
            self._claim_batch, max_batch=CLAIM_BATCH, name="claims")
        self._ends: Batcher[_EndItem, consultations_db.Ended | None] = Batcher(
            self._end_batch, max_batch=CLAIM_BATCH, name="ends")

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self.pool.acquire() as con:
            touched = await consultations_db.touch_all_active(con)
            elsewhere: list[int] = []
            if self.bus is not None:  # who the other processes hold, before any of them answers on the bus
                for other in await presence_db.live(con, PRESENCE_TTL_S):
                    if other.process_id != self.bus.process_id:
                        self._heard_presence(other.process_id, other.doctors, other.pages, other.patients,
                                             age_s=other.age_s)
                        elsewhere += other.patients
            # No page is connected to a process that just started: everyone is offline until theirs is back
            # (but for the pages another process holds).
            await queue_db.everyone_left(con, elsewhere)
        if touched:
            log.info("gave %d active consultations a fresh grace period after start", touched)
        self._tasks = [asyncio.create_task(self._broadcast_loop(), name="queue-broadcast"),
                       asyncio.create_task(self._sweep_loop(), name="requeue-sweeper"),
                       asyncio.create_task(self._revalidate_loop(), name="session-revalidation")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._claims.close()
        await self._ends.close()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        for batcher in (self._hellos, self._joins, self._upgrades):
            with contextlib.suppress(Exception):  # a failed batch was logged and told to its sockets
                await asyncio.wait_for(batcher.close(), timeout=5)
        for client in list(self.clients):
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # ---- connections -----------------------------------------------------------------------------

    def admits(self, address: str) -> bool:
        """Is there room for one more socket from this client address (DONGHANH_MAX_SOCKETS_PER_ADDRESS)?"""
        return self._per_address[address] < self.max_sockets_per_address

    def connect(self, ws: Socket, staff: StaffIdentity | None, *, staff_session: bytes | None = None,
                address: str = "", transport: Transport | None = None) -> Client:
        """An open socket: its writer starts, and it has `hello_timeout_s` to say hello."""
        client = Client(ws, staff, staff_session=staff_session, address=address, outbox_limit=self.outbox_limit,
                        transport=transport)
        self.clients.add(client)
        self._per_address[address] += 1
        client.start()
        self._hello_timers[client] = asyncio.get_running_loop().call_later(
            self.hello_timeout_s, self._hello_overdue, client)
        return client

    def _forget_hello_timer(self, client: Client) -> None:
        timer = self._hello_timers.pop(client, None)
        if timer is not None:
            timer.cancel()

    def _hello_overdue(self, client: Client) -> None:
        self._hello_timers.pop(client, None)
        if client in self._saying_hello:
            self._hello_late.add(client)
            return
        if not client.greeted and client in self.clients:
            log.info("closing a socket that never said hello", extra={"session": client.session})
            client.close(CloseCode.HELLO_TIMEOUT, "no hello")

    async def disconnect(self, client: Client) -> None:
        """The socket is gone: leave rooms (the peer is told), keep everything in the database.

        The cleanup runs in a task of its own: the socket's handler may be cancelled right now (the
        connection was lost), and the peer, the grace period and "take next" must learn it either way."""
        task = asyncio.ensure_future(self._disconnect(client))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _disconnect(self, client: Client) -> None:
        self.clients.discard(client)
        self._hello_late.discard(client)
        self._forget_hello_timer(client)
        self._per_address[client.address] -= 1
        if self._per_address[client.address] <= 0:
            del self._per_address[client.address]
        await client.stop()
        patient_left = False
        if client.patient is not None:
            same = self.patients.get(client.patient.patient_id)
            if same is not None:
                same.discard(client)
                if not same:
                    del self.patients[client.patient.patient_id]
                    patient_left = True
        if client.patient is not None and patient_left:  # the patient's last page went away
            try:
                async with self.pool.acquire() as con:
                    await queue_db.patient_left(con, client.patient.patient_id)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):  # shutting down; start resets it
                log.exception("could not record that a patient left", extra={"patient": client.patient.patient_id})
            else:  # a page of theirs on another process marks them present again (bus)
                await self._publish("patient_left", {"patient_id": client.patient.patient_id})
        for room_id in list(client.rooms):
            await self._leave(client, room_id, reason="disconnected")
        self.queue_changed()

    async def handle_raw(self, client: Client, raw: str | bytes) -> None:
        """Decode, validate and dispatch one message; errors go back to the sender as `error`."""
        if client.ending:
            return  # the server is closing this socket (session ended, link revoked…): nothing more is done
        try:
            message = p.decode(raw, max_bytes=self.max_message_bytes)
            if client.greeted and isinstance(message, (p.Offer, p.Answer, p.Ice)):
                # The hot path (descriptions and candidates): no session check, no database, one hop.
                if self._on_route(client, message):
                    return
                try:
                    await self._relay(client, message)
                except SignalingError as exc:
                    exc.ref = exc.ref or message.id
                    raise
            else:
                await self._dispatch(client, message)
        except SignalingError as exc:
            await self._reject(client, exc)
        except Exception:  # the socket's boundary: log it, tell the client, keep serving
            incident = uuid.uuid4().hex[:8]
            self.stats.refused["internal"] += 1
            log.exception("error handling a message", extra={"session": client.session, "incident": incident})
            await client.send({"type": "error", "code": "internal",
                               "message": f"internal error (incident {incident}); please retry", "id": ""})

    def _on_route(self, client: Client, message: p.Offer | p.Answer | p.Ice) -> bool:
        """Relay `message` by the socket's remembered route, if it still holds and the message goes that way.

        `_relay` keeps the route when it finds one other member of the room here; any member coming or going
        since (the membership epoch) ends it. The message is written as `_relay` writes it, with no lookup."""
        peer = client.route_peer
        if (peer is None or client.route_epoch != self.membership_epoch or message.room.int != client.route_room
                or (message.to is not None and message.to != peer.session)):
            return False
        self.stats.relayed[_RELAYED[type(message)]] += 1
        peer.write_now(_relayed_text(message) + client.route_tail)
        return True

    def relay_now(self, client: Client, raw: str | bytes) -> bool:
        """A text frame as it is parsed (web/ws.py), before the socket's task is woken for it: True when it
        was an offer, answer or candidate on the socket's route, now relayed. Not when anything of the
        socket's is being handled (`busy`; the caller also checks nothing is waiting), so frames keep their
        order. Anything else, valid or not, is left to `handle_raw`, which decodes it again."""
        if client.route_peer is None or client.busy or not client.greeted or client.ending:
            return False
        try:
            message = p.decode(raw, max_bytes=self.max_message_bytes)
        except p.ProtocolError:
            return False
        if not isinstance(message, (p.Offer, p.Answer, p.Ice)) or not self._on_route(client, message):
            return False
        self.stats.relayed_on_arrival += 1
        return True

    async def _reject(self, client: Client, exc: SignalingError) -> None:
        self.stats.refused[exc.code] += 1
        await client.send(exc.as_message())
        if client.count_error():
            log.warning("closing abusive socket", extra={"session": client.session})
            client.close(CloseCode.POLICY_VIOLATION, "too many invalid messages")

    async def _dispatch(self, client: Client, msg: p.ClientMessage) -> None:
        try:
            await self._route(client, msg)
        except DbError as exc:
            raise SignalingError(exc.code, exc.message, msg.id) from None
        except SignalingError as exc:
            exc.ref = exc.ref or msg.id
            raise

    async def _route(self, client: Client, msg: p.ClientMessage) -> None:
        if isinstance(msg, p.Ping):
            await client.send({"type": "pong", "id": msg.id})
            return
        if isinstance(msg, p.Hello):
            await self._hello(client, msg)
            return
        if not client.greeted:
            raise SignalingError("not_authenticated", "send hello first")
        if isinstance(msg, _SESSION_CHECKED) and not await self._session_live(client):
            return
        match msg:
            case p.Join():
                await self._join(client, msg)
            case p.Leave():
                self._member_room(client, msg.room)
                await self._leave(client, msg.room, reason="left")
                await client.send({"type": "left", "id": msg.id, "room": str(msg.room)})
            case p.Offer() | p.Answer() | p.Ice():  # handle_raw relays these itself once greeted
                await self._relay(client, msg)
            case p.Chat():
                await self._chat(client, msg)
            case p.Media():
                await self._media(client, msg)
            case p.ClaimNext():
                await self._claim(client, msg)
            case p.End():
                await self._end(client, msg)
            case p.CallBack():
                await self._call_back(client, msg)
            case p.AckAlert():
                await safety.ack_alert(self, client, msg)
            case _:  # pragma: no cover - decode() only returns the types above
                raise SignalingError("unknown_type", f"unhandled message {msg!r}")

    # ---- hello -----------------------------------------------------------------------------------

    async def _hello(self, client: Client, msg: p.Hello) -> None:
        if client.greeted:
            raise SignalingError("bad_state", "hello was already received on this socket")
        # The socket said hello in time; if answering takes longer than the timeout (every page reconnecting at
        # once after a restart), closing it would only make it reconnect again.
        self._saying_hello.add(client)
        try:
            await self._greet(client, msg)
        finally:
            self._saying_hello.discard(client)
            if client.greeted:  # its timer would only find it greeted: one callback less per socket
                self._forget_hello_timer(client)
            if client in self._hello_late:
                self._hello_late.discard(client)
                self._hello_overdue(client)  # a refused hello after the timeout: closed now

    async def _greet(self, client: Client, msg: p.Hello) -> None:
        token = msg.token or ""
        if client.staff is None:
            if not token:
                raise SignalingError("not_authenticated", "a patient hello needs the join-link token; "
                                     "staff must sign in first")
        elif token:
            raise SignalingError("bad_message", "staff sockets are known by their session; send no token")
        welcome: dict[str, Any] = {"type": "welcome", "id": msg.id, "role": client.side,
                                   "session": client.session, "ice_servers": self._ice_servers(),
                                   "ice_transport_policy": self.ice_transport_policy,
                                   "max_message_bytes": self.max_message_bytes}
        # Batched with the hellos of other sockets (after a restart every page says hello at once).
        greeting = await self._hellos.submit(_HelloRequest(client, token))
        welcome.update(greeting.welcome)
        for message in (welcome, *greeting.then):
            await client.send(message)
        # Who is online changed. A page whose patient is in a consultation, or not in the queue, is on nobody's
        # list and in nobody's place: no broadcast for it (a reconnect storm is mostly those), but for the
        # other processes' presence (bus).
        if client.staff is not None or welcome.get("state") == "waiting" or self.bus is not None:
            self.queue_changed()

    async def _run_hellos(self, requests: Sequence[_HelloRequest]) -> list[_Greeting | BaseException]:
        """A batch of hellos on one pool connection: the patients' tokens, presence, open entries and
        consultations, and the staff's active rooms and open alerts, a statement each for the whole batch."""
        outcomes: list[_Greeting | BaseException] = [_gone() for _ in requests]
        patients = [i for i, r in enumerate(requests) if r.client.staff is None]
        staff = [i for i, r in enumerate(requests) if r.client.staff is not None]
        async with self.pool.acquire() as con:
            greeted: list[tuple[int, PatientIdentity]] = []
            if patients:
                identities = await self._identify(con, [requests[i].token for i in patients])
                for i, identity in zip(patients, identities, strict=True):
                    client = requests[i].client
                    if isinstance(identity, BaseException):
                        outcomes[i] = identity
                    elif client in self.clients:  # not closed while its hello waited
                        client.patient = identity
                        self.patients.setdefault(identity.patient_id, set()).add(client)
                        client.greeted = True
                        greeted.append((i, identity))
            if greeted:
                ids = [identity.patient_id for _, identity in greeted]
                waiting = await queue_db.patients_back(con, ids, self.offline_grace_s)
                active = await consultations_db.active_for_patients(con, ids)
                for i, identity in greeted:
                    c = active.get(identity.patient_id)
                    state = "paired" if c else ("waiting" if identity.patient_id in waiting else "checkin")
                    outcomes[i] = _Greeting({"state": state}, [self._paired_for_patient(c)] if c else [])
            members = [(i, r.client.staff) for i in staff if (r := requests[i]).client in self.clients
                       and r.client.staff is not None]
            for i, _ in members:
                requests[i].client.greeted = True
            if members:
                rooms = await consultations_db.active_for_doctors(con, [m.staff_id for _, m in members])
                alerts = await safety.open_alerts_many(con, [(m.role, m.facility_id) for _, m in members])
                for (i, m), open_alerts in zip(members, alerts, strict=True):
                    c = rooms.get(m.staff_id)
                    outcomes[i] = _Greeting(
                        {"active_room": str(c.id) if c else None,
                         "staff": {"id": m.staff_id, "name": m.name, "role": m.role}},
                        # Danger alerts nobody has acknowledged yet, also those raised before this socket opened.
                        [safety.alert_message(a) for a in open_alerts])
        return outcomes

    async def _identify(self, con: asyncpg.Connection, tokens: list[str]) -> Sequence[PatientIdentity | BaseException]:
        if self._authenticate_patients is not None:
            return await self._authenticate_patients(con, tokens)
        out: list[PatientIdentity | BaseException] = []
        for token in tokens:  # one at a time, on the batch's connection
            try:
                out.append(await self._authenticate_patient(con, token))
            except (SignalingError, DbError) as exc:
                out.append(exc)
        return out

    @staticmethod
    def _paired_for_patient(c: consultations_db.Consultation) -> dict[str, Any]:
        return {"type": "paired", "room": str(c.id), "polite": True, "peer_name": c.doctor_name,
                "peer_facility": c.doctor_facility}

    # ---- rooms -----------------------------------------------------------------------------------

    def _member_room(self, client: Client, room_id: uuid.UUID) -> Room:
        room = self.rooms.get(room_id)
        if room is None or not room.has(client):
            raise SignalingError("not_in_room", f"you are not in room {room_id}; send join first")
        return room

    async def _authorised_consultation(self, client: Client, room_id: uuid.UUID, *, invited_too: bool = False,
                                       con: asyncpg.Connection | None = None,
                                       ) -> tuple[consultations_db.Consultation, Member]:
        """The consultation and who this socket is in it, if the policy lets it take part (care/access.py):
        its own doctor or patient (conduct_consultation), or, with `invited_too`, staff invited into the
        call (join_call: a consultation_participant row). On `con` if given, else on a pooled connection."""
        if con is None:
            async with self.pool.acquire() as own:
                return await self._authorised_consultation(client, room_id, invited_too=invited_too, con=own)
        (found,) = await self._authorised_consultations([(client, room_id)], con, invited_too=invited_too)
        if isinstance(found, SignalingError):
            raise found
        return found.consultation, found.member

    async def _join(self, client: Client, msg: p.Join) -> None:
        # Batched with the joins of other sockets (after a restart every page rejoins at once): the batch
        # checks the staff sessions, authorises, joins, reads the chat histories and marks the consultations,
        # then tells each joiner and its peers in submission order (`_announce`).
        await self._joins.submit(_JoinRequest(client, msg))

    async def _run_joins(self, requests: Sequence[_JoinRequest]) -> list[None | BaseException]:
        """A batch of joins on one pool connection, a statement each for the whole batch: the staff session
        check, the consultations (with when the patient's page left), the facility relations, the chat
        histories, and the doctors' and started calls' marks. Each join is then done in memory and announced
        in the order the joins arrived, exactly as one at a time (`_enter`, `_announce`)."""
        outcomes: list[None | BaseException] = [None] * len(requests)
        entered: list[_Entered] = []
        histories: dict[uuid.UUID, list[chat_db.ChatMessage]] = {}
        async with self.pool.acquire() as con:
            live = await self._sessions_live([r.client for r in requests], con)
            todo = [i for i, r in enumerate(requests) if r.client in live]  # the others were closed (4401)
            authorised = await self._authorised_consultations(
                [(requests[i].client, requests[i].msg.room) for i in todo], con, invited_too=True)
            for i, auth in zip(todo, authorised, strict=True):
                if isinstance(auth, BaseException):
                    outcomes[i] = auth
                elif requests[i].client in self.clients:  # not closed while its join waited
                    try:
                        entered.append(self._enter(requests[i].client, requests[i].msg, auth))
                    except SignalingError as exc:
                        outcomes[i] = exc
                else:
                    outcomes[i] = _gone()
            if entered:
                marked = [e.room.id for e in entered if e.mark]
                try:
                    histories = await chat_db.histories(con, [e.room.id for e in entered])
                    await consultations_db.joined(con, [e.room.id for e in entered if e.me.role == "doctor"], marked)
                except BaseException:
                    for e in entered:
                        if e.mark:
                            e.room.call_marked = False
                    raise
        for e in entered:
            await self._announce(e, histories[e.room.id])
        return outcomes

    def _enter(self, client: Client, msg: p.Join, auth: _Authorised) -> _Entered:
        """The in-memory part of a join (no await: the room is seen as one join at a time would see it)."""
        c, me = auth.consultation, auth.member
        role = me.role
        room = self.rooms.setdefault(msg.room, Room(msg.room))
        previous = room.members.get(me.key)
        present = len(room.members) + len([k for k in self.remote.get(msg.room, {}) if k not in room.members])
        if previous is None and me.key not in self.remote.get(msg.room, {}) \
                and present >= consultations_db.MAX_MEMBERS:
            raise SignalingError("room_full", f"room {msg.room} already has {present} members; "
                                 f"a call holds at most {consultations_db.MAX_MEMBERS}")
        replaced_socket: Client | None = None
        if previous is not None and previous.client is not client:
            previous.client.rooms.discard(msg.room)
            replaced_socket = previous.client  # told `replaced` once the batch's connection is back in the pool
        room.members[me.key] = me
        self.membership_epoch += 1
        client.rooms.add(msg.room)
        others = room.others(client)
        remote_others = [r for k, r in self.remote.get(msg.room, {}).items()
                         if k != me.key and k not in room.members]
        remote_previous = self.remote.get(msg.room, {}).pop(me.key, None)
        # The counterpart fills the two-person fields (`polite`, `peer_*`) as before: the doctor for the
        # patient and for invited staff, the patient for the doctor. `peers` lists every other member.
        counterpart_key = "patient" if role == "doctor" else "doctor"
        counterpart = room.members.get(counterpart_key)
        remote_counterpart = self.remote.get(msg.room, {}).get(counterpart_key) if counterpart is None else None
        peer_left_at: str | None = None
        if role == "doctor" and counterpart is None and remote_counterpart is None:
            # Since when the doctor has been waiting for nobody (the empty-call panel).
            peer_left_at = _iso(auth.entry_left_at or c.started_at)
        mark = bool(others or remote_others) and not room.call_marked
        if mark:
            room.call_marked = True
        return _Entered(client, msg, c, me, room, previous, replaced_socket, others, remote_others, remote_previous,
                        counterpart, remote_counterpart, peer_left_at, mark)

    async def _announce(self, e: _Entered, history: list[chat_db.ChatMessage]) -> None:
        """Tell a joiner it is in, then its peers (and the other processes)."""
        client, msg, c, me, room, role = e.client, e.msg, e.consultation, e.me, e.room, e.me.role
        counterpart, remote_counterpart, previous = e.counterpart, e.remote_counterpart, e.previous
        if e.replaced_socket is not None:
            await e.replaced_socket.send({"type": "replaced", "room": str(msg.room)})
        # Order matters: the joiner learns it is in before the others hear of it, so their first offers
        # (sent on `peer_joined`) cannot overtake `joined`; and the joiner's own messages are handled only
        # after the batch returns, so they cannot overtake `peer_joined`.
        await client.send({
            "type": "joined", "id": msg.id, "room": str(msg.room), "role": role,
            "polite": role != "doctor",
            "peer_present": counterpart is not None or remote_counterpart is not None,
            "peer_session": counterpart.client.session if counterpart else (
                remote_counterpart.session if remote_counterpart else None),
            "peer_media": room.media.get(counterpart.key) if counterpart else (
                remote_counterpart.media if remote_counterpart else None),
            "modality": c.modality,
            "peer_name": c.patient_name if role == "doctor" else c.doctor_name,
            **({"peer_facility": c.doctor_facility} if role == "patient" else {}),
            "peers": [m.view(to=me, media=room.media.get(m.key)) for m in e.others]
                     + [r.view(to=me) for r in e.remote_others],
            "chat": [self._chat_view(m) for m in history],
            **({"peer_left_at": e.peer_left_at, "peer_page_open": self._patient_online(c.patient_id)}
               if role == "doctor" else {}),
        })
        # A member's newer socket: the others close their connection to the older one (`replaces`).
        replaced = previous.client.session if previous is not None and previous.client is not client else (
            e.remote_previous.session if e.remote_previous is not None else None)
        replaces = {"replaces": replaced} if replaced is not None else {}
        for peer in e.others:
            if room.members.get(peer.key) is peer:
                await peer.client.send({"type": "peer_joined", "room": str(msg.room),
                                        **me.view(to=peer, media=room.media.get(me.key)), **replaces})
        await self._publish("member", {"event": "joined", "room": str(msg.room), **_member_body(me),
                                       "media": room.media.get(me.key)})

    async def _authorised_consultations(self, requests: Sequence[tuple[Client, uuid.UUID]], con: asyncpg.Connection,
                                        *, invited_too: bool = False) -> list[_Authorised | SignalingError]:
        """`_authorised_consultation` for many sockets and rooms at once, with the same decisions and refusals
        (care/access.py for each): the consultations in one statement, the staff's relations to their patients'
        facilities in another, an invitation looked up only for staff the first rule does not let in."""
        found = await consultations_db.for_join(con, [room_id for _, room_id in requests])
        asking = [(client.staff.facility_id, found[room_id][0].patient_facility_id)
                  for client, room_id in requests if client.staff is not None and room_id in found]
        relations = iter(await scope.relations(con, asking))
        out: list[_Authorised | SignalingError] = []
        for client, room_id in requests:
            c, left_at = found.get(room_id, (None, None))
            me: Member | None = None
            if c is not None and client.staff is not None:
                relation = next(relations)
                if access.allows(client.staff.role, Action.conduct_consultation, relation,
                                 assignee=c.doctor_id == client.staff.staff_id):
                    me = Member(client, "doctor", "doctor", c.doctor_name, c.doctor_facility, c.doctor_id)
                elif invited_too:
                    invited = await consultations_db.participant(con, room_id, client.staff.staff_id)
                    if invited is not None and access.allows(client.staff.role, Action.join_call, relation,
                                                             assignee=True):
                        me = Member(client, f"staff:{invited.staff_id}", "specialist", invited.name,
                                    invited.facility, invited.staff_id)
            elif c is not None and access.allows(  # a patient: their own consultation, known by their link
                    Role.patient, Action.conduct_consultation, Relation.own,
                    assignee=client.patient is not None and c.patient_id == client.patient.patient_id):
                me = Member(client, "patient", "patient", c.patient_name)
            if c is None or me is None:
                out.append(SignalingError("forbidden", f"room {room_id} is not yours"))
            elif not c.active:
                out.append(SignalingError("room_closed", f"cannot join consultation in state \"{c.status}\""))
            else:
                out.append(_Authorised(c, me, left_at))
        return out

    async def _leave(self, client: Client, room_id: uuid.UUID, *, reason: str) -> None:
        client.rooms.discard(room_id)
        room = self.rooms.get(room_id)
        me = room.member(client) if room is not None else None
        if room is None or me is None:
            return
        del room.members[me.key]
        self.membership_epoch += 1
        _forget_routes(m.client for m in room.members.values())  # (not kept alive by its peers' routes)
        room.media.pop(me.key, None)
        if me.role == "doctor":
            async with self.pool.acquire() as con:
                await consultations_db.touch_doctor(con, room_id)  # the grace period starts now
        for peer in list(room.members.values()):
            out: dict[str, Any] = {"type": "peer_left", "room": str(room_id), "reason": reason,
                                   "peer_session": client.session, "role": me.role, "name": me.name}
            if me.role == "doctor" and reason == "disconnected":
                out["grace_s"] = self.requeue_grace_s  # the patient keeps their place; requeued after this
            if peer.client.staff is not None:
                out["at"] = _iso(datetime.now(UTC))
            await peer.client.send(out)
        if not room.members:
            self.rooms.pop(room_id, None)
        await self._publish("member", {"event": "left", "room": str(room_id), **_member_body(me),
                                       "reason": reason})

    async def _relay(self, client: Client, msg: p.Offer | p.Answer | p.Ice) -> None:
        """A description or candidate to one member: `to` (a peer session), or the only other member.

        Called for every offer, answer and candidate, so it does the least it can: one pass over the room's
        (at most 4) members, no list built, the room id's text kept on the room."""
        room = self.rooms.get(msg.room)
        to = msg.to
        mine = False
        peer: Member | None = None
        others = 0
        if room is not None:
            for member in room.members.values():
                if member.client is client:
                    mine = True
                    continue
                others += 1
                if to is None or member.client.session == to:
                    peer = member
        if not mine or room is None:
            raise SignalingError("not_in_room", f"you are not in room {msg.room}; send join first")
        remote: RemoteMember | None = None
        elsewhere = self.remote.get(msg.room) if self.remote else None  # no bus, or nobody elsewhere: no lookup
        remote_others = [r for k, r in elsewhere.items() if k not in room.members] if elsewhere else []
        if to is not None:
            if peer is None:
                if to == client.session:
                    raise SignalingError("invalid", "`to` is your own session")
                remote = next((r for r in remote_others if r.session == to), None)
        elif others + len(remote_others) > 1:
            raise SignalingError("to_required", f"the room has {others + len(remote_others)} other members: "
                                 "say which one with `to` (their peer_session)")
        elif peer is None and remote_others:
            remote = remote_others[0]
        kind = _RELAYED[type(msg)]
        if peer is None:
            if remote is not None:  # a member whose socket another process holds (bus)
                payload: dict[str, Any] = ({"type": "ice", "candidate": msg.candidate} if isinstance(msg, p.Ice)
                                           else {"type": kind, "sdp": msg.sdp})
                payload.update({"room": room.text, "from": client.session, "to": remote.session})
                self.stats.relayed[kind] += 1
                await self._publish("room", {"room": room.text, "key": remote.key, "session": remote.session,
                                             "message": msgspec.to_builtins(payload)})
                return
            if not isinstance(msg, p.Ice):
                raise SignalingError("peer_absent", "the other side is not in the room yet" if to is None
                                     else f"no member with session {to[:64]!r} is in the room")
            return  # a candidate trickled before the peer arrived (or after it left) is useless to it: dropped
        # Written as the route writes it (handle_raw): head and value, then `,"room":…,"from":…,"to":…}`.
        tail = "," + p.encode({"room": room.text, "from": client.session, "to": peer.client.session})[1:]
        self.stats.relayed[kind] += 1
        if others == 1 and not remote_others:  # one other member, here: next time, straight to them
            client.route_epoch = self.membership_epoch
            client.route_room = msg.room.int
            client.route_peer = peer.client
            client.route_tail = tail
        peer.client.write_now(_relayed_text(msg) + tail)

    @staticmethod
    def _chat_view(m: chat_db.ChatMessage) -> dict[str, Any]:
        return {"id": m.id, "sender": m.sender, "staff_id": m.staff_id, "text": m.body, "at": _iso(m.sent_at),
                "client_id": m.client_id}

    async def _chat(self, client: Client, msg: p.Chat) -> None:
        room = self._member_room(client, msg.room)
        client_id = msg.id or uuid.uuid4().hex
        async with self.pool.acquire() as con:
            stored = await chat_db.add(con, msg.room, client.side,
                                       client.staff.staff_id if client.staff else None, client_id, msg.text)
        out = {"type": "chat", "room": str(msg.room), "message": self._chat_view(stored)}
        self.stats.relayed["chat"] += 1
        for member in list(room.members.values()):
            await member.client.send(out)
        if self.remote.get(msg.room):
            await self._publish("room", {"room": str(msg.room), "key": None, "session": None, "message": out})

    async def _media(self, client: Client, msg: p.Media) -> None:
        room = self._member_room(client, msg.room)
        me = room.member(client)
        assert me is not None
        room.media[me.key] = {"audio": msg.audio, "video": msg.video}
        if not msg.video and me.role != "specialist":  # the consultation's modality is the patient–doctor call's
            async with self.pool.acquire() as con:
                await consultations_db.set_modality(con, msg.room, "audio")
        out = {"type": "peer_media", "room": str(msg.room), "peer_session": client.session,
               "audio": msg.audio, "video": msg.video}
        for peer in room.others(client):
            self.stats.relayed["media"] += 1
            await peer.client.send(out)
        if self.remote.get(msg.room):
            self.stats.relayed["media"] += 1
            await self._publish("room", {"room": str(msg.room), "key": None, "session": None, "message": out})

    # ---- queue -----------------------------------------------------------------------------------

    async def _claim(self, client: Client, msg: p.ClaimNext) -> None:
        c = await self._claims.submit((client, msg.entry))
        if c is None:
            return  # the socket's session had ended: it is closed and nothing was claimed
        await client.send({"type": "paired", "id": msg.id, "room": str(c.id), "polite": False,
                           "peer_name": c.patient_name, "entry": str(c.queue_entry_id)})
        await self.claimed(c)

    async def _claim_batch(self, items: Sequence[_ClaimItem]
                           ) -> list[consultations_db.Consultation | None | BaseException]:
        """The claims of a batch (group commit): on one connection, the sessions of all their sockets in one
        query, the chosen entries' scope in one, then one statement that claims them all and appends their
        audit events (db.queue.claim_batch). Each claim gets its own outcome, the one it would get alone: a
        consultation, or the refusal (`forbidden`, `not_found`, `queue_empty`, `already_claimed`,
        `doctor_busy`)."""
        outcomes: list[consultations_db.Consultation | None | BaseException] = [None] * len(items)
        self.stats.batches["claims"] += 1
        self.stats.batched["claims"] += len(items)
        async with self.pool.acquire() as con:
            live = await self._sessions_live([client for client, _ in items], con)
            asks: dict[int, queue_db.ClaimAsk] = {}
            for i, (client, entry) in enumerate(items):
                staff = client.staff
                if client not in live:  # closed (4401): no answer
                    continue
                if staff is None or not access.may_ever(staff.role, Action.claim):
                    outcomes[i] = SignalingError("forbidden", "only doctors and specialists can claim patients")
                    continue
                asks[i] = queue_db.ClaimAsk(staff.staff_id, staff.facility_id, entry)
            chosen = [i for i, ask in asks.items() if ask.entry_id is not None]
            if chosen:
                found = await queue_db.entry_relations(con, [(entry, asks[i].facility_id) for i in chosen
                                                             if (entry := asks[i].entry_id) is not None])
                for i, where in zip(chosen, found, strict=True):
                    staff = items[i][0].staff
                    assert staff is not None
                    # Outside the claimer's scope is "no such entry" (the claim's own SQL says the same).
                    if where is None or not access.allows(staff.role, Action.claim, Relation(where[1])):
                        outcomes[i] = SignalingError("not_found", f"no queue entry {asks.pop(i).entry_id}")
            order = list(asks)
            claims: Sequence[queue_db.ClaimOutcome | BaseException]
            try:
                claims = await queue_db.claim_batch(con, [asks[i] for i in order])
            except asyncpg.PostgresError:
                # One claim must not fail the others (a doctor made busy elsewhere at the same instant, say).
                log.warning("a batch of %d claims failed; claiming one by one", len(order), exc_info=True)
                claims = [await self._claim_alone(con, asks[i]) for i in order]
            opened = await consultations_db.get_many(
                con, [claim.consultation_id for claim in claims if isinstance(claim, queue_db.Claim)])
        for i, claim in zip(order, claims, strict=True):
            if isinstance(claim, queue_db.Claim):
                outcomes[i] = opened[claim.consultation_id]
            elif claim is None:
                outcomes[i] = SignalingError("queue_empty", "nobody is waiting with their page open (patients "
                                             "shown offline keep their place; choose one to call them)")
            elif isinstance(claim, DbError):
                outcomes[i] = SignalingError(claim.code, claim.message)
            else:
                outcomes[i] = claim
        return outcomes

    @staticmethod
    async def _claim_alone(con: asyncpg.Connection, ask: queue_db.ClaimAsk
                           ) -> queue_db.ClaimOutcome | BaseException:
        """One claim in its own transaction, the way a claim ran before batches (a batch's fallback)."""
        try:
            return await usecases.claim_patient(con, ask.doctor_id, ask.facility_id, ask.entry_id)
        except DbError as exc:
            return exc
        except asyncpg.PostgresError as exc:  # this claim alone fails
            failed: BaseException = exc
            return failed

    async def claimed(self, c: consultations_db.Consultation) -> None:
        """A doctor took this patient (on the socket, or from a page such as the day's schedule): the
        patient's open pages are told to join the call, and every queue is refreshed."""
        self.stats.claims += 1
        paired = self._paired_for_patient(c)
        for patient_client in list(self.patients.get(c.patient_id, ())):
            await patient_client.send(paired)
        self.queue_changed()
        await self._publish("patient", {"patient_id": c.patient_id, "message": paired})

    # ---- invited staff (a specialist joining a live call) ---------------------------------------------

    async def add_participant(self, consultation_id: uuid.UUID, staff_id: int, *,
                              actor: audit.Actor = audit.SYSTEM) -> consultations_db.Participant:
        """Invite a staff member into a live consultation's call and tell everyone at once.

        The hook for escalations: an accepted urgent request made from a call calls this (or, to commit the
        row in its own transaction, `db.consultations.add_participant` and then `participant_added`).
        Raises DbError: `not_found`, `not_active`, `already_member`, `room_full` (db/consultations.py)."""
        async with self.pool.acquire() as con:
            added = await consultations_db.add_participant(con, consultation_id, staff_id, actor)
        await self.participant_added(consultation_id, added)
        return added

    async def participant_added(self, consultation_id: uuid.UUID, added: consultations_db.Participant) -> None:
        """After the row is committed: the room's members and the invited staff member's own pages get
        `participant_added` (their page then joins the room)."""
        out = {"type": "participant_added", "room": str(consultation_id),
               "staff": {"id": added.staff_id, "name": added.name, "role": added.role, "facility": added.facility}}
        room = self.rooms.get(consultation_id)
        targets = {m.client for m in room.members.values()} if room else set()
        targets |= {c for c in self.clients if c.staff is not None and c.staff.staff_id == added.staff_id
                    and c.greeted}
        for client in targets:
            await client.send(out)
        if self.bus is not None:  # the room's members and the invited staff member's pages on other processes
            await self._publish("participant", {"room": str(consultation_id), "staff_id": added.staff_id,
                                                "message": out})

    async def _end(self, client: Client, msg: p.End) -> None:
        ended = await self._ends.submit((client, msg.room))
        if ended is None:
            return  # the socket's session had ended: it is closed and nothing was ended
        await self.notify_ended(ended.consultation_id, ended.patient_id, by="doctor", ref=msg.id, requester=client)

    async def _end_batch(self, items: Sequence[_EndItem]) -> list[consultations_db.Ended | None | BaseException]:
        """The ends of a batch (group commit): on one connection, the sessions in one query, who each socket
        is in its consultation in one, then one statement ending them all and appending their audit events
        (db.consultations.end_batch). Each end
        gets the outcome it would get alone (`forbidden`, `room_closed`, `doctor_ends`, `not_active`…)."""
        outcomes: list[consultations_db.Ended | None | BaseException] = [None] * len(items)
        self.stats.batches["ends"] += 1
        self.stats.batched["ends"] += len(items)
        async with self.pool.acquire() as con:
            live = await self._sessions_live([client for client, _ in items], con)
            todo = [i for i, (client, _) in enumerate(items) if client in live]  # the others were closed (4401)
            authorised = await self._authorised_consultations([items[i] for i in todo], con, invited_too=True)
            asks: dict[int, consultations_db.EndAsk] = {}
            for i, auth in zip(todo, authorised, strict=True):
                client, room_id = items[i]
                try:
                    if isinstance(auth, SignalingError):
                        raise auth
                    if client.staff is None:
                        # Hanging up is not ending (issue 8.10): the patient leaves the call and may come back;
                        # the doctor can call them back, and only the doctor closes the consultation.
                        raise SignalingError("doctor_ends", "only the doctor ends the consultation; send leave to "
                                             "leave the call")
                    if auth.member.role == "specialist":
                        raise SignalingError("forbidden", "invited staff may leave the call, not end the "
                                             "consultation")
                except SignalingError as exc:
                    outcomes[i] = exc
                    continue
                asks[i] = consultations_db.EndAsk(room_id, "doctor", audit.Actor.staff(client.staff.staff_id))
            order = list(asks)
            ends: Sequence[consultations_db.Ended | DbError | BaseException]
            try:
                ends = await consultations_db.end_batch(con, [asks[i] for i in order])
            except asyncpg.PostgresError:
                log.warning("a batch of %d ends failed; ending one by one", len(order), exc_info=True)
                ends = [await self._end_alone(con, asks[i]) for i in order]
        for i, outcome in zip(order, ends, strict=True):
            outcomes[i] = SignalingError(outcome.code, outcome.message) if isinstance(outcome, DbError) else outcome
        return outcomes

    @staticmethod
    async def _end_alone(con: asyncpg.Connection, ask: consultations_db.EndAsk
                         ) -> consultations_db.Ended | BaseException:
        """One end in its own transaction, the way an end ran before batches (a batch's fallback)."""
        try:
            c = await consultations_db.end(con, ask.consultation_id, ask.by, ask.actor)
        except (DbError, asyncpg.PostgresError) as exc:
            return exc
        return consultations_db.Ended(c.id, c.patient_id)

    async def _call_back(self, client: Client, msg: p.CallBack) -> None:
        if client.staff is None:
            raise SignalingError("forbidden", "only the doctor calls back")
        c, _ = await self._authorised_consultation(client, msg.room)
        pages = list(self.patients.get(c.patient_id, ()))
        elsewhere = not pages and c.patient_id in self.online_patients()  # a page on another process (bus)
        if not pages and not elsewhere:
            raise SignalingError("patient_offline", "the patient has no page open; call their phone or mark "
                                 "them as a no-show")
        message = {**self._paired_for_patient(c), "call_back": True}
        for page in pages:
            await page.send(message)
        if elsewhere:
            await self._publish("patient", {"patient_id": c.patient_id, "message": message})
        await client.send({"type": "calling", "id": msg.id, "room": str(c.id), "pages": len(pages) or 1})

    async def notify_ended(self, room_id: uuid.UUID, patient_id: int, *, by: str, ref: str = "",
                           requester: Client | None = None, outcome: str | None = None) -> None:
        """Tell everyone in the room (and the patient's other tabs) that the consultation is over."""
        await self._ended_here(room_id, patient_id, by=by, ref=ref, requester=requester, outcome=outcome)
        self.queue_changed()
        await self._publish("ended", {"room": str(room_id), "patient_id": patient_id, "by": by,
                                      **({"outcome": outcome} if outcome is not None else {})})

    async def _ended_here(self, room_id: uuid.UUID, patient_id: int, *, by: str, ref: str = "",
                          requester: Client | None = None, outcome: str | None = None) -> None:
        out: dict[str, Any] = {"type": "ended", "room": str(room_id), "by": by}
        if outcome is not None:
            out["outcome"] = outcome
        self.membership_epoch += 1
        self.remote.pop(room_id, None)
        room = self.rooms.pop(room_id, None)
        targets = {m.client for m in room.members.values()} if room else set()
        targets |= self.patients.get(patient_id, set())
        if requester is not None:
            targets.add(requester)
        _forget_routes(targets)
        for member in targets:
            member.rooms.discard(room_id)
            await member.send({**out, "id": ref} if member is requester else out)

    async def to_patient(self, patient_id: int, message: dict[str, Any]) -> int:
        """Send `message` to every open page of a patient (a signed visit summary, say); returns how many.
        Pages stay connected after `ended` for this."""
        clients = list(self.patients.get(patient_id, ()))
        for client in clients:
            await client.send(message)
        await self._publish("patient", {"patient_id": patient_id, "message": message})
        return len(clients)

    def to_staff(self, staff_id: int, message: dict[str, Any]) -> int:
        """Queue `message` for every open page of a staff member (an escalation offer, an answer); returns
        how many pages get it, on every process (0: none open, the caller may fall back to SMS). Never waits
        on a socket. Pages on other processes are counted from their latest presence (signaling/bus.py)."""
        sent = self._to_staff_here(staff_id, message)
        if self.bus is not None:  # their pages on other processes get it too
            task = asyncio.create_task(self._publish("staff", {"staff_id": staff_id, "message": message}))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            sent += self._remote_pages(staff_id)
        return sent

    def staff_pages(self, staff_id: int) -> int:
        """Open pages of a staff member, on every process (those elsewhere from their latest presence)."""
        here = sum(1 for c in self.clients if c.staff is not None and c.staff.staff_id == staff_id and c.greeted)
        return here + self._remote_pages(staff_id)

    def _remote_pages(self, staff_id: int) -> int:
        return sum(presence.pages.get(staff_id, 0) for presence in self._live_remote())

    def _to_staff_here(self, staff_id: int, message: dict[str, Any]) -> int:
        clients = [c for c in self.clients if c.staff is not None and c.staff.staff_id == staff_id and c.greeted]
        text = p.encode(message)
        for client in clients:
            client.post(text)
        return len(clients)

    def queue_changed(self, alert: dict[str, Any] | None = None) -> None:
        """Something changed the queue: broadcast soon (coalesced). `alert` goes to every doctor serving it."""
        if alert is not None:
            self._alerts.append(alert)
            if self.bus is not None:
                self._alerts_out.append(alert)
        self._queue_dirty.set()
        self._queue_publish = self.bus is not None

    async def _broadcast_loop(self) -> None:
        last_s = 0.0  # how long the last broadcast took
        while True:
            await self._queue_dirty.wait()
            await asyncio.sleep(min(max(COALESCE_S, COALESCE_FACTOR * last_s), COALESCE_MAX_S))
            self._queue_dirty.clear()
            presence: dict[str, Any] | None = None
            started = time.perf_counter()
            if self._queue_publish:  # one notification per coalesced burst, whatever its size
                self._queue_publish = False
                alerts, self._alerts_out = self._alerts_out, []
                presence = self._presence()
                await self._publish("queue", {"alerts": alerts, **presence})
            try:
                await self.broadcast_queue()
            except (OSError, asyncpg.PostgresError):
                log.exception("queue broadcast failed; will retry on the next change")
            last_s = time.perf_counter() - started
            self.stats.broadcasts += 1
            self.stats.broadcast_s += last_s
            if presence is not None:  # for processes that start later: after this burst's sockets were served
                await self._save_presence(presence)

    async def broadcast_queue(self) -> None:
        alerts, self._alerts = self._alerts, []
        staff_clients: list[Client] = []
        async for part in slices(self.clients):  # not all at once: see signaling/scan.py
            staff_clients += [c for c in part if c.staff is not None and c.greeted]
        facilities = {c.staff.facility_id for c in staff_clients if c.staff is not None}
        async with self.pool.acquire() as con:  # read only: the connection goes back before building and sending
            parents = await facilities_db.parents(con)
            places = await queue_db.waiting_places(con)
            mean_s = await queue_db.mean_consultation_seconds(con)
            rows = {f: await queue_view.staff_rows(con, f) for f in facilities}
        # Each facility's list is built and encoded once, however many staff sockets show it.
        # Names and reasons only to those the policy lets read the queue; the others get counts and states.
        lists: dict[tuple[int, bool], tuple[str, str]] = {}
        async for part in slices(staff_clients):  # a station's list takes a while to build: relaying goes on
            for c in part:
                assert c.staff is not None
                key = (c.staff.facility_id, access.may_ever(c.staff.role, Action.read_queue))
                if key not in lists:
                    view = queue_view.staff_view(*rows[c.staff.facility_id])
                    if not key[1]:
                        view = queue_view.counts_only(view)
                    lists[key] = (queue_view.list_digest(view), p.encode(view))
        doctors_by_facility = Counter(self.doctor_facilities(self._doctors_among(staff_clients)))
        serving: dict[int, int] = {}  # patient facility → doctors online serving it, counted once per broadcast
        sent = 0
        for patient_id, clients in list(self.patients.items()):
            if patient_id not in places:
                continue
            _, place, facility_id = places[patient_id]
            if facility_id not in serving:
                serving[facility_id] = queue_view.doctors_serving(facility_id, doctors_by_facility, parents)
            text = p.encode(queue_view.waiting_view(place, serving[facility_id], mean_s))
            for client in list(clients):
                await client.send_text(text)
            sent += 1
            if sent % BROADCAST_SLICE == 0:
                # Let the loop run between slices: a claim holding the audit lock (db/audit.py) waits for its
                # next round trip while we write, and every audited write waits for that claim.
                await asyncio.sleep(0)
        for c in staff_clients:
            assert c.staff is not None
            digest, text = lists[(c.staff.facility_id, access.may_ever(c.staff.role, Action.read_queue))]
            if c.last_list_digest != digest:  # an unchanged list is not sent again to the same socket
                c.last_list_digest = digest
                await c.send_text(text)
            for alert in alerts:
                if access.allows(c.staff.role, Action.read_queue,
                                 access.relation_of(c.staff.facility_id, alert["facility_id"], parents)):
                    await c.send({k: v for k, v in alert.items() if k != "facility_id"})

    # ---- other processes (signaling/bus.py) ---------------------------------------------------------

    async def _publish(self, kind: str, body: dict[str, Any]) -> None:
        """Tell the other processes; a failure is logged (their sockets catch up at the next resync)."""
        if self.bus is None:
            return
        try:
            await self.bus.publish(kind, body)
        except (OSError, asyncpg.PostgresError):
            log.exception("could not publish %s to the other processes", kind)

    async def on_bus(self, kind: str, body: dict[str, Any]) -> None:
        """A change made by another process: deliver it to this process's sockets (never published back)."""
        if kind == "queue":
            self._alerts.extend(body.get("alerts", []))
            if "process" in body:
                self._heard_presence(str(body["process"]), body["doctors"], body.get("pages", []),
                                     body["patients"])
            self._queue_dirty.set()
        elif kind == "presence_request":  # a process started or resynchronised: say who is here
            self._queue_publish = True
            self._queue_dirty.set()
            # A starting process marked every patient offline (queue_entry.left_at): ours are here.
            await self._mark_present(list(self.patients))
            await self._publish_members()
        elif kind == "patient_left":  # their last page on another process closed; one here may still be open
            if int(body["patient_id"]) in self.patients:
                await self._mark_present([int(body["patient_id"])])
        elif kind == "patient":
            for client in list(self.patients.get(int(body["patient_id"]), ())):
                await client.send(body["message"])
        elif kind == "ended":
            await self._ended_here(uuid.UUID(body["room"]), int(body["patient_id"]), by=str(body["by"]),
                                   outcome=body.get("outcome"))
            self._queue_dirty.set()
        elif kind == "requeued":
            for member, message in self._requeued_here(uuid.UUID(body["room"]), int(body["patient_id"])):
                await member.send(message)
            self._queue_dirty.set()
        elif kind == "member":
            await self._remote_member(body)
        elif kind == "room":
            await self._room_message(body)
        elif kind == "staff":
            self._to_staff_here(int(body["staff_id"]), body["message"])
        elif kind == "participant":
            room = self.rooms.get(uuid.UUID(body["room"]))
            targets = {m.client for m in room.members.values()} if room else set()
            targets |= {c for c in self.clients if c.staff is not None and c.staff.staff_id == int(body["staff_id"])
                        and c.greeted}
            for client in targets:
                await client.send(body["message"])
        else:
            log.warning("unknown bus message kind %r ignored", kind)

    async def _mark_present(self, patient_ids: list[int]) -> None:
        if not patient_ids:
            return
        try:
            async with self.pool.acquire() as con:
                for patient_id in patient_ids:
                    await queue_db.patient_present(con, patient_id, self.offline_grace_s)
        except (OSError, asyncpg.PostgresError):
            log.exception("could not record that patients are present")
        self._queue_dirty.set()

    def _local_doctors(self) -> dict[int, int]:
        return self._doctors_among(self.clients)

    @staticmethod
    def _doctors_among(clients: Iterable[Client]) -> dict[int, int]:
        """Staff id → facility of the doctors (who may claim) with one of these sockets greeted."""
        return {c.staff.staff_id: c.staff.facility_id
                for c in clients if c.staff is not None and c.greeted and c.staff.may_claim}

    def _presence(self) -> dict[str, Any]:
        if self.bus is None:
            return {}
        roles = {c.staff.staff_id: c.staff.role for c in self.clients if c.staff is not None}
        pages: Counter[int] = Counter(c.staff.staff_id for c in self.clients if c.staff is not None and c.greeted)
        return {"process": self.bus.process_id,
                "doctors": [[staff_id, facility_id, roles.get(staff_id, "")]
                            for staff_id, facility_id in self._local_doctors().items()],
                "pages": [[staff_id, n] for staff_id, n in pages.items()],
                "patients": list(self.patients)}

    def _heard_presence(self, process: str, doctors: list[list[Any]], pages: list[list[int]],
                        patients: list[int], *, age_s: float = 0.0) -> None:
        """Another process's presence (from its `queue` notification, or its row when this one starts)."""
        self.remote_presence[process] = RemotePresence(
            {int(d[0]): int(d[1]) for d in doctors}, {int(d[0]): str(d[2]) for d in doctors if len(d) > 2},
            frozenset(int(patient_id) for patient_id in patients), time.monotonic() - age_s,
            {int(staff_id): int(n) for staff_id, n in pages})

    async def _save_presence(self, presence: dict[str, Any]) -> None:
        """Keep this process's presence in PostgreSQL for processes that start later (the row is rewritten
        only when it changed; otherwise its time is refreshed, at most every PRESENCE_S)."""
        if self.bus is None:
            return
        digest = (presence["doctors"], presence["pages"], presence["patients"])
        now = time.monotonic()
        if digest == self._saved_presence and now - self._saved_presence_at < PRESENCE_S:
            return
        try:
            async with self.pool.acquire() as con:
                if digest == self._saved_presence:
                    await presence_db.touch(con, self.bus.process_id)
                else:
                    await presence_db.save(con, self.bus.process_id, *digest)
        except (OSError, asyncpg.PostgresError):
            log.exception("could not record who is online on this process")
            return
        self._saved_presence, self._saved_presence_at = digest, now

    async def bus_stopping(self) -> None:
        """This process stops: the others forget who was online here at once (not after PRESENCE_TTL_S)."""
        if self.bus is None:
            return
        await self._publish("queue", {"alerts": [], "process": self.bus.process_id, "doctors": [], "pages": [],
                                      "patients": []})
        try:
            async with self.pool.acquire() as con:
                await presence_db.forget(con, self.bus.process_id)
        except (OSError, asyncpg.PostgresError):
            log.exception("could not remove this process's presence row")

    def _live_remote(self) -> list[RemotePresence]:
        """Other processes' presence, forgetting a process silent for PRESENCE_TTL_S (it died or left)."""
        now = time.monotonic()
        for process, presence in list(self.remote_presence.items()):
            if now - presence.at > PRESENCE_TTL_S:
                del self.remote_presence[process]
        return list(self.remote_presence.values())

    def doctors_online(self) -> int:
        """Doctors online (who may claim) on any process, one per person however many tabs they have."""
        doctors = set(self._local_doctors())
        for presence in self._live_remote():
            doctors |= presence.doctors.keys()
        return len(doctors)

    def doctor_facilities(self, here: dict[int, int] | None = None) -> list[int]:
        """One facility per doctor online (who may claim), on any process, however many tabs they have.
        `here`: this process's doctors if the caller has just gathered them (`_doctors_among`)."""
        doctors = self._local_doctors() if here is None else here
        for presence in self._live_remote():
            doctors = {**presence.doctors, **doctors}
        return list(doctors.values())

    def clinicians_online(self, facility_id: int, parents: dict[int, int | None]) -> int:
        """Doctors and specialists who may claim `facility_id`'s patients with a socket open, on any process
        (one per person): whether a danger alert reached someone or the on-call clinician is texted."""
        who = {c.staff.staff_id for c in self.clients
               if c.staff is not None and c.greeted and access.allows(
                   c.staff.role, Action.claim, access.relation_of(c.staff.facility_id, facility_id, parents))}
        for presence in self._live_remote():
            who |= {staff_id for staff_id, facility in presence.doctors.items()
                    if access.allows(presence.roles.get(staff_id, "doctor"), Action.claim,
                                     access.relation_of(facility, facility_id, parents))}
        return len(who)

    def _patient_online(self, patient_id: int) -> bool:
        """Has the patient a page open on any process (`online_patients`, without building the set)?"""
        return patient_id in self.patients or any(patient_id in p.patients for p in self._live_remote())

    def online_patients(self) -> set[int]:
        """Patients with a page open on any process."""
        online = set(self.patients)
        for presence in self._live_remote():
            online |= presence.patients
        return online

    async def _presence_loop(self) -> None:
        """With the bus: say who is online here every PRESENCE_S, so other processes count us (and forget
        a process that stops saying it)."""
        while True:
            await asyncio.sleep(PRESENCE_S)
            self._queue_publish = self.bus is not None
            self._queue_dirty.set()

    async def _publish_members(self) -> None:
        """Every room member on this process, as `present`, so other processes (re)learn them."""
        for room_id, room in list(self.rooms.items()):
            for member in list(room.members.values()):
                await self._publish("member", {"event": "present", "room": str(room_id), **_member_body(member),
                                               "media": room.media.get(member.key)})

    async def bus_started(self) -> None:
        """The bus listens: ask the other processes who is online there, and start saying who is here."""
        self._tasks.append(asyncio.create_task(self._presence_loop(), name="presence"))
        await self._publish("presence_request", {})
        self._queue_publish = True
        self._queue_dirty.set()

    async def _room_message(self, body: dict[str, Any]) -> None:
        """A message for one member here (key and session), or for every member here (key None: chat, media)."""
        room = self.rooms.get(uuid.UUID(body["room"]))
        if room is None:
            return
        for key, member in list(room.members.items()):
            if body["key"] is None or (key == body["key"] and member.client.session == body["session"]):
                await member.client.send(body["message"])

    async def _remote_member(self, body: dict[str, Any]) -> None:
        """Another process's socket joined or left a room (or answers that it is in one)."""
        room_id, session, key = uuid.UUID(body["room"]), str(body["session"]), str(body["key"])
        self.membership_epoch += 1  # whatever it says, routes into that room are looked up again
        room = self.rooms.get(room_id)
        remote = RemoteMember.of(body)
        if body["event"] == "left":
            current = self.remote.get(room_id, {}).get(key)
            if current is not None and current.session == session:
                del self.remote[room_id][key]
                for peer in list(room.members.values()) if room else []:
                    out: dict[str, Any] = {"type": "peer_left", "room": str(room_id), "reason": body["reason"],
                                           "peer_session": session, "role": remote.role, "name": remote.name}
                    if remote.role == "doctor" and body["reason"] == "disconnected":
                        out["grace_s"] = self.requeue_grace_s
                    if peer.client.staff is not None:
                        out["at"] = _iso(datetime.now(UTC))
                    await peer.client.send(out)
            return
        if room is not None and key in room.members and body["event"] != "joined":
            return  # our own member is the newer one; that process hears of it from our `joined`
        known = self.remote.get(room_id, {}).get(key)
        self.remote.setdefault(room_id, {})[key] = remote
        if room is None:
            return
        replaces: dict[str, str] = {}
        previous = room.members.get(key)
        if previous is not None:
            # The same person joined on another process: that socket wins, the others switch to it.
            del room.members[key]
            room.media.pop(key, None)
            previous.client.rooms.discard(room_id)
            await previous.client.send({"type": "replaced", "room": str(room_id)})
            replaces = {"replaces": previous.client.session}
            if not room.members:
                self.rooms.pop(room_id, None)
                return
        elif known is not None and known.session != session:
            replaces = {"replaces": known.session}
        elif known is not None and body["event"] == "present":
            return  # already known as it is: nothing new for our members
        for peer in list(room.members.values()):
            await peer.client.send({"type": "peer_joined", "room": str(room_id), **remote.view(to=peer),
                                    **replaces})
            if body["event"] == "joined":  # tell the joiner's process who is here
                await self._publish("member", {"event": "present", "room": str(room_id), **_member_body(peer),
                                               "media": room.media.get(peer.key)})

    async def resync(self) -> None:
        """After the bus lost notifications: rebuild from PostgreSQL what they would have said. Rooms whose
        consultation ended elsewhere are ended here; waiting patients a doctor took elsewhere are paired;
        every list and place is sent again."""
        ended: list[consultations_db.Consultation] = []
        paired: list[consultations_db.Consultation] = []
        async with self.pool.acquire() as con:
            for room_id in list(self.rooms):
                c = await consultations_db.get(con, room_id)
                if c is not None and not c.active:
                    ended.append(c)
            for patient_id, clients in list(self.patients.items()):
                if any(client.rooms for client in clients):
                    continue
                c = await consultations_db.active_for_patient(con, patient_id)
                if c is not None:
                    paired.append(c)
        for c in ended:
            if c.status == "requeued":
                for member, message in self._requeued_here(c.id, c.patient_id):
                    await member.send(message)
            else:  # who ended it is not kept on the row; "system" says "not you, not your peer here"
                await self._ended_here(c.id, c.patient_id, by="system")
        for c in paired:
            for client in list(self.patients.get(c.patient_id, ())):
                await client.send(self._paired_for_patient(c))
        for client in self.clients:
            client.last_list_digest = None
        # Rooms: forget what the other processes' members were, tell them ours, and ask for theirs.
        self.remote = {}
        self.membership_epoch += 1
        await self._publish_members()
        await self._publish("presence_request", {})
        self._queue_publish = self.bus is not None
        self._queue_dirty.set()

    # ---- doctors who dropped ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        interval = max(1.0, self.requeue_grace_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except (OSError, asyncpg.PostgresError):
                log.exception("requeue sweep failed; will retry")

    async def sweep(self) -> list[uuid.UUID]:
        """Keep connected doctors' consultations alive; put the patients of doctors gone too long back."""
        staff_ids: set[int] = set()
        async for part in slices(self.clients):  # not all at once: see signaling/scan.py
            staff_ids.update(c.staff.staff_id for c in part if c.staff is not None)
        online = sorted(staff_ids)
        outgoing: list[tuple[Client, dict[str, Any]]] = []  # sent after the connection is back in the pool
        async with self.pool.acquire() as con:
            if online:
                await consultations_db.touch_doctors(con, online)
            stale = await consultations_db.stale(con, self.requeue_grace_s)
            requeued: list[uuid.UUID] = []
            patients: list[tuple[uuid.UUID, int]] = []
            for consultation_id in stale:
                c = await consultations_db.get(con, consultation_id)
                entry = await consultations_db.requeue(con, consultation_id, "doctor_disconnected")
                if entry is None or c is None:
                    continue
                requeued.append(consultation_id)
                patients.append((consultation_id, c.patient_id))
                log.info("requeued patient after doctor dropped", extra={"consultation": str(consultation_id)})
                outgoing.extend(self._requeued_here(consultation_id, c.patient_id))
        for member, message in outgoing:
            await member.send(message)
        if requeued:
            self.queue_changed()
        for consultation_id, patient_id in patients:
            await self._publish("requeued", {"room": str(consultation_id), "patient_id": patient_id})
        return requeued

    def _requeued_here(self, consultation_id: uuid.UUID, patient_id: int) -> list[tuple[Client, dict[str, Any]]]:
        self.membership_epoch += 1
        self.remote.pop(consultation_id, None)
        room = self.rooms.pop(consultation_id, None)
        targets = {m.client for m in room.members.values()} if room else set()
        targets |= self.patients.get(patient_id, set())
        _forget_routes(targets)
        out = []
        for member in targets:
            member.rooms.discard(consultation_id)
            out.append((member, {"type": "requeued", "room": str(consultation_id), "reason": "doctor_disconnected"}))
        return out

    # ---- sessions that end everywhere --------------------------------------------------------------

    def _close(self, clients: Iterable[Client], code: CloseCode, reason: str) -> int:
        closed = 0
        for client in list(clients):
            if not client.ending:
                client.close(code, reason)
                closed += 1
        return closed

    def end_staff_session(self, token_hash: bytes) -> int:
        """A staff session was signed out here: close its sockets now (4401). Returns how many."""
        return self._close((c for c in self.clients if c.staff_session == token_hash),
                           CloseCode.SESSION_ENDED, "signed out")

    def end_staff(self, staff_id: int) -> int:
        """Every session of this account ended (deactivated, password changed): close its sockets (4401)."""
        return self._close((c for c in self.clients if c.staff is not None and c.staff.staff_id == staff_id),
                           CloseCode.SESSION_ENDED, "session ended")

    def revoke_link(self, link_jti: uuid.UUID) -> int:
        """The station revoked this join link: close the sockets that said hello with it (4410)."""
        return self._close((c for c in self.clients if c.patient is not None and c.patient.link_jti == link_jti),
                           CloseCode.LINK_REVOKED, "link revoked")

    async def link_revoked(self, link_jti: uuid.UUID, cancelled: queue_db.Cancelled | None) -> None:
        """After a station revoked a link (committed): the patient's sockets close (4410); if that ended
        their consultation, the doctor's page is told (`ended`, by "station"); queues are refreshed."""
        self.revoke_link(link_jti)
        if cancelled is not None and cancelled.consultation_id is not None:
            await self.notify_ended(cancelled.consultation_id, cancelled.patient_id, by="station")
        self.queue_changed()

    async def _session_live(self, client: Client, con: asyncpg.Connection | None = None) -> bool:
        """Before a staff message that acts (join, chat, claim, end): is the socket's session still valid?
        If not, the socket is closed (4401) and the message is not handled. On `con` if given (join checks it
        on the connection it then joins with)."""
        if client.staff is None or client.staff_session is None:
            return True
        if con is None:
            async with self.pool.acquire() as own:
                return await self._session_live(client, own)
        return client in await self._sessions_live([client], con)

    async def _sessions_live(self, clients: Sequence[Client], con: asyncpg.Connection) -> set[Client]:
        """`_session_live` for many sockets in one statement: those that may act (patients always); the
        sockets of sessions that ended are closed (4401)."""
        hashes = list({c.staff_session for c in clients if c.staff is not None and c.staff_session is not None})
        live = await staff_db.live_sessions(con, hashes) if hashes else set()
        ok = {c for c in clients if c.staff is None or c.staff_session is None or c.staff_session in live}
        self._close((c for c in clients if c not in ok), CloseCode.SESSION_ENDED, "session ended")
        return ok

    async def staff_session(self, token_hash: bytes) -> staff_db.Session | None:
        """The live staff session of a socket upgrade's cookie (batched with other upgrades' checks)."""
        return await self._upgrades.submit(token_hash)

    async def _run_sessions(self, token_hashes: Sequence[bytes]) -> list[staff_db.Session | None]:
        async with self.pool.acquire() as con:
            found = await staff_db.sessions(con, token_hashes)
        return [found.get(h) for h in token_hashes]

    async def revalidate(self) -> int:
        """One query for every connected staff session and patient link: close the sockets of sessions that
        expired, were signed out (here or in another process), or whose account was deactivated or had its
        password changed (4401), and of links revoked elsewhere (4410). Returns how many were closed."""
        staff: list[Client] = []
        patients: list[Client] = []
        async for part in slices(self.clients):  # not all at once: see signaling/scan.py
            staff += [c for c in part if c.staff_session is not None and not c.ending]
            patients += [c for c in part if c.patient is not None and not c.ending]
        if not staff and not patients:
            return 0
        async with self.pool.acquire() as con:
            live = await staff_db.live_sessions(con, list({c.staff_session for c in staff if c.staff_session}))
            revoked = await links_db.revoked_among(con, list({c.patient.link_jti for c in patients if c.patient}))
        closed = self._close((c for c in staff if c.staff_session not in live), CloseCode.SESSION_ENDED,
                             "session ended")
        closed += self._close((c for c in patients if c.patient and c.patient.link_jti in revoked),
                              CloseCode.LINK_REVOKED, "link revoked")
        if closed:
            log.info("closed %d sockets whose session or link ended", closed)
        return closed

    async def _revalidate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.session_check_s)
            try:
                await self.revalidate()
            except (OSError, asyncpg.PostgresError):
                log.exception("session revalidation failed; will retry")


@dataclass(frozen=True)
class RemotePresence:
    """Who is online on another process: doctors (staff id → facility) and patients with a page open."""

    doctors: dict[int, int]
    roles: dict[int, str]  # staff id → role, to apply the access policy as on the process holding them
    patients: frozenset[int]
    at: float  # time.monotonic() when heard
    pages: dict[int, int]  # staff id → pages open there (every staff member, whatever their role)


@dataclass(frozen=True)
class RemoteMember:
    """A room member whose socket another process holds (known from its bus notifications): what
    `Member.view()` needs, so our members see them as they would see a member here."""

    key: str
    role: str
    name: str
    facility: str
    staff_id: int | None
    session: str
    media: dict[str, bool] | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> RemoteMember:
        staff_id = body.get("staff_id")
        return cls(str(body["key"]), str(body.get("role", "")), str(body.get("name", "")),
                   str(body.get("facility", "")), int(staff_id) if staff_id is not None else None,
                   str(body["session"]), body.get("media"))

    @property
    def rank(self) -> tuple[int, int]:
        return ({"doctor": 0, "specialist": 1, "patient": 2}.get(self.role, 2), self.staff_id or 0)

    def view(self, *, to: Member) -> dict[str, object]:
        """As `Member.view`: this member as `to` sees them."""
        return {"peer_session": self.session, "role": self.role, "name": self.name, "facility": self.facility,
                "staff_id": self.staff_id, "polite": to.rank > self.rank, "peer_media": self.media}


@dataclass(frozen=True)
class _HelloRequest:
    client: Client
    token: str


@dataclass(frozen=True)
class _Greeting:
    """What a hello's batch found for one socket: fields of its `welcome`, and the messages that follow it."""

    welcome: dict[str, Any]
    then: list[dict[str, Any]]


@dataclass(frozen=True)
class _JoinRequest:
    client: Client
    msg: p.Join


@dataclass(frozen=True)
class _Authorised:
    """A socket the policy lets into a consultation's call, as whom, and when the patient's page last left."""

    consultation: consultations_db.Consultation
    member: Member
    entry_left_at: datetime | None


@dataclass(frozen=True)
class _Entered:
    """A join done in memory, with what its `joined` and `peer_joined` messages need."""

    client: Client
    msg: p.Join
    consultation: consultations_db.Consultation
    me: Member
    room: Room
    previous: Member | None
    replaced_socket: Client | None
    others: list[Member]
    remote_others: list[RemoteMember]
    remote_previous: RemoteMember | None
    counterpart: Member | None
    remote_counterpart: RemoteMember | None
    peer_left_at: str | None
    mark: bool


def _gone() -> SignalingError:
    return SignalingError("bad_state", "the socket closed before its message was answered")


def _member_body(member: Member) -> dict[str, Any]:
    """A member here, as the other processes need to show it (`member` notifications)."""
    return {"key": member.key, "role": member.role, "name": member.name, "facility": member.facility,
            "staff_id": member.staff_id, "session": member.client.session}


# Staff messages that act on patients or records: the session is checked in PostgreSQL first (join, claim_next
# and end check it too, on the connection they then act with: `_join`, `_claim`, `_end`).
_SESSION_CHECKED = (p.Chat,)
# Relayed to a room member as they are (the hot path of a call's set-up).
_RELAYED: dict[type[p.ClientMessage], str] = {p.Offer: "offer", p.Answer: "answer", p.Ice: "ice"}
_OFFER_HEAD = '{"type":"offer","sdp":'
_ANSWER_HEAD = '{"type":"answer","sdp":'
_ICE_HEAD = '{"type":"ice","candidate":'


def _forget_routes(clients: Iterable[Client]) -> None:
    """Drop these sockets' relay routes (the epoch has moved already; this lets the peers they held go)."""
    for client in clients:
        client.route_peer = None


def _relayed_text(msg: p.Offer | p.Answer | p.Ice) -> str:
    """The relayed message up to its route's tail: as `_relay` encodes {"type", "sdp"/"candidate", …}."""
    if isinstance(msg, p.Ice):
        return _ICE_HEAD + p.encode_value(msg.candidate)
    return (_OFFER_HEAD if isinstance(msg, p.Offer) else _ANSWER_HEAD) + p.encode_value(msg.sdp)
