"""How long each claim and end holds the audit chain's lock, and how busy that lock is.

Every audited write takes one advisory lock (db/audit.py) and holds it until its transaction commits, so
all of them, on every process, follow each other through it. This runs the claims benchmark's SQL path
(db.usecases.take_patient then db.consultations.end, one coroutine per doctor over a pool of the app's size)
on a fresh embedded PostgreSQL and times, for each audited write, the span from the moment its append
returned (the lock is taken inside that one statement, so this is a lower bound) to its commit. Lock
utilisation = the sum of those spans / the run's wall time: near 1, the lock is what limits claims/s.
Run with --help for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
import asyncpg.transaction  # noqa: E402

from bench import harness  # noqa: E402
from bench.claims import prepare, sql_baseline  # noqa: E402


def _instrument(held: list[float]) -> None:
    """Time each audited write from its append's return to its commit (the append is one statement, migration
    0023: the lock is taken inside it, so this is a lower bound of the time the lock is held)."""
    from db import audit

    got_lock: dict[int, float] = {}  # task → when its append (lock, head, row: one statement) returned
    original_append = audit._append
    original_exit = asyncpg.transaction.Transaction.__aexit__

    async def append(*args: Any) -> None:
        await original_append(*args)
        got_lock[id(asyncio.current_task())] = time.perf_counter()

    async def exit_(self: Any, *exc: Any) -> Any:
        result = await original_exit(self, *exc)
        if not self._nested:  # the transaction's end: the lock is released
            started = got_lock.pop(id(asyncio.current_task()), None)
            if started is not None:
                held.append(1000 * (time.perf_counter() - started))
        return result

    audit._append = append  # type: ignore[assignment]
    asyncpg.transaction.Transaction.__aexit__ = exit_


async def run(dsn: str, stations: Any, pool_size: int) -> dict[str, Any]:
    held: list[float] = []
    _instrument(held)
    result = await sql_baseline(dsn, stations, pool_size)
    seconds = result["seconds"]
    return {**result, "audited_writes": len(held),
            "held_ms": {"p50": harness.percentile(held, 50), "p99": harness.percentile(held, 99),
                        "mean": sum(held) / max(1, len(held))},
            "lock_utilisation": sum(held) / 1000 / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Audit lock hold time per claim and end, and its utilisation.")
    parser.add_argument("--doctors", type=int, default=200, help="doctors (default 200)")
    parser.add_argument("--patients", type=int, default=4_000, help="waiting patients (default 4000)")
    parser.add_argument("--communes", type=int, default=20, help="commune stations (default 20)")
    parser.add_argument("--pool", type=int, default=10, help="pool size (default 10, the app's)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "audit_hold.json",
                        help="result file (default: bench/results/audit_hold.json)")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "audit_hold", "date": harness.now_iso(), "machine": harness.machine(),
                              "command": harness.command_line(argv), "params": {
                                  k: v for k, v in vars(args).items() if k != "output"},
                              "load_average_before": harness.load_average()}
    with harness.embedded_database() as (dsn, tmp):
        with harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app")):
            pass  # migrated
        stations = asyncio.run(prepare(dsn, stations=args.communes, doctors=args.doctors, patients=args.patients,
                                       label="a", first_patient=0))
        result["run"] = asyncio.run(run(dsn, stations, args.pool))
    result["load_average_after"] = harness.load_average()
    r = result["run"]
    print(f"{r['claims']:,d} claims in {r['seconds']:.1f} s = {r['claims_per_s']:.0f}/s; {r['audited_writes']:,d} "
          f"audited writes held the lock p50 {r['held_ms']['p50']:.2f} ms, p99 {r['held_ms']['p99']:.2f} ms, "
          f"mean {r['held_ms']['mean']:.2f} ms; lock busy {100 * r['lock_utilisation']:.0f}% of the run")
    print(f"machine load average (1 min) before/after: {result['load_average_before'][0]:.2f} / "
          f"{result['load_average_after'][0]:.2f}")
    print(f"wrote {harness.write_result(args.output, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
