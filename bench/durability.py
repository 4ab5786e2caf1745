"""Durability under `kill -9`: is every acknowledged write there, exactly once, after the server dies?

A real `donghanh serve --demo` process runs against a PostgreSQL that this script owns (one embedded
server in a temporary directory, or `--database-url`), so PostgreSQL survives the app's death as it
would in production, where the database is another process on another disk. Each trial:

1. start the app and wait until it listens (and `/healthz` answers);
2. drive real traffic over HTTP and the websocket — a nurse invites patients (`POST .../invite`), each
   patient consents and checks in with their link, two doctors claim the next patient, join the room,
   chat, sign a note and end the call — and record every write whose success response came back
   ("acknowledged");
3. `kill -9` the app at a random moment of that traffic;
4. restart the app, then check every write acknowledged in the trial is in the database exactly once
   (row and audit event), that no use case is half-written (a queued invitation link whose invitation is
   not marked used, a consultation without its claim event), and that the audit chain verifies.

Writes in flight at the kill are not acknowledged: they may be there or not, but not half.

    python bench/durability.py --trials 50      # ~3-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from yarl import URL

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import harness  # noqa: E402
from db import audit  # noqa: E402
from db.demo import DEMO_PASSWORD  # noqa: E402
from web.auth import LinkSigner, join_url  # noqa: E402
from web.patient_routes import CONSENT_VERSION  # noqa: E402

SECRET = harness.BENCH_SECRET
DOCTORS = ("bacsi.lan", "bacsi.minh")
NURSE = "yta.hoa"


@dataclass(frozen=True)
class Ack:
    """One acknowledged write and how to find it: (query returning a count, its arguments)."""

    kind: str
    checks: tuple[tuple[str, tuple[Any, ...]], ...]


# Every acknowledged write must give exactly 1 for each of its checks: its row and its audit event.
def invitation_ack(invitation_id: uuid.UUID) -> Ack:
    return Ack("invitation", (
        ("SELECT count(*) FROM invitation WHERE id = $1", (invitation_id,)),
        ("SELECT count(*) FROM audit_event WHERE action = 'invitation.create' AND object_id = $1",
         (str(invitation_id),))))


def consent_ack(jti: uuid.UUID) -> Ack:
    return Ack("consent", (
        ("SELECT count(*) FROM consent WHERE link_jti = $1", (jti,)),
        ("SELECT count(*) FROM audit_event WHERE action = 'consent.give' AND object_id = $1", (str(jti),))))


def check_in_ack(entry_id: uuid.UUID, jti: uuid.UUID) -> Ack:
    return Ack("check_in", (
        ("SELECT count(*) FROM queue_entry WHERE id = $1 AND link_jti = $2", (entry_id, jti)),
        ("SELECT count(*) FROM audit_event WHERE action = 'queue.join' AND object_id = $1", (str(entry_id),)),
        ("SELECT count(*) FROM invitation WHERE link_jti = $1 AND status = 'used'", (jti,))))


def claim_ack(consultation_id: uuid.UUID) -> Ack:
    return Ack("claim", (
        ("SELECT count(*) FROM consultation WHERE id = $1", (consultation_id,)),
        ("SELECT count(*) FROM audit_event WHERE action = 'queue.claim' AND details->>'consultation' = $1",
         (str(consultation_id),))))


def chat_ack(consultation_id: uuid.UUID, client_id: str) -> Ack:
    return Ack("chat", (
        ("SELECT count(*) FROM chat_message WHERE consultation_id = $1 AND client_id = $2",
         (consultation_id, client_id)),))


def note_ack(consultation_id: uuid.UUID, version: int) -> Ack:
    return Ack("note_sign", (
        ("SELECT count(*) FROM note_version WHERE consultation_id = $1 AND version = $2",
         (consultation_id, version)),
        ("SELECT count(*) FROM audit_event WHERE action = 'note.sign' AND object_id = $1 "
         "AND (details->>'version')::int = $2", (str(consultation_id), version))))


def end_ack(consultation_id: uuid.UUID) -> Ack:
    return Ack("end", (
        ("SELECT count(*) FROM consultation WHERE id = $1 AND status = 'ended'", (consultation_id,)),
        ("SELECT count(*) FROM audit_event WHERE action = 'consultation.end' AND object_id = $1",
         (str(consultation_id),))))


# A use case half-written: a row whose companion rows of the same use case are missing. $1 = when the
# benchmark started (the demo's seeded history is written by plain INSERTs and is not looked at).
HALF_WRITTEN = {
    "queued_but_invitation_still_active":
        """SELECT count(*) FROM queue_entry q JOIN invitation i ON i.link_jti = q.link_jti
           WHERE i.status = 'active' AND q.arrived_at >= $1""",
    "queue_entry_without_join_event":
        """SELECT count(*) FROM queue_entry q WHERE q.arrived_at >= $1 AND NOT EXISTS (
               SELECT 1 FROM audit_event a WHERE a.action = 'queue.join' AND a.object_id = q.id::text)""",
    "consultation_without_claim_event":
        """SELECT count(*) FROM consultation c WHERE c.started_at >= $1 AND NOT EXISTS (
               SELECT 1 FROM audit_event a WHERE a.action = 'queue.claim'
               AND a.details->>'consultation' = c.id::text)""",
    "ended_without_end_event":
        """SELECT count(*) FROM consultation c WHERE c.started_at >= $1 AND c.status = 'ended' AND NOT EXISTS (
               SELECT 1 FROM audit_event a WHERE a.action = 'consultation.end' AND a.object_id = c.id::text)""",
    "invitation_without_create_event":
        """SELECT count(*) FROM invitation i WHERE i.created_at >= $1 AND NOT EXISTS (
               SELECT 1 FROM audit_event a WHERE a.action = 'invitation.create' AND a.object_id = i.id::text)""",
}


@dataclass
class Traffic:
    """What one trial's clients did: acknowledged writes, and writes sent whose answer never came."""

    acks: list[Ack] = field(default_factory=list)
    attempted: Counter[str] = field(default_factory=Counter)

    def ack(self, a: Ack) -> None:
        self.acks.append(a)


