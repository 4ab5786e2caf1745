"""The register commands of `donghanh` (issue 10's contract; deployers and statisticians script these):

  donghanh facilities                                   CSV id,level,name,parent_id
  donghanh import htn FILE --facility ID                all or nothing; `row N: …` per bad row
  donghanh report htn --facility ID --month YYYY-MM [--format csv|json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path

import asyncpg

from care import htn_import
from care.appointments import FACILITY_TZ
from care.hypertension import COLUMNS, HypertensionError, Month
from db import facilities as facilities_db
from db import hypertension as htn_db
from db.errors import DbError
from db.migrate import migrate
from db.pool import create_pool
from web import cli_registers
from web.database import database_dsn
from web.settings import Settings

REPORT_COLUMNS = ("facility_id", "facility", "month", *COLUMNS)


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except HypertensionError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    """The three commands, added to the main parser's subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    sub.add_parser("facilities", help="print every facility as CSV (id,level,name,parent_id)",
                   description="Print every facility of the referral hierarchy as CSV with the header "
                               "id,level,name,parent_id (parent_id empty at the top).",
                   epilog=epilog, formatter_class=fmt)
    imp = sub.add_parser("import", help="import a paper register (all or nothing)",
                         description="Import a register kept on paper. Nothing is imported unless every row is "
                                     "good; each bad row is reported as 'row N: …' (the header is row 1).",
                         epilog=epilog, formatter_class=fmt)
    imports = imp.add_subparsers(dest="register", required=True, metavar="REGISTER")
    htn = imports.add_parser("htn", help="hypertension register", epilog=epilog, formatter_class=fmt,
                             description="Import a hypertension register: one row per visit.")
    htn.add_argument("file", metavar="FILE", type=Path,
                     help="UTF-8 CSV with the header " + ",".join(htn_import.HEADER))
    htn.add_argument("--facility", type=int, required=True, metavar="ID", help="the station whose register it is")
    cli_registers.add_tb_import(imports, epilog)
    report = sub.add_parser("report", help="print a register's report (htn: monthly; tb: quarterly cohort)",
                            description="Print, for the facility and each facility below it, the month's "
                                        "indicators over its own patients and those of every facility below it.",
                            epilog=epilog, formatter_class=fmt)
    reports = report.add_subparsers(dest="register", required=True, metavar="REGISTER")
    htn_report = reports.add_parser("htn", help="hypertension monthly indicators", epilog=epilog, formatter_class=fmt,
                                    description="The month's hypertension indicators (HEARTS/Simple definitions).")
    htn_report.add_argument("--facility", type=int, required=True, metavar="ID")
    htn_report.add_argument("--month", type=_month, required=True, metavar="YYYY-MM")
    htn_report.add_argument("--format", choices=["csv", "json"], default="csv")
    cli_registers.add_tb_report(reports, epilog)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command in ("import", "report") and args.register == "tb":
        return cli_registers.run(settings, args)
    if args.command == "facilities":
        return asyncio.run(_with_db(settings, _facilities))
    if args.command == "import":
        try:
            text = args.file.read_bytes().decode("utf-8")
        except OSError as e:
            print(f"donghanh: cannot read {args.file}: {e.strerror}", file=sys.stderr)
            return 1
        except UnicodeDecodeError:
            print(f"donghanh: {args.file} is not UTF-8 text; nothing imported", file=sys.stderr)
            return 1
        today = datetime.now(FACILITY_TZ).date()
        return asyncio.run(_with_db(settings, lambda con: _import(con, text, args.facility, today)))
    return asyncio.run(_with_db(settings, lambda con: _report(con, args.facility, args.month, args.format)))


async def _with_db(settings: Settings, action: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    async with database_dsn(settings) as dsn:
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as con:
                await migrate(con)
                try:
                    return await action(con)
                except DbError as e:
                    print(f"donghanh: {e.message}", file=sys.stderr)
                    return 1
        finally:
            await pool.close()


async def _facilities(con: asyncpg.Connection) -> int:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["id", "level", "name", "parent_id"])
    for f in await facilities_db.all_facilities(con):
        out.writerow([f.id, f.level, f.name, "" if f.parent_id is None else f.parent_id])
    return 0


async def _import(con: asyncpg.Connection, text: str, facility_id: int, today: date) -> int:
    parsed = htn_import.parse_register(text, today=today)
    if parsed.errors:
        for line in parsed.errors:
            print(line, file=sys.stderr)
        return 1
    done = await htn_db.import_register(con, facility_id=facility_id, patients=parsed.patients, staff_id=None,
                                        today=today)
    print(f"imported {len(parsed.patients)} patients ({done.created} new, {done.matched} matched), "
          f"{done.readings} readings, {done.visits} visits without BP into facility {facility_id}")
    return 0


def report_rows(rows: list[htn_db.FacilityRow], month: Month) -> list[dict[str, object]]:
    """The report's rows as dicts in REPORT_COLUMNS order (CSV and JSON alike)."""
    return [{"facility_id": r.facility_id, "facility": r.name, "month": str(month),
             **{k: getattr(r.indicators, k) for k in COLUMNS}} for r in rows]


async def _report(con: asyncpg.Connection, facility_id: int, month: Month, fmt: str) -> int:
    rows = report_rows(await htn_db.monthly_report(con, facility_id, month), month)
    if fmt == "json":
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    out = csv.DictWriter(sys.stdout, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    out.writeheader()
    out.writerows(rows)
    return 0


