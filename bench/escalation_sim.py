"""Specialist escalation, simulated: the real routing code (db/escalations.py, web/escalation_loop.py) on a
temporary embedded PostgreSQL, with the application clock advanced from event to event (no real waiting).

A province hospital, 10 district centres, 200 communes; 40 specialists in 4 specialties on 8-hour shifts
(a quarter at the province); requests arrive with daily peaks (10% urgent, 30% priority, 60% routine);
specialists ignore 20% of offers, decline 10% of the rest, and accept and answer with lognormal delays.
The same workload runs twice in one go: with re-routing (decline or expiry → next candidate at once) and
the baseline without it (one offer, then wait for the deadline). The issue's workload is 10,000 requests
over a week; `--requests` scales it down keeping the arrival rate per hour (default 600 per run, about
0.06 of a week), so the run finishes in under two minutes on a shared 2-core machine.

    python -m bench.escalation_sim [--requests 600] [--seed 9]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import harness

RESULT = harness.RESULTS / "escalation_sim.json"
WEEK_REQUESTS = 10_000
SPECIALTIES = ("cardiology", "tb", "internal_medicine", "paediatrics")
MIX = (("urgent", 0.10), ("priority", 0.30), ("routine", 0.60))
IGNORE, DECLINE = 0.20, 0.10
# Median delays (minutes) to accept an offer and, once accepted, to answer; lognormal with sigma 0.8.
ACCEPT_MEDIAN = {"urgent": 2.0, "priority": 25.0, "routine": 240.0}
ANSWER_MEDIAN = {"urgent": 15.0, "priority": 60.0, "routine": 600.0}
START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # a Monday, 07:00 in Vietnam


class SimClock:
    """The app clock, set by the simulation (web.clock.Clock's interface)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


@dataclass(order=True)
class Event:
    at: datetime
    seq: int
    kind: str = field(compare=False)       # ask | respond | answer
    data: dict[str, Any] = field(compare=False)


def _peak(hour_vn: float) -> float:
    """Relative arrival rate by local hour: morning and early-afternoon clinics, quiet nights."""
    return 0.15 + math.exp(-((hour_vn - 9.5) ** 2) / 4) + 0.7 * math.exp(-((hour_vn - 14.5) ** 2) / 3)


def arrivals(count: int, rng: random.Random) -> list[tuple[datetime, str]]:
    span = timedelta(days=7) * count / WEEK_REQUESTS
    peak_max = 1.2
    out: list[tuple[datetime, str]] = []
    while len(out) < count:  # thinning: uniform times, kept with probability rate/max
        at = START + span * rng.random()
        hour_vn = ((at.hour + 7) % 24) + at.minute / 60
        if rng.random() * peak_max <= _peak(hour_vn):
            r, acc = rng.random(), 0.0
            for urgency, share in MIX:
                acc += share
                if r <= acc:
                    out.append((at, urgency))
                    break
    return sorted(out)


async def build_network(pool: Any, tag: str, rng: random.Random, days: float) -> dict[str, Any]:
    """Facilities, requesting doctors, patients, 40 specialists with 8-hour shifts over the simulated span."""
    from db import staff as staff_db

    async with pool.acquire() as con:
        province = await con.fetchval("INSERT INTO facility (name, level) VALUES ($1, 'province') RETURNING id",
                                      f"Tỉnh {tag}")
        districts = [await con.fetchval("INSERT INTO facility (name, level, parent_id) VALUES ($1, 'district', $2) "
                                        "RETURNING id", f"Huyện {tag} {d}", province) for d in range(10)]
        communes = []
        for d, district in enumerate(districts):
            for c in range(20):
                communes.append(await con.fetchval(
                    "INSERT INTO facility (name, level, parent_id) VALUES ($1, 'commune', $2) RETURNING id",
                    f"Xã {tag} {d}-{c}", district))
        password = staff_db.hash_password("sim")
        doctors, patients = {}, {}
        for commune in communes:
            doctors[commune] = await con.fetchval(
                "INSERT INTO staff (facility_id, username, name, role, password_hash) "
                "VALUES ($1, $2, $3, 'doctor', $4) RETURNING id", commune, f"bs.{tag}.{commune}", "BS xã", password)
            patients[commune] = await con.fetchval(
                "INSERT INTO patient (facility_id, name) VALUES ($1, 'Bệnh nhân') RETURNING id", commune)
        specialists = []
        for i in range(40):
            specialty = SPECIALTIES[i % 4]
            facility = province if i < 10 else districts[(i - 10) % 10]
            staff_id = await con.fetchval(
                "INSERT INTO staff (facility_id, username, name, role, specialties, on_duty, password_hash) "
                "VALUES ($1, $2, $3, 'specialist', $4, true, $5) RETURNING id",
                facility, f"ck.{tag}.{i}", f"BS CK {i}", [specialty], password)
            shift = i % 3  # three 8-hour shifts a day, rotating across specialists
            for day in range(int(days) + 2):
                starts = START + timedelta(days=day, hours=8 * shift - 1)
                await con.execute("INSERT INTO specialist_shift (staff_id, starts_at, ends_at) VALUES ($1, $2, $3)",
                                  staff_id, starts, starts + timedelta(hours=8))
            specialists.append(staff_id)
    return {"communes": communes, "doctors": doctors, "patients": patients, "specialists": specialists}


async def simulate(pool: Any, net: dict[str, Any], workload: list[tuple[datetime, str]], *, reroute: bool,
                   seed: int) -> dict[str, Any]:
    from care.escalation import DEFAULT_POLICIES
    from db import escalations as esc
    from db.errors import DbError
    from web.escalation_loop import EscalationLoop

    rng = random.Random(seed)
    clock = SimClock(START)
    heap: list[Event] = []
    seq = 0

    def schedule(at: datetime, kind: str, **data: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, Event(at, seq, kind, data))

    urgency_of: dict[Any, str] = {}

    def on_notices(notices: list[esc.Notice]) -> None:
        for n in notices:
            if n.kind != "escalation_offer":
                continue
            if rng.random() < IGNORE:
                continue  # the offer is ignored: its window expires
            urgency = urgency_of[n.escalation_id]
            delay = timedelta(minutes=rng.lognormvariate(math.log(ACCEPT_MEDIAN[urgency]), 0.8))
            schedule(clock.now() + delay, "respond", escalation=n.escalation_id, staff=n.staff_id,
                     decline=rng.random() < DECLINE)

    loop = EscalationLoop(pool, clock, DEFAULT_POLICIES, notify=on_notices)  # type: ignore[arg-type]
    for i, (at, urgency) in enumerate(workload):
        schedule(at, "ask", urgency=urgency, commune=net["communes"][rng.randrange(len(net["communes"]))],
                 specialty=SPECIALTIES[i % 4])
    transactions = 0
    while heap:
        async with pool.acquire() as con:
            due = await esc.next_due(con)
        if due is not None and due <= heap[0].at:
            clock.at = max(clock.at, due)
            result = await loop.tick()
            transactions += result.overdue + result.expired + result.routed
            continue
        event = heapq.heappop(heap)
        clock.at = max(clock.at, event.at)
        transactions += 1
        async with pool.acquire() as con:
            try:
                if event.kind == "ask":
                    d = event.data
                    request = esc.Request(net["patients"][d["commune"]], d["specialty"], d["urgency"], "?", {}, True)
                    outcome = await esc.ask(con, request, net["doctors"][d["commune"]], d["commune"], clock.now(),
                                            reroute=reroute)
                    urgency_of[outcome.escalation.id] = d["urgency"]
                    on_notices(outcome.notices)
                elif event.kind == "respond":
                    d = event.data
                    if d["decline"]:
                        outcome = await esc.decline(con, d["escalation"], d["staff"], "bận", clock.now())
                        on_notices(outcome.notices)
                    else:
                        await esc.accept(con, d["escalation"], d["staff"], clock.now())
                        urgency = urgency_of[d["escalation"]]
                        delay = timedelta(minutes=rng.lognormvariate(math.log(ANSWER_MEDIAN[urgency]), 0.8))
                        schedule(clock.now() + delay, "answer", **d)
                elif event.kind == "answer":
                    d = event.data
                    await esc.answer(con, d["escalation"], d["staff"],
                                     esc.Opinion("Nhận định", "Khuyến nghị", False, rng.random() < 0.65), clock.now())
            except DbError:
                pass  # the offer had expired or moved on, the request went overdue: as in life
    # Let every remaining deadline fire.
    clock.at += timedelta(days=4)
    await loop.tick()
    return await measure(pool, net, transactions)


async def measure(pool: Any, net: dict[str, Any], transactions: int) -> dict[str, Any]:
    async with pool.acquire() as con:
        rows = await con.fetch(
            """SELECT e.urgency, e.status, e.hops, e.created_at, e.accepted_at, e.answered_at, e.deadline_at,
                      e.deadline_for,
                      (SELECT count(*) FROM escalation_offer o WHERE o.escalation_id = e.id) AS offers
               FROM escalation e WHERE e.requester_id = ANY ($1::bigint[])""", list(net["doctors"].values()))
    out: dict[str, Any] = {"transactions": transactions}
    for urgency, _ in MIX:
        rs = [r for r in rows if r["urgency"] == urgency]
        accept = [(r["accepted_at"] - r["created_at"]).total_seconds() / 60 for r in rs if r["accepted_at"]]
        answer = [(r["answered_at"] - r["created_at"]).total_seconds() / 60 for r in rs if r["answered_at"]]
        deadline = [r["deadline_at"] for r in rs]
        in_time_accept = sum(1 for r, d in zip(rs, deadline, strict=True) if r["accepted_at"] and r["accepted_at"] <= d)
        in_time_answer = sum(1 for r, d in zip(rs, deadline, strict=True) if r["answered_at"] and r["answered_at"] <= d)
        offered = [r for r in rs if r["offers"] > 0]
        offered_in_time = sum(1 for r in offered if r["accepted_at"] and r["accepted_at"] <= r["deadline_at"])
        n = max(len(rs), 1)
        out[urgency] = {
            "requests": len(rs),
            "accepted_within_deadline": round(in_time_accept / n, 3),
            "answered_within_deadline": round(in_time_answer / n, 3),
            "accepted_within_deadline_when_offered": round(offered_in_time / max(len(offered), 1), 3),
            "never_offered": len(rs) - len(offered),
            "median_accept_min": round(statistics.median(accept), 1) if accept else None,
            "p90_accept_min": round(harness.percentile(accept, 90), 1) if accept else None,
            "median_answer_min": round(statistics.median(answer), 1) if answer else None,
            "p90_answer_min": round(harness.percentile(answer, 90), 1) if answer else None,
            "hops_per_request": round(sum(r["hops"] for r in rs) / n, 2),
            "overdue": sum(1 for r in rs if r["status"] == "overdue"),
        }
    return out


async def run(dsn: str, requests: int, seed: int) -> dict[str, Any]:
    from db.migrate import migrate
    from db.pool import create_pool

    pool = await create_pool(dsn, min_size=2, max_size=6)
    try:
        async with pool.acquire() as con:
            await migrate(con)
        workload = arrivals(requests, random.Random(seed))
        days = 7 * requests / WEEK_REQUESTS
        results: dict[str, Any] = {}
        for label, reroute in (("rerouting", True), ("baseline_no_rerouting", False)):
            net = await build_network(pool, label[:4], random.Random(seed), days)
            started = time.perf_counter()
            results[label] = await simulate(pool, net, workload, reroute=reroute, seed=seed)
            results[label]["wall_s"] = round(time.perf_counter() - started, 1)
        return {"requests_per_run": requests, "simulated_days": round(days, 2), **results}
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="requests per run (the issue: 10,000 a week)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    with harness.embedded_database() as (dsn, _):
        results = asyncio.run(run(dsn, args.requests, args.seed))
    data = {"benchmark": "escalation_sim", "date": harness.now_iso(), "machine": harness.machine(),
            "command": harness.command_line(argv), "method": __doc__, "results": results}
    harness.write_result(args.output, data)
    for label in ("rerouting", "baseline_no_rerouting"):
        r = results[label]
        print(label, f"wall {r['wall_s']} s, {r['transactions']} use cases")
        for urgency, _ in MIX:
            print(" ", urgency, r[urgency])
    u, b = results["rerouting"]["urgent"], results["baseline_no_rerouting"]["urgent"]
    if b["accepted_within_deadline"]:
        print("urgent accepted in time, re-routing / baseline:",
              round(u["accepted_within_deadline"] / b["accepted_within_deadline"], 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