class App:
    """`donghanh serve --demo` in a child process, on a fixed loopback port (so cookies stay valid)."""

    def __init__(self, dsn: str, data_dir: Path, port: int) -> None:
        self.dsn, self.data_dir, self.port = dsn, data_dir, port
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[bytes] | None = None
        self.log = open(data_dir / "app.log", "ab")  # noqa: SIM115 (the children's stderr, closed in stop)

    @property
    def url(self) -> str:
        return f"http://{harness.LOOPBACK}:{self.port}"

    async def start(self) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DONGHANH_")}
        env.update(DATABASE_URL=self.dsn, DONGHANH_DATA_DIR=str(self.data_dir), DONGHANH_SECRET_KEY=SECRET,
                   DONGHANH_HOST=harness.LOOPBACK, DONGHANH_LOG_LEVEL="WARNING")
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", "serve", "--demo",
            "--port", str(self.port), cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=self.log)
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            async for line in self.process.stdout:
                if b"Running on" in line:
                    break
            else:
                raise RuntimeError(f"the app exited before listening; see {self.log.name}")
        self._drain = asyncio.create_task(self.process.stdout.read())  # the rest of the banner, until exit
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as r:
            if r.status != 200:
                raise RuntimeError(f"/healthz answered {r.status} after a restart")
        return time.perf_counter() - started

    def log_tail(self, lines: int = 30) -> str:
        """The end of the app's stderr (all runs so far), to show with a failed trial."""
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)
        self.log.close()


# ---- the clients ---------------------------------------------------------------------------------------

def _jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 timeout=aiohttp.ClientTimeout(total=20))


def _csrf(http: aiohttp.ClientSession, app: App) -> str:
    return http.cookie_jar.filter_cookies(URL(app.url))["dh_csrf"].value


async def sign_in(http: aiohttp.ClientSession, app: App, username: str) -> None:
    await (await http.get(f"{app.url}/staff/login")).read()
    r = await http.post(f"{app.url}/staff/login", allow_redirects=False,
                        data={"username": username, "password": DEMO_PASSWORD, "_csrf": _csrf(http, app)})
    if r.status != 303:
        raise RuntimeError(f"sign-in of {username} answered {r.status}")


