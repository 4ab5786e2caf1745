"""Specialist escalation, simulated: the real routing code (db/escalations.py, web/escalation_loop.py) on a
temporary embedded PostgreSQL, with the application clock advanced from event to event (no real waiting).

A province hospital, 10 district centres, 200 communes; 40 specialists in 4 specialties on 8-hour shifts
(a quarter at the province); 10,000 requests over a simulated week with daily peaks (10% urgent, 30%
priority, 60% routine); specialists ignore 20% of offers, decline 10% of the rest, and accept and answer
with lognormal delays. The same workload runs twice, at once, each in its own database on the same server:
with re-routing (decline or expiry → the next candidate at once; past the requester's chain to the rest of
the network; again to those whose offer expired, until the deadline) and the baseline without it (one
offer, then wait for the deadline). Each run goes on after the last arrival until nothing is due any more,
so the requests of the week's last hours are followed to their end. `--requests` scales the workload down
keeping the arrival rate per hour (a quick check: `--requests 600`).

Speed (the harness, not the code under test): the next due moment (offer window, deadline, routing retry)
is read from the database only after a loop round or when a use case left a request waiting; otherwise it
is kept from what the use cases returned (offers' windows, requests' deadlines). The simulation's
connections run with `synchronous_commit = off` (durability is not what this measures; every use case
still runs its transactions, row locks and audit chain on PostgreSQL).

    python -m bench.escalation_sim [--requests 10000] [--seed 9]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import statistics
import sys
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
            for day in range(int(days) + 5):  # the week, and the days its last requests may run on
                starts = START + timedelta(days=day, hours=8 * shift - 1)
                await con.execute("INSERT INTO specialist_shift (staff_id, starts_at, ends_at) VALUES ($1, $2, $3)",
                                  staff_id, starts, starts + timedelta(hours=8))
            specialists.append(staff_id)
    return {"communes": communes, "doctors": doctors, "patients": patients, "specialists": specialists}


async def simulate(pool: Any, net: dict[str, Any], workload: list[tuple[datetime, str]], *, reroute: bool,
                   seed: int, label: str) -> dict[str, Any]:
    from care.escalation import DEFAULT_POLICIES, Status
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
    due: datetime | None = None  # the earliest due moment in the database, as far as we know
    stale = True                 # read it again before trusting it

    def on_notices(notices: list[esc.Notice]) -> None:
        nonlocal due
        for n in notices:
            if n.kind != "escalation_offer":
                continue
            expires = datetime.fromisoformat(n.details["expires_at"])
            due = expires if due is None else min(due, expires)
            if rng.random() < IGNORE:
                continue  # the offer is ignored: its window expires
            urgency = urgency_of[n.escalation_id]
            delay = timedelta(minutes=rng.lognormvariate(math.log(ACCEPT_MEDIAN[urgency]), 0.8))
            schedule(clock.now() + delay, "respond", escalation=n.escalation_id, staff=n.staff_id,
                     decline=rng.random() < DECLINE)

    def left_waiting(outcome: esc.Outcome) -> None:
        nonlocal due, stale
        deadline = outcome.escalation.deadline_at
        due = deadline if due is None else min(due, deadline)
        if outcome.escalation.status is Status.requested:
            stale = True  # it waits for someone to come on duty: its next look is in the database

    loop = EscalationLoop(pool, clock, DEFAULT_POLICIES, notify=on_notices)  # type: ignore[arg-type]
    for i, (at, urgency) in enumerate(workload):
        schedule(at, "ask", urgency=urgency, commune=net["communes"][rng.randrange(len(net["communes"]))],
                 specialty=SPECIALTIES[i % 4])
    transactions = ticks = 0
    started = time.perf_counter()
    async with pool.acquire() as con:
        while True:
            if stale:
                due, stale = await esc.next_due(con), False
            if due is not None and (not heap or due <= heap[0].at):
                clock.at = max(clock.at, due)
                result = await loop.tick()
                ticks += 1
                transactions += result.overdue + result.expired + result.routed
                stale = True
                continue
            if not heap:
                break
            event = heapq.heappop(heap)
            clock.at = max(clock.at, event.at)
            transactions += 1
            if transactions % 2000 == 0:
                print(f"{label}: {transactions} use cases, simulated {clock.at - START}, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            try:
                if event.kind == "ask":
                    d = event.data
                    request = esc.Request(net["patients"][d["commune"]], d["specialty"], d["urgency"], "?", {}, True)
                    outcome = await esc.ask(con, request, net["doctors"][d["commune"]], d["commune"], clock.now(),
                                            reroute=reroute)
                    urgency_of[outcome.escalation.id] = d["urgency"]
                    on_notices(outcome.notices)
                    left_waiting(outcome)
                elif event.kind == "respond":
                    d = event.data
                    if d["decline"]:
                        outcome = await esc.decline(con, d["escalation"], d["staff"], "bận", clock.now())
                        on_notices(outcome.notices)
                        left_waiting(outcome)
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
    return {"transactions": transactions, "loop_rounds": ticks, "simulated_until": str(clock.at - START),
            **await measure(pool, net)}


URGENT_WINDOW = timedelta(minutes=15)


async def measure(pool: Any, net: dict[str, Any]) -> dict[str, Any]:
    async with pool.acquire() as con:
        rows = await con.fetch(
            """SELECT e.urgency, e.status, e.hops, e.created_at, e.accepted_at, e.answered_at, e.deadline_at,
                      (SELECT count(*) FROM escalation_offer o WHERE o.escalation_id = e.id) AS offers,
                      EXISTS (SELECT 1 FROM staff s JOIN specialist_shift h ON h.staff_id = s.id
                              WHERE s.id = ANY ($2::bigint[]) AND e.specialty = ANY (s.specialties) AND s.on_duty
                                AND h.starts_at < e.created_at + $3 AND h.ends_at > e.created_at) AS on_duty_exists,
                      (SELECT count(*) FROM escalation_event v WHERE v.escalation_id = e.id
                                                                 AND v.kind = 'reoffered') AS reoffers,
                      (SELECT count(*) FROM escalation_event v WHERE v.escalation_id = e.id
                                                                 AND v.details ->> 'reach' = 'elsewhere') AS lateral,
                      (SELECT CASE WHEN EXISTS (SELECT 1 FROM escalation_offer x WHERE x.escalation_id = e.id
                                                  AND x.staff_id = o.staff_id AND x.id < o.id) THEN 'again'
                                   WHEN o.facility_id IN (SELECT facility_ancestors(e.requester_facility_id))
                                        THEN 'above' ELSE 'elsewhere' END
                       FROM escalation_offer o WHERE o.escalation_id = e.id AND o.status = 'accepted') AS accepted_on
               FROM escalation e WHERE e.requester_id = ANY ($1::bigint[])""",
            list(net["doctors"].values()), net["specialists"], URGENT_WINDOW)
    out: dict[str, Any] = {}
    for urgency, _ in MIX:
        rs = [r for r in rows if r["urgency"] == urgency]
        accept = [(r["accepted_at"] - r["created_at"]).total_seconds() / 60 for r in rs if r["accepted_at"]]
        answer = [(r["answered_at"] - r["created_at"]).total_seconds() / 60 for r in rs if r["answered_at"]]
        in_time_accept = sum(1 for r in rs if r["accepted_at"] and r["accepted_at"] <= r["deadline_at"])
        in_time_answer = sum(1 for r in rs if r["answered_at"] and r["answered_at"] <= r["deadline_at"])
        covered = [r for r in rs if r["on_duty_exists"]]
        covered_in_time = sum(1 for r in covered if r["accepted_at"] and r["accepted_at"] <= r["deadline_at"])
        within_15 = sum(1 for r in covered if r["accepted_at"] and r["accepted_at"] - r["created_at"] <= URGENT_WINDOW)
        n = max(len(rs), 1)
        out[urgency] = {
            "requests": len(rs),
            "accepted_within_deadline": round(in_time_accept / n, 4),
            "answered_within_deadline": round(in_time_answer / n, 4),
            "with_on_duty_specialist": len(covered),
            "accepted_within_deadline_with_on_duty_specialist": round(covered_in_time / max(len(covered), 1), 4),
            "accepted_within_15_min_with_on_duty_specialist": round(within_15 / max(len(covered), 1), 4),
            "never_offered": sum(1 for r in rs if r["offers"] == 0),
            "median_accept_min": round(statistics.median(accept), 1) if accept else None,
            "p90_accept_min": round(harness.percentile(accept, 90), 1) if accept else None,
            "median_answer_min": round(statistics.median(answer), 1) if answer else None,
            "p90_answer_min": round(harness.percentile(answer, 90), 1) if answer else None,
            "hops_per_request": round(sum(r["hops"] for r in rs) / n, 2),
            "offers_per_request": round(sum(r["offers"] for r in rs) / n, 2),
            "overdue": sum(1 for r in rs if r["status"] == "overdue"),
            "lateral_offers_per_request": round(sum(r["lateral"] for r in rs) / n, 3),
            "reoffers_per_request": round(sum(r["reoffers"] for r in rs) / n, 3),
            # Where the offer that was accepted went: above the requester (first time asked), elsewhere in the
            # network (first time asked), or to someone asked again after their earlier offer expired.
            "accepted_on": {k: sum(1 for r in rs if r["accepted_on"] == k) for k in ("above", "elsewhere", "again")},
        }
    return out


def one_at_a_time_ceiling(trials: int = 200_000, seed: int = 9) -> float:
    """The share of urgent requests accepted within 15 minutes if there were always another on-duty
    specialist to offer to, one at a time with 5-minute windows, under this response model (pure Monte
    Carlo, no database): the most any one-at-a-time routing can reach here."""
    rng = random.Random(seed)
    window, deadline = 5.0, 15.0
    won = 0
    for _ in range(trials):
        t = 0.0
        while t < deadline:
            end = min(t + window, deadline)
            if rng.random() < IGNORE:
                t = end
                continue
            delay = rng.lognormvariate(math.log(ACCEPT_MEDIAN["urgent"]), 0.8)
            if rng.random() < DECLINE:
                t = min(t + delay, end)  # declined: the next one at once (or the window ran out first)
                continue
            if t + delay <= end:
                won += 1
                break
            t = end  # too slow: the window expired
    return won / trials


async def _sim_pool(dsn: str) -> Any:
    import asyncpg

    from db.pool import _init_connection

    return await asyncpg.create_pool(dsn, min_size=2, max_size=4, init=_init_connection, command_timeout=60,
                                     server_settings={"synchronous_commit": "off"})


async def one_run(dsn: str, label: str, reroute: bool, workload: list[tuple[datetime, str]], seed: int,
                  days: float) -> dict[str, Any]:
    from db.migrate import migrate

    pool = await _sim_pool(dsn)
    try:
        async with pool.acquire() as con:
            await migrate(con)
        net = await build_network(pool, label[:4], random.Random(seed), days)
        started = time.perf_counter()
        result = await simulate(pool, net, workload, reroute=reroute, seed=seed, label=label)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        return result
    finally:
        await pool.close()


async def run(dsn: str, requests: int, seed: int) -> dict[str, Any]:
    from db.embedded import ensure_database

    workload = arrivals(requests, random.Random(seed))
    days = 7 * requests / WEEK_REQUESTS
    baseline_db = f"{harness.BENCH_DATABASE}_baseline"
    await ensure_database(dsn, baseline_db)
    baseline_dsn = dsn.replace(f"/{harness.BENCH_DATABASE}?", f"/{baseline_db}?")
    rerouting, baseline = await asyncio.gather(
        one_run(dsn, "rerouting", True, workload, seed, days),
        one_run(baseline_dsn, "baseline_no_rerouting", False, workload, seed, days))
    return {"requests_per_run": requests, "simulated_days": round(days, 2), "rerouting": rerouting,
            "baseline_no_rerouting": baseline, "urgent_one_at_a_time_ceiling": round(one_at_a_time_ceiling(), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=WEEK_REQUESTS,
                        help="requests per run (the issue: 10,000 a week; fewer keeps the rate per hour)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    load_before = harness.load_average()
    started = time.perf_counter()
    with harness.embedded_database() as (dsn, _):
        results = asyncio.run(run(dsn, args.requests, args.seed))
    data = {"benchmark": "escalation_sim", "date": harness.now_iso(), "machine": harness.machine(),
            "load_before": load_before, "load_after": harness.load_average(),
            "wall_s": round(time.perf_counter() - started, 1),
            "command": harness.command_line(argv), "method": __doc__, "results": results}
    harness.write_result(args.output, data)
    for label in ("rerouting", "baseline_no_rerouting"):
        r = results[label]
        print(label, f"wall {r['wall_s']} s, {r['transactions']} use cases")
        for urgency, _ in MIX:
            print(" ", urgency, r[urgency])
    u, b = results["rerouting"]["urgent"], results["baseline_no_rerouting"]["urgent"]
    key = "accepted_within_15_min_with_on_duty_specialist"
    if b[key]:
        print(f"urgent accepted within 15 min with an on-duty specialist: {u[key]} (baseline {b[key]}, "
              f"ratio {u[key] / b[key]:.2f}); aim 0.99 {'met' if u[key] >= 0.99 else 'NOT met'}")
    print("ceiling of one-at-a-time routing under this response model:", results["urgent_one_at_a_time_ceiling"])
    print("load before/after", data["load_before"], data["load_after"], "wall", data["wall_s"], "s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
