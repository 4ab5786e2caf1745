"""The TB register's command lines: `donghanh import tb` and `donghanh report tb` (wired in web/htn_cli.py).

The contracts are the issues' (deployers and district statisticians script them): CSV on stdout, `row N: …`
errors on stderr with exit status 1 and nothing imported, exit status 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg

from care import tb
from care.appointments import FACILITY_TZ
from care.tb_import import HEADER, ImportedCase, ImportError_, parse
from db import tb as tb_db
from db.audit import SYSTEM
from db.errors import DbError
from db.migrate import migrate
from db.pool import create_pool
from web.database import database_dsn
from web.settings import Settings


def _today() -> date:
    return datetime.now(FACILITY_TZ).date()


def add_tb_import(kinds: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    """`import tb FILE --facility ID` (issue 11's contract)."""
    tb_import = kinds.add_parser(
        "tb", help="TB treatment register", epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Import a TB treatment register. Header: " + ",".join(HEADER) + ". One row per event; "
                    "rows with the same patient_ref are one case whose details agree. event: "
                    "treatment_start, dose_taken, dose_missed, sputum (result positive|negative), "
                    "regimen_changed_failure, died, transferred_out, or empty with an empty event_on. "
                    "Dates YYYY-MM-DD or DD/MM/YYYY; sex M/F (nam/nữ); bacteriologically_confirmed yes/no; "
                    "an empty regimen is 2HRZE/4HR.")
    tb_import.add_argument("file", metavar="FILE", type=Path, help="UTF-8 CSV file")
    tb_import.add_argument("--facility", type=int, required=True, metavar="ID", help="the facility's id")


def add_tb_report(kinds: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    """`report tb --facility ID --quarter YYYY-Qn [--as-of YYYY-MM-DD] [--format csv|json]`."""
    tb_report = kinds.add_parser(
        "tb", help="TB quarterly cohort outcomes", epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For the facility and each facility below it (each counting its own cases and those "
                    "below): " + ",".join(tb_db.REPORT_COLUMNS) + ". The cohort is the cases registered in "
                    "the quarter, judged as of --as-of (today by default). treatment_success_rate is "
                    "(cured + completed) / registered as a percentage with one decimal, empty when "
                    "nothing was registered (null in JSON).")
    tb_report.add_argument("--facility", type=int, required=True, metavar="ID", help="the facility's id")
    tb_report.add_argument("--quarter", required=True, metavar="YYYY-Qn", help="e.g. 2026-Q1")
    tb_report.add_argument("--as-of", metavar="YYYY-MM-DD", help="judge outcomes as of this date (default today)")
    tb_report.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run `import tb` or `report tb` (web/htn_cli.py sends them here); the exit status."""
    if args.command == "report":
        try:
            tb.parse_quarter(args.quarter)
            as_of = date.fromisoformat(args.as_of) if args.as_of else _today()
        except ValueError as exc:
            print(f"donghanh: {exc}" if "quarter" in str(exc) else f"donghanh: --as-of must be YYYY-MM-DD ({exc})",
                  file=sys.stderr)
            return 2
        return asyncio.run(_with_db(settings, lambda con: _report(con, args.facility, args.quarter, as_of,
                                                                   args.format)))
    if args.command == "import":
        try:
            text = args.file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            print(f"donghanh: {args.file} is not UTF-8 text", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"donghanh: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 1
        try:
            cases = parse(text, _today())
        except ImportError_ as exc:
            print("\n".join(exc.errors), file=sys.stderr)
            print("nothing imported", file=sys.stderr)
            return 1
        return asyncio.run(_with_db(settings, lambda con: _import(con, args.facility, cases)))
    raise ValueError(f"not a TB register command: {args.command}")


async def _with_db(settings: Settings, body: Any) -> int:
    async with database_dsn(settings) as dsn:
        pool = await create_pool(dsn, min_size=1, max_size=1)  # jsonb codec for the audit details
        try:
            async with pool.acquire() as con:
                await migrate(con)
                try:
                    code: int = await body(con)
                except DbError as exc:
                    print(f"donghanh: {exc.message}", file=sys.stderr)
                    return 1
                return code
        finally:
            await pool.close()


async def _import(con: asyncpg.Connection, facility_id: int, cases: list[ImportedCase]) -> int:
    ids = await tb_db.import_cases(con, SYSTEM, facility_id, cases)
    doses = sum(len(c.doses) for c in cases)
    results = sum(len(c.sputum) for c in cases)
    print(f"imported {len(ids)} case(s), {doses} dose day(s), {results} sputum result(s) into facility {facility_id}")
    return 0


def _rate(row: tb_db.ReportRow) -> float | None:
    rate = row.success_rate
    return None if rate is None else round(rate * 100, 1)


async def _report(con: asyncpg.Connection, facility_id: int, quarter: str, as_of: date, fmt: str) -> int:
    rows = await tb_db.cohort_report(con, facility_id, quarter, as_of)
    records = [{"facility_id": r.facility_id, "facility": r.facility, "quarter": r.quarter,
                "registered": r.registered, **{str(o): r.counts[o] for o in tb.Outcome},
                "treatment_success_rate": _rate(r)} for r in rows]
    records = [{k: rec[k] for k in tb_db.REPORT_COLUMNS} for rec in records]
    if fmt == "json":
        print(json.dumps(records, ensure_ascii=False, indent=1))
        return 0
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(tb_db.REPORT_COLUMNS)
    for rec in records:
        out.writerow(["" if v is None else v for v in rec.values()])
    return 0