async def nurse(app: App, http: aiohttp.ClientSession, db: asyncpg.Connection, patients: list[int],
                traffic: Traffic, rng: random.Random) -> None:
    """Invite a patient for now; the patient consents and checks in with the link. Again and again."""
    link_url = join_url(LinkSigner(SECRET), app.url)
    while True:
        patient_id = rng.choice(patients)
        traffic.attempted["invitation"] += 1
        r = await http.post(f"{app.url}/staff/patients/{patient_id}/invite", allow_redirects=False,
                            data={"_csrf": _csrf(http, app), "kind": "walk_in", "lang": "vi"})
        if r.status != 303:
            raise RuntimeError(f"invite answered {r.status}: {(await r.text())[:300]}")
        invitation_id = uuid.UUID(r.headers["Location"].rsplit("/", 1)[1])
        traffic.ack(invitation_ack(invitation_id))
        row = await db.fetchrow("SELECT i.link_jti, l.expires_at FROM invitation i "
                                "JOIN join_link l ON l.jti = i.link_jti WHERE i.id = $1", invitation_id)
        token = link_url(row["link_jti"], row["expires_at"]).rsplit("/j/", 1)[1]
        bearer = {"Authorization": f"Bearer {token}"}
        async with _jar() as patient:
            traffic.attempted["consent"] += 1
            r = await patient.post(f"{app.url}/api/p/consent", json={"version": CONSENT_VERSION}, headers=bearer)
            if r.status != 200:
                raise RuntimeError(f"consent answered {r.status}: {(await r.text())[:300]}")
            traffic.ack(consent_ack(row["link_jti"]))
            traffic.attempted["check_in"] += 1
            r = await patient.post(f"{app.url}/api/p/checkin", headers=bearer,
                                   json={"symptoms": ["cough"], "reason": "ho"})
            if r.status != 200:
                raise RuntimeError(f"check-in answered {r.status}: {(await r.text())[:300]}")
            body = await r.json()
            if body["created"]:  # not created: the patient was already queued; nothing was written
                traffic.ack(check_in_ack(uuid.UUID(body["entry"]), row["link_jti"]))


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.n = 0
        self.waiting = 0  # patients waiting, from the last `queue_list` the server sent

    async def send(self, **message: Any) -> str:
        self.n += 1
        message.setdefault("id", f"m{self.n}")
        await self.ws.send_str(json.dumps(message))
        return str(message["id"])

    async def expect(self, *kinds: str, ref: str | None = None) -> dict[str, Any]:
        """The next message of one of `kinds` (answering `ref` if given); queue updates are skipped."""
        async with asyncio.timeout(20):
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed: {msg.type!r} {msg.data!r} {msg.extra!r}")
                data: dict[str, Any] = json.loads(msg.data)
                if data["type"] == "queue_list":
                    self.waiting = int(data["total"])
                if data["type"] in kinds and (ref is None or data.get("id") in (ref, None)):
                    return data


async def doctor(app: App, http: aiohttp.ClientSession, traffic: Traffic) -> None:
    """Claim the next patient, join, chat, sign a note, end; again and again."""
    async with http.ws_connect(f"{app.url}/ws") as ws:
        s = Socket(ws)
        welcome = await s.expect("welcome", ref=await s.send(type="hello"))
        if welcome.get("active_room"):  # a call left open by the previous kill: finish it
            await end_call(s, uuid.UUID(welcome["active_room"]), traffic)
        while True:
            traffic.attempted["claim"] += 1
            answer = await s.expect("paired", "error", ref=await s.send(type="claim_next"))
            if answer["type"] == "error":
                traffic.attempted["claim"] -= 1  # queue_empty: nothing was to be written
                if answer.get("code") != "queue_empty":
                    raise RuntimeError(f"claim refused: {answer}")
                # Wait for the queue to show someone, as a doctor's page does (repeated refused claims
                # would get the socket closed as abusive).
                s.waiting = 0
                while s.waiting == 0:
                    await s.expect("queue_list")
                continue
            room = uuid.UUID(answer["room"])
            traffic.ack(claim_ack(room))
            await s.expect("joined", ref=await s.send(type="join", room=str(room)))
            for _ in range(2):
                client_id = uuid.uuid4().hex
                traffic.attempted["chat"] += 1
                await s.send(type="chat", room=str(room), text="Chào bác, bác thấy thế nào?", id=client_id)
                while True:
                    echo = await s.expect("chat")
                    if echo["message"]["client_id"] == client_id:
                        break
                traffic.ack(chat_ack(room, client_id))
            traffic.attempted["note_sign"] += 1
            r = await http.post(f"{app.url}/api/c/{room}/note/sign", headers={"X-CSRF-Token": _csrf(http, app)},
                                json={"expected_version": 0, "note": {"subjective": "Ho 3 ngày",
                                                                      "assessment": "Viêm họng cấp",
                                                                      "diagnoses": ["J02.9"]}})
            if r.status != 201:
                raise RuntimeError(f"note sign answered {r.status}: {(await r.text())[:300]}")
            traffic.ack(note_ack(room, (await r.json())["version"]))
            await end_call(s, room, traffic)


