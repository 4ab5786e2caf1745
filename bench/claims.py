"""Claims per second through the socket protocol: 200 doctors take 10,000 waiting patients, one run.

The real app (web.app.create_app over a fresh embedded PostgreSQL) runs in a child process on 127.0.0.1.
10,000 patients wait in the queues of `--communes` commune stations (their entries written through the db
modules, every page open: load-generator processes hold one socket per patient, each said hello with its
join-link token), and 200 doctors of those stations are signed in, one socket each. Every doctor then loops
as the queue page does: `claim_next` → `paired` → `end` → `ended`, until the server answers `queue_empty`
(a doctor holds one active consultation at a time, so each claim includes ending the previous one). The
figure is claims per second from the first `claim_next` to the last doctor's `queue_empty`; afterwards the
database is asked whether every patient was claimed exactly once (one consultation per queue entry, every
entry done) and the patient sockets report how many `paired` each received.

Baselines, same run, same database, each on another set of waiting patients in other stations, driven directly
by one coroutine per doctor over a 10-connection pool (the app's pool size), no sockets: the SQL path the hub
runs (group commit: `db.queue.claim_batch` and `db.consultations.end_batch` through a `Batcher` each — the
ratio is against this one), and the one-by-one use cases HTTP routes call (`db.usecases.take_patient`, then
`db.consultations.end`).
Run with --help for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from bench import harness  # noqa: E402

_SESSION_TTL = timedelta(hours=4)


@dataclass(frozen=True)
class Station:
    facility_id: int
    doctors: list[tuple[int, str]]  # (staff id, session cookie)
    tokens: list[str]  # the waiting patients' join-link tokens


async def _station(pool: asyncpg.Pool, signer: Any, label: str, parent: int, doctors: int, patients: int,
                   first: int) -> Station:
    from db import patients as patients_db
    from db import queue as queue_db
    from db import staff as staff_db
    from web.auth import issue_link

    async with pool.acquire() as con:
        facility_id = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id, province_code) VALUES ($1, 'commune', $2, '15') "
            "RETURNING id", f"Trạm Y tế {label}", parent)
        staff = []
        for d in range(doctors):
            doctor = await staff_db.create(con, facility_id=facility_id, username=f"bench.{label}.{d}",
                                           name=f"BS. {label} {d}", role="doctor", password="unused", on_duty=True)
            cookie, _ = await staff_db.open_session(con, doctor, _SESSION_TTL)
            staff.append((doctor, cookie))

    async def patient(n: int) -> str:
        async with pool.acquire() as con:
            patient_id = await patients_db.create(con, facility_id=facility_id, name=f"Bệnh nhân {n}",
                                                  sex="female" if n % 2 else "male", birth_year=1940 + n % 70,
                                                  phone=f"09{n:08d}")
            token, _ = await issue_link(con, signer, patient_id, int(_SESSION_TTL.total_seconds()))
            await queue_db.enqueue(con, patient_id=patient_id, link_jti=signer.verify(token),
                                   facility_id=facility_id, level=1 + n % 3, danger_signs=(), reason="ho, sốt",
                                   checkin={"symptoms": ["cough", "fever"]}, audio_only=False)
        return token

    tokens = [await patient(first + n) for n in range(patients)]
    return Station(facility_id, staff, tokens)


async def prepare(dsn: str, *, stations: int, doctors: int, patients: int, label: str,
                  first_patient: int) -> list[Station]:
    """`stations` commune stations under one district, `doctors` signed-in doctors and `patients` waiting
    patients spread evenly over them."""
    from db import staff as staff_db
    from db.pool import create_pool
    from web.auth import LinkSigner

    original = staff_db.hash_password
    shared = staff_db.hash_password("bench-unused-password")
    staff_db.hash_password = lambda password: shared  # doctors sign in by cookie here, never by password
    pool = await create_pool(dsn, min_size=1, max_size=8)
    try:
        async with pool.acquire() as con:
            district = await con.fetchval(
                "INSERT INTO facility (name, level, province_code) VALUES ($1, 'district', '15') RETURNING id",
                f"Trung tâm Y tế ({label})")
        signer = LinkSigner(harness.BENCH_SECRET)
        per_doctor, per_patient = doctors // stations, patients // stations
        return list(await asyncio.gather(*(
            _station(pool, signer, f"{label}{s}", district, per_doctor + (s < doctors % stations),
                     per_patient + (s < patients % stations), first_patient + s * (per_patient + 1))
            for s in range(stations))))
    finally:
        staff_db.hash_password = original
        await pool.close()


# ---- the SQL baseline ---------------------------------------------------------------------------------


async def sql_baseline(dsn: str, stations: list[Station], pool_size: int, *, batched: bool = False) -> dict[str, Any]:
    """The claim and end use cases called directly by one coroutine per doctor over a shared pool: one by one
    (`db.usecases.take_patient`, `db.consultations.end`: what HTTP routes call), or with `batched` by group
    commit as the hub runs them (`db.queue.claim_batch`, `db.consultations.end_batch` through a
    `signaling.batch.Batcher` each, one pool connection per batch; no sockets, no session checks)."""
    from db import audit, usecases
    from db import consultations as consultations_db
    from db import queue as queue_db
    from db.pool import create_pool
    from signaling.batch import Batcher

    pool = await create_pool(dsn, min_size=pool_size, max_size=pool_size)
    claims = 0

    async def claim_batch(asks: Sequence[queue_db.ClaimAsk]) -> Sequence[queue_db.ClaimOutcome | BaseException]:
        async with pool.acquire() as con:
            return await queue_db.claim_batch(con, asks)

    async def end_batch(asks: Sequence[consultations_db.EndAsk]) -> Sequence[Any]:
        async with pool.acquire() as con:
            return await consultations_db.end_batch(con, asks)

    claimer: Batcher[queue_db.ClaimAsk, queue_db.ClaimOutcome] = Batcher(claim_batch, name="claims")
    ender: Batcher[consultations_db.EndAsk, Any] = Batcher(end_batch, name="ends")

    async def doctor(staff_id: int, facility_id: int) -> None:
        nonlocal claims
        while True:
            if batched:
                claimed = await claimer.submit(queue_db.ClaimAsk(staff_id, facility_id))
                if claimed is None:
                    return
                assert isinstance(claimed, queue_db.Claim)
                consultation_id = claimed.consultation_id
            else:
                async with pool.acquire() as con:
                    c = await usecases.take_patient(con, staff_id, facility_id)
                if c is None:
                    return
                consultation_id = c.id
            claims += 1
            if batched:
                await ender.submit(consultations_db.EndAsk(consultation_id, "doctor", audit.Actor.staff(staff_id)))
            else:
                async with pool.acquire() as con:
                    await consultations_db.end(con, consultation_id, "doctor", audit.Actor.staff(staff_id))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(doctor(d, s.facility_id) for s in stations for d, _ in s.doctors))
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    return {"claims": claims, "seconds": seconds, "claims_per_s": claims / seconds, "batched": batched,
            **({"batches": claimer.batches + ender.batches,
                "items_per_batch": (claimer.items + ender.items) / max(1, claimer.batches + ender.batches)}
               if batched else {})}


# ---- the patient pages (load-generator processes) --------------------------------------------------------


def _patients_main(channel: Connection, url: str, tokens: list[str], concurrency: int, fd_limit: int) -> None:
    harness.raise_fd_limit(fd_limit)
    asyncio.run(_patients_async(channel, url, tokens, concurrency))


async def _patients_async(channel: Connection, url: str, tokens: list[str], concurrency: int) -> None:
    import aiohttp
    import msgspec

    decode = msgspec.json.Decoder().decode
    paired: dict[str, int] = {}
    welcomed = 0
    all_in = asyncio.Event()
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def page(session: aiohttp.ClientSession, token: str) -> None:
        nonlocal welcomed
        paired[token] = 0
        try:
            async with gate:
                ws = await session.ws_connect(f"{url}/ws", max_msg_size=1 << 20)
                await ws.send_str(f'{{"type":"hello","id":"h","token":"{token}"}}')
        except (aiohttp.ClientError, OSError) as exc:
            failures.append(repr(exc))
            return
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT or msg.data.startswith('{"type":"queue"'):
                continue
            kind = decode(msg.data).get("type")
            if kind == "welcome":
                welcomed += 1
                if welcomed == len(tokens):
                    all_in.set()
            elif kind == "paired":
                paired[token] += 1
            elif kind == "error":
                failures.append(msg.data[:200])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        tasks = [asyncio.create_task(page(session, t)) for t in tokens]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(600):
                await all_in.wait()
        channel.send({"welcomed": welcomed, "failures": failures[:3]})
        await asyncio.get_running_loop().run_in_executor(None, channel.recv)  # the claims are over
        channel.send({"paired": sorted(paired.values()), "failures": failures[:3]})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---- the doctors (this process) ------------------------------------------------------------------------------


async def doctors_claim(url: str, stations: list[Station]) -> dict[str, Any]:
    """One socket per doctor; each claims, ends and claims again until the queue is empty."""
    import aiohttp
    import msgspec

    decode = msgspec.json.Decoder().decode
    claims = 0
    refused: dict[str, int] = {}
    claim_ms: list[float] = []
    end_ms: list[float] = []
    go = asyncio.Event()
    ready = 0
    everyone = sum(len(s.doctors) for s in stations)
    all_ready = asyncio.Event()

    async def doctor(session: aiohttp.ClientSession, cookie: str) -> None:
        nonlocal claims, ready
        ws = await session.ws_connect(f"{url}/ws", headers={"Cookie": f"dh_session={cookie}"},
                                      max_msg_size=16 << 20)

        async def reply(*kinds: str) -> dict[str, Any]:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT or msg.data.startswith('{"type":"queue_list"'):
                    continue
                data: dict[str, Any] = decode(msg.data)
                if data.get("type") in kinds:
                    return data
            raise ConnectionError("socket closed")

        await ws.send_str('{"type":"hello","id":"h"}')
        await reply("welcome")
        ready += 1
        if ready == everyone:
            all_ready.set()
        await go.wait()
        n = 0
        while True:
            n += 1
            sent = time.perf_counter()
            await ws.send_str(f'{{"type":"claim_next","id":"c{n}"}}')
            answer = await reply("paired", "error")
            claim_ms.append(1000 * (time.perf_counter() - sent))
            if answer["type"] == "error":
                refused[answer["code"]] = refused.get(answer["code"], 0) + 1
                if answer["code"] == "queue_empty":
                    break
                continue
            claims += 1
            sent = time.perf_counter()
            await ws.send_str(f'{{"type":"end","id":"e{n}","room":"{answer["room"]}"}}')
            ended = await reply("ended", "error")
            end_ms.append(1000 * (time.perf_counter() - sent))
            if ended["type"] == "error":
                refused[ended["code"]] = refused.get(ended["code"], 0) + 1
        await ws.close()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        tasks = [asyncio.create_task(doctor(session, cookie)) for s in stations for _, cookie in s.doctors]
        async with asyncio.timeout(120):
            await all_ready.wait()
        started = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - started
    return {"claims": claims, "seconds": seconds, "claims_per_s": claims / seconds, "refused": refused,
            "claim_reply_ms": {"p50": harness.percentile(claim_ms, 50), "p99": harness.percentile(claim_ms, 99)},
            "end_reply_ms": {"p50": harness.percentile(end_ms, 50), "p99": harness.percentile(end_ms, 99)}}


# ---- the run -------------------------------------------------------------------------------------------------


_COUNTED = {"claim_batches": 'donghanh_batches_total{kind="claims"}',
            "claims_batched": 'donghanh_batched_items_total{kind="claims"}',
            "end_batches": 'donghanh_batches_total{kind="ends"}',
            "ends_batched": 'donghanh_batched_items_total{kind="ends"}',
            "queue_broadcasts": "donghanh_queue_broadcasts_total",
            "queue_broadcast_s": "donghanh_queue_broadcast_seconds_total"}


def _counted(url: str) -> dict[str, float]:
    """The server's own counts (/metrics, open to this machine): batches and their items, queue broadcasts."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:  # noqa: S310 - our own server
        lines = response.read().decode().splitlines()
    values = dict(line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return {name: float(values.get(series, "0")) for name, series in _COUNTED.items()}


def _cpu(tmp: Path, server_pid: int, page_pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far: the server, PostgreSQL (the postmaster of `tmp`'s database and its backends),
    this process (the doctors' sockets), the patient pages' processes, and the whole machine (busy time of
    every core, whoever used it: the other work sharing the cores shows here)."""
    import psutil

    def used(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            return float(t.user + t.system)
        return 0.0

    postgres = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(tmp) in " ".join(proc.info["cmdline"] or ()):
            postgres = used(proc) + sum(used(child) for child in proc.children(recursive=True))
            break
    machine = psutil.cpu_times()
    return {"server": used(psutil.Process(server_pid)), "postgres": postgres, "doctors": time.process_time(),
            "pages": sum(used(psutil.Process(pid)) for pid in page_pids),
            "machine": float(machine.user + machine.nice + machine.system + machine.irq + machine.softirq
                             + machine.steal)}


# ---- the run -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Claims per second through the socket protocol (200 doctors, 10,000 waiting patients), "
                    "against the claim SQL's own throughput in the same run.",
        epilog="Example: python bench/claims.py --patients 1000 --doctors 50  (a quick run)")
    parser.add_argument("--doctors", type=int, default=200, help="doctors, one socket each (default 200)")
    parser.add_argument("--patients", type=int, default=10_000, help="waiting patients, pages open (default 10000)")
    parser.add_argument("--communes", type=int, default=20, help="commune stations they are spread over (20)")
    parser.add_argument("--baseline-patients", type=int, default=4_000,
                        help="waiting patients for the SQL baseline, in other stations (default 4000)")
    parser.add_argument("--client-procs", type=int, default=2, help="processes holding patient pages (2)")
    parser.add_argument("--aim", type=float, default=1000.0, help="aim: claims per second (default 1000)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "claims.json",
                        help="result file (default: bench/results/claims.json)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write a CPU-time cProfile of the server to DIR/claims-app.prof")
    args = parser.parse_args(argv)
    if min(args.doctors, args.patients, args.communes, args.client_procs) < 1 or args.doctors < args.communes:
        parser.error("counts must be ≥ 1, and at least one doctor per commune")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.raise_fd_limit(args.doctors + 1024)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "claims", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv),
        "params": {k: v for k, v in vars(args).items() if k not in ("output", "profile")},
        "method": (f"The real app runs in a child process on 127.0.0.1 over a fresh embedded PostgreSQL. "
                   f"{args.patients:,d} patients wait in the queues of {args.communes} commune stations, every "
                   f"page open ({args.client_procs} load-generator processes hold one socket per patient, each "
                   f"said hello with its join-link token); {args.doctors} doctors of those stations, one "
                   "socket each, loop claim_next → paired → end → ended until the server answers queue_empty "
                   "(a doctor holds one consultation at a time, so each claim includes ending the previous "
                   "one). Claims per second run from the first claim_next to the last queue_empty. Then the "
                   "database is checked: one consultation per queue entry, every entry done, and each "
                   "patient page got exactly one `paired`. Baselines in the same run, each on other stations' "
                   f"{args.baseline_patients:,d} waiting patients, one coroutine per doctor over a 10-connection "
                   "pool (the app's size), no sockets: the SQL path the hub runs (group commit: "
                   "db.queue.claim_batch and db.consultations.end_batch through a Batcher each; the ratio is "
                   "against this one), and the one-by-one use cases other callers use (db.usecases.take_patient, "
                   "db.consultations.end)."),
    }
    result["load_average_before"] = harness.load_average()
    profile = None
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile = str(args.profile.resolve() / "claims-app.prof")
    with harness.embedded_database() as (dsn, tmp):
        options = {"dsn": dsn, "data_dir": str(tmp / "app"), "settings": {"requeue_grace_s": 3600}}
        with harness.server_process("app", **options):
            pass  # migrated
        prep = time.perf_counter()
        stations = asyncio.run(prepare(dsn, stations=args.communes, doctors=args.doctors, patients=args.patients,
                                       label="s", first_patient=0))
        result["prepare_s"] = time.perf_counter() - prep
        print(f"prepared {args.patients:,d} waiting patients in {result['prepare_s']:.0f} s", flush=True)
        with harness.server_process("app", **options, profile=profile, profile_clock="cpu") as server:
            tokens = [t for s in stations for t in s.tokens]
            ctx = multiprocessing.get_context("spawn")
            channels, processes = [], []
            for i in range(args.client_procs):
                mine, theirs = ctx.Pipe()
                process = ctx.Process(target=_patients_main, daemon=True, name=f"bench-pages-{i}", args=(
                    theirs, server.url, tokens[i::args.client_procs], 200,
                    len(tokens) // args.client_procs + 1024))
                process.start()
                theirs.close()
                channels.append(mine)
                processes.append(process)
            try:
                connected = time.perf_counter()
                hellos = [c.recv() for c in channels]
                welcomed = sum(h["welcomed"] for h in hellos)
                print(f"{welcomed:,d} patient pages said hello in {time.perf_counter() - connected:.0f} s", flush=True)
                time.sleep(3)  # let the hello storm's queue broadcasts settle
                cpu0 = server.cpu_seconds()
                every0 = _cpu(tmp, server.pid, [p.pid for p in processes if p.pid is not None])
                counted0 = _counted(server.url)
                socket_run = asyncio.run(doctors_claim(server.url, stations))
                socket_run["server_cpu_s"] = server.cpu_seconds() - cpu0
                every1 = _cpu(tmp, server.pid, [p.pid for p in processes if p.pid is not None])
                counted = {k: v - counted0[k] for k, v in _counted(server.url).items()}
                counted["claims_per_batch"] = counted["claims_batched"] / max(1.0, counted["claim_batches"])
                counted["ends_per_batch"] = counted["ends_batched"] / max(1.0, counted["end_batches"])
                socket_run["server_counted"] = counted
                # Where the cores went while the doctors claimed (seconds of CPU; "other" is the rest of the
                # machine's busy time: the other work sharing the cores).
                cpu_s = {k: every1[k] - every0[k] for k in every0}
                cpu_s["other"] = cpu_s["machine"] - sum(v for k, v in cpu_s.items() if k != "machine")
                socket_run["cpu_s"] = cpu_s
                socket_run["server_cpu_ms_per_claim"] = 1000 * socket_run["server_cpu_s"] / max(1, socket_run["claims"])
                socket_run["patient_pages"] = welcomed
                for c in channels:
                    c.send("done")
                pages = [c.recv() for c in channels]
            finally:
                for p in processes:
                    p.join(30)
                    if p.is_alive():
                        p.kill()
        paired = [n for page in pages for n in page["paired"]]
        socket_run["pages_paired_once"] = sum(1 for n in paired if n == 1)
        socket_run["pages_paired_more"] = sum(1 for n in paired if n > 1)
        socket_run["pages_failures"] = [f for page in pages for f in page["failures"]] + \
                                       [f for h in hellos for f in h["failures"]]
        socket_run["database"] = asyncio.run(_verify(dsn, [s.facility_id for s in stations]))
        print(f"socket protocol: {socket_run['claims']:,d} claims in {socket_run['seconds']:.1f} s = "
              f"{socket_run['claims_per_s']:.0f}/s; server CPU {socket_run['server_cpu_ms_per_claim']:.2f} ms/claim; "
              f"reply p50 claim {socket_run['claim_reply_ms']['p50']:.1f} ms, "
              f"end {socket_run['end_reply_ms']['p50']:.1f} ms; "
              f"refused {socket_run['refused']}; database {socket_run['database']}", flush=True)
        c = socket_run["server_counted"]
        print(f"server: {c['claim_batches']:.0f} claim batches ({c['claims_per_batch']:.1f} claims each), "
              f"{c['end_batches']:.0f} end batches ({c['ends_per_batch']:.1f} each), {c['queue_broadcasts']:.0f} queue "
              f"broadcasts taking {c['queue_broadcast_s']:.2f} s", flush=True)
        print("CPU seconds while claiming: " + ", ".join(f"{k} {v:.1f}" for k, v in socket_run["cpu_s"].items())
              + f" (of {(os.cpu_count() or 1) * socket_run['seconds']:.0f} on {os.cpu_count()} cores)", flush=True)
        # Written now: the app's start marks every waiting patient offline (no page open yet), and
        # `claim_next` hands out only patients whose page is open; these are as if their pages were.
        baselines = {}
        for label, batched, first in (("batched", True, 10_000_000), ("one_by_one", False, 20_000_000)):
            base = asyncio.run(prepare(dsn, stations=args.communes, doctors=args.doctors,
                                       patients=args.baseline_patients, label=label[0], first_patient=first))
            baselines[label] = asyncio.run(sql_baseline(dsn, base, pool_size=10, batched=batched))
            print(f"SQL baseline ({label.replace('_', ' ')}): {baselines[label]['claims']:,d} claims in "
                  f"{baselines[label]['seconds']:.1f} s = {baselines[label]['claims_per_s']:.0f}/s", flush=True)
    result["socket"], result["sql_baseline"] = socket_run, baselines
    # The honest ratio: against the SQL path the hub itself runs (group commit), same run, same database.
    result["ratio_socket_to_sql"] = socket_run["claims_per_s"] / baselines["batched"]["claims_per_s"]
    result["ratio_socket_to_sql_one_by_one"] = socket_run["claims_per_s"] / baselines["one_by_one"]["claims_per_s"]
    db = socket_run["database"]
    exactly_once = (db["entries"] == args.patients and db["done"] == args.patients
                    and db["consultations"] == args.patients and db["entries_claimed_twice"] == 0
                    and socket_run["pages_paired_once"] == args.patients)
    result["aim"] = {"text": f"≥ {args.aim:,.0f} claims per second through the socket protocol with "
                             f"{args.doctors} doctors and {args.patients:,d} waiting patients, every patient "
                             "claimed exactly once",
                     "exactly_once": exactly_once,
                     "met": exactly_once and socket_run["claims_per_s"] >= args.aim}
    result["load_average_after"] = harness.load_average()
    result["wall_s"] = time.perf_counter() - started
    print(f"ratio socket/SQL: {result['ratio_socket_to_sql']:.2f} against the batched SQL path, "
          f"{result['ratio_socket_to_sql_one_by_one']:.2f} against one by one; "
          f"every patient claimed exactly once: {exactly_once}")
    print(f"machine load average (1 min) before/after: {result['load_average_before'][0]:.2f} / "
          f"{result['load_average_after'][0]:.2f}")
    print(f"aim: {result['aim']['text']} → {'met' if result['aim']['met'] else 'NOT met'}")
    print(f"wrote {harness.write_result(args.output, result)} ({result['wall_s']:.0f} s)")
    return 0


async def _verify(dsn: str, facilities: list[int]) -> dict[str, int]:
    """From the database: the stations' queue entries, how many are done, their consultations, and entries
    with more than one consultation."""
    con = await asyncpg.connect(dsn)
    try:
        row = await con.fetchrow(
            """SELECT count(*) AS entries, count(*) FILTER (WHERE q.status = 'done') AS done,
                      coalesce(sum(c.n), 0) AS consultations,
                      count(*) FILTER (WHERE c.n > 1) AS entries_claimed_twice
               FROM queue_entry q
               LEFT JOIN (SELECT queue_entry_id, count(*) AS n FROM consultation GROUP BY 1) c
                      ON c.queue_entry_id = q.id
               WHERE q.facility_id = ANY($1::bigint[])""", facilities)
    finally:
        await con.close()
    return {k: int(row[k]) for k in ("entries", "done", "consultations", "entries_claimed_twice")}


if __name__ == "__main__":
    raise SystemExit(main())