async def end_call(s: Socket, room: uuid.UUID, traffic: Traffic) -> None:
    traffic.attempted["end"] += 1
    answer = await s.expect("ended", "error", ref=await s.send(type="end", room=str(room)))
    if answer["type"] == "error":
        raise RuntimeError(f"end refused: {answer}")
    traffic.ack(end_ack(room))


# ---- one trial -----------------------------------------------------------------------------------------

async def run_clients(app: App, sessions: dict[str, aiohttp.ClientSession], db: asyncpg.Connection,
                      patients: list[int], traffic: Traffic, rng: random.Random, kill_after_s: float) -> str:
    """Run the clients until the kill; returns how the clients ended (they should end by the kill)."""
    tasks = [asyncio.create_task(nurse(app, sessions[NURSE], db, patients, traffic, rng))]
    tasks += [asyncio.create_task(doctor(app, sessions[d], traffic)) for d in DOCTORS]
    done, _ = await asyncio.wait(tasks, timeout=kill_after_s, return_when=asyncio.FIRST_EXCEPTION)
    early = [t for t in done if t.exception() is not None]
    await app.kill()
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if early:
        return f"client failed before the kill: {early[0].exception()!r}"
    unexpected = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, asyncio.CancelledError | aiohttp.ClientError | ConnectionError | TimeoutError)]
    return f"unexpected client error: {unexpected[0]!r}" if unexpected else "killed"


async def verify(db: asyncpg.Connection, acks: list[Ack], since: datetime) -> dict[str, Any]:
    lost: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    for a in acks:
        for query, args in a.checks:
            n = await db.fetchval(query, *args)
            if n == 0:
                lost[a.kind] += 1
            elif n > 1:
                duplicated[a.kind] += 1
    half = {name: int(await db.fetchval(query, since)) for name, query in HALF_WRITTEN.items()}
    broken = await audit.verify_chain(db)
    return {"lost": dict(lost), "duplicated": dict(duplicated), "half_written": {k: v for k, v in half.items() if v},
            "audit_chain_broken_at": broken}


@contextlib.asynccontextmanager
async def database(url: str | None) -> AsyncIterator[tuple[str, str]]:
    """(dsn, how) of the PostgreSQL the app writes to: the given URL, or an embedded one we own."""
    if url:
        yield url, "the given DATABASE_URL"
        return
    from db.embedded import EmbeddedPostgres, ensure_database

    with tempfile.TemporaryDirectory(prefix="dh-durability-pg-") as tmp:
        server = await asyncio.to_thread(EmbeddedPostgres, Path(tmp) / "pg", delete_on_stop=True)
        try:
            await ensure_database(server.dsn(), harness.BENCH_DATABASE)
            yield server.dsn(harness.BENCH_DATABASE), "an embedded PostgreSQL owned by the benchmark process"
        finally:
            await asyncio.to_thread(server.stop)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((harness.LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    load_before = harness.load_average()
    async with database(args.database_url) as (dsn, how):
        with tempfile.TemporaryDirectory(prefix="dh-durability-") as tmp:
            app = App(dsn, Path(tmp), _free_port())
            start_s = [await app.start()]
            db = await asyncpg.connect(dsn)
            await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
            since: datetime = await db.fetchval("SELECT now()")
            settings = {k: await db.fetchval(f"SHOW {k}") for k in ("fsync", "synchronous_commit")}
            patients = [r["id"] for r in await db.fetch(
                "SELECT p.id FROM patient p JOIN staff s ON s.facility_id = p.facility_id "
                "WHERE s.username = $1 ORDER BY p.id", DOCTORS[0])]
            sessions = {name: _jar() for name in (NURSE, *DOCTORS)}
            trials: list[dict[str, Any]] = []
            all_acks: list[Ack] = []
            try:
                for name, http in sessions.items():
                    await sign_in(http, app, name)
                for trial in range(args.trials):
                    traffic = Traffic()
                    kill_after = rng.uniform(args.min_s, args.max_s)
                    ended = await run_clients(app, sessions, db, patients, traffic, rng, kill_after)
                    start_s.append(await app.start())  # restart, then check what the dead process acknowledged
                    check = await verify(db, traffic.acks, since)
                    all_acks += traffic.acks
                    trials.append({"trial": trial + 1, "kill_after_s": round(kill_after, 3), "clients": ended,
                                   "acknowledged": dict(Counter(a.kind for a in traffic.acks)),
                                   "attempted": dict(traffic.attempted), **check})
                    bad = check["lost"] or check["duplicated"] or check["half_written"] or \
                        check["audit_chain_broken_at"] is not None or ended != "killed"
                    print(f"trial {trial + 1:>3}: killed after {kill_after:.2f} s, {len(traffic.acks):>3} writes "
                          f"acknowledged{'  PROBLEM: ' + json.dumps(trials[-1]) if bad else ''}", flush=True)
                    if bad:
                        print(app.log_tail(), flush=True)
                final = await verify(db, all_acks, since)
            finally:
                for http in sessions.values():
                    await http.close()
                await app.stop()
                await db.close()
    acknowledged = Counter(a.kind for a in all_acks)
    lost = sum(final["lost"].values())
    duplicated = sum(final["duplicated"].values())
    return {
        "benchmark": "durability",
        "date": harness.now_iso(),
        "machine": harness.machine(),
        "command": harness.command_line(None),
        "method": (
            f"A real `donghanh serve --demo` process over {how}; PostgreSQL settings {settings}. Each trial "
            "drives a nurse (invite a walk-in patient over HTTP; the patient consents and checks in with the "
            "link) and two doctors on the websocket (claim_next, join, two chat messages, sign a note over "
            "HTTP, end), kills the app with SIGKILL after a random delay "
            f"(uniform {args.min_s}-{args.max_s} s of traffic, seed {args.seed}), restarts it, waits for "
            "/healthz, then checks that every write whose success answer reached the client is in the "
            "database exactly once with its audit event, that no use case is half-written (a queued link "
            "whose invitation is still active, a queue entry, consultation or invitation without its audit "
            "event) and that the audit hash chain verifies. Writes in flight at the kill are not counted."),
        "trials": args.trials,
        "writes_acknowledged": sum(acknowledged.values()),
        "writes_lost": lost,
        "writes_duplicated": duplicated,
        "half_written": final["half_written"],
        "audit_chain_ok": final["audit_chain_broken_at"] is None,
        "clients_ended_by_the_kill": sum(1 for t in trials if t["clients"] == "killed"),
        "acknowledged_by_kind": dict(acknowledged),
        "app_start_s": {"p50": round(harness.percentile(start_s, 50), 2),
                        "max": round(max(start_s), 2)},
        "aim": "0 writes lost or duplicated, nothing half-written, audit chain intact",
        "aim_met": lost == 0 and duplicated == 0 and not final["half_written"]
        and final["audit_chain_broken_at"] is None,
        "load_average_before": load_before,
        "load_average_after": harness.load_average(),
        "per_trial": trials,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="kill -9 / restart cycles (default 50)")
    parser.add_argument("--min-s", type=float, default=0.3, help="earliest kill, seconds into the traffic")
    parser.add_argument("--max-s", type=float, default=2.0, help="latest kill, seconds into the traffic")
    parser.add_argument("--seed", type=int, default=7, help="random seed for kill moments and patients")
    parser.add_argument("--database-url", default=None,
                        help="write to this PostgreSQL instead of a temporary embedded one (it is not emptied)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "durability.json")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    harness.write_result(args.output, result)
    print(f"\n{result['trials']} trials, {result['writes_acknowledged']} writes acknowledged: "
          f"{result['writes_lost']} lost, {result['writes_duplicated']} duplicated, "
          f"half-written {result['half_written'] or 'none'}, audit chain "
          f"{'intact' if result['audit_chain_ok'] else 'BROKEN'}; app start p50 {result['app_start_s']['p50']} s"
          f"\nwritten {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0 if result["aim_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
