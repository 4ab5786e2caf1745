"""`donghanh`: serve, migrate, make a patient link, manage staff accounts, show the effective configuration."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import ssl
import sys
import textwrap
from collections.abc import Sequence

import asyncpg
from aiohttp import web

from care.appointments import FACILITY_TZ
from db import demo, short_links
from db import staff as staff_db
from db.errors import DbError
from db.migrate import migrate
from db.pool import create_pool
from web import htn_cli, logs, tls, workers
from web.app import create_app
from web.auth import LinkSigner, issue_link
from web.database import database_dsn
from web.keys import pool_key, settings_key, signer_key
from web.localtime import localtime
from web.settings import CONFIG_VARIABLES, ConfigError, Settings, parse_duration

log = logging.getLogger("donghanh")


def _config_epilog() -> str:
    width = max(len(name) for name, _, _ in CONFIG_VARIABLES)
    lines = ["configuration (environment variables):"]
    lines += [f"  {name:<{width}}  {meaning} [default: {default}]" for name, default, meaning in CONFIG_VARIABLES]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="donghanh",
        description="Đồng Hành: teleconsultation for primary care. Patients join from a link; doctors "
                    "take them from a triage-ordered queue.",
        epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the web server (pages, API, /ws); applies migrations first",
        description="Run the server. With no DATABASE_URL an embedded PostgreSQL is started under the data "
                    "dir and stopped on Ctrl-C.", epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--demo", action="store_true",
                       help="seed demo facilities, staff and patients (once) and print sign-ins and a patient link")
    serve.add_argument("--host", help="address to listen on (overrides DONGHANH_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides DONGHANH_PORT)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="run N processes sharing the port (SO_REUSEPORT) and the database, joined through "
                            "PostgreSQL LISTEN/NOTIFY (DONGHANH_BUS is then on); default 1")

    # Every command that touches the database documents where it comes from (DATABASE_URL, data dir).
    sub.add_parser("migrate", help="apply pending database migrations and exit",
                   description="Apply every pending numbered migration in db/migrations, in order.",
                   epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)

    link = sub.add_parser("link", help="print a join link for a patient",
                          description="Create a signed, expiring join link for a patient and print its URL "
                                      "(send it by SMS or Zalo).",
                          epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    link.add_argument("--patient", type=int, required=True, metavar="ID", help="patient id")
    link.add_argument("--ttl", default=None, metavar="DURATION",
                      help="how long the link works: 90m, 24h, 7d (default: DONGHANH_LINK_TTL, 24h)")

    _staff_parser(sub)
    htn_cli.add_parsers(sub, _config_epilog())

    sub.add_parser("config", help="print the effective configuration (secrets masked)",
                   description="Print the settings this process would use, secrets masked.",
                   epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


# Staff passwords shorter than this are refused (OWASP ASVS V2.1.1: at least 8 characters; we ask 10).
MIN_PASSWORD = 10


def _para(text: str) -> str:
    return textwrap.fill(text, 100, break_on_hyphens=False)


def _staff_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ending = ("Every open session of the account ends at once: a running server closes the account's pages "
              "(websocket close 4401, the page goes to sign-in) within DONGHANH_SESSION_CHECK seconds.")
    staff = sub.add_parser(
        "staff", help="manage a staff account: deactivate it, or set a new password",
        description=_para("Manage staff accounts. " + ending), epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = staff.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    deactivate = actions.add_parser(
        "deactivate", help="the account can no longer sign in; its sessions end",
        description=_para(
            "Deactivate a staff account (someone left, or a password leaked): sign-in is refused from now on. "
            + ending + " The account and everything it wrote stay; the change is audited."),
        epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    deactivate.add_argument("username", metavar="USERNAME", help="the account's sign-in name, e.g. bacsi.lan")
    password = actions.add_parser(
        "password", help="set a new password; the account's sessions end",
        description=_para(
            "Set a new password for a staff account. On a terminal it is asked twice (not echoed); otherwise "
            f"the first line of standard input is used. At least {MIN_PASSWORD} characters. " + ending
            + " The change is audited.") + "\n\nexample:\n  printf '%s\\n' \"$NEW_PASSWORD\" | "
            "donghanh staff password bacsi.lan", epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    password.add_argument("username", metavar="USERNAME", help="the account's sign-in name, e.g. bacsi.lan")


def _read_password() -> str | None:
    """From the terminal (asked twice) or the first line of stdin; None (after saying why) if unusable."""
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != first:
            print("donghanh: the two passwords differ; nothing changed", file=sys.stderr)
            return None
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if len(first) < MIN_PASSWORD:
        print(f"donghanh: a password needs at least {MIN_PASSWORD} characters; nothing changed", file=sys.stderr)
        return None
    return first


async def _staff(settings: Settings, command: str, username: str, password: str | None) -> int:
    async with database_dsn(settings) as dsn:
        pool = await create_pool(dsn, min_size=1, max_size=1)  # jsonb codec for the audit details
        try:
            async with pool.acquire() as con:
                await migrate(con)
                return await _staff_change(con, command, username, password)
        finally:
            await pool.close()


async def _staff_change(con: asyncpg.Connection, command: str, username: str, password: str | None) -> int:
    member = await staff_db.by_username(con, username)
    if member is None:
        print(f"donghanh: no staff account named {username!r}", file=sys.stderr)
        return 1
    if command == "deactivate":
        ended = await staff_db.deactivate(con, member.id)
        print(f"deactivated {member.username}; {ended} session(s) ended")
    else:
        assert password is not None
        ended = await staff_db.set_password(con, member.id, password)
        print(f"new password set for {member.username}; {ended} session(s) ended")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            settings = dataclasses.replace(settings, host=args.host or settings.host,
                                           port=args.port or settings.port)
        ttl_s = parse_duration(args.ttl, name="--ttl") if getattr(args, "ttl", None) else settings.link_ttl_s
        ssl_context = tls.server_context(settings) if args.command == "serve" else None
        if args.command == "serve" and not 1 <= args.workers <= 64:
            raise ConfigError(f"--workers: expected 1 to 64, got {args.workers}")
    except ConfigError as exc:
        print(f"donghanh: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "serve" and args.workers > 1:
            record_served_url(settings)
            asyncio.run(workers.run_workers(settings, demo_data=args.demo, workers=args.workers))
            return 0
        if args.command == "serve":
            serve(settings, demo_data=args.demo, ssl_context=ssl_context)
            return 0
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "link":
            return asyncio.run(_link(settings, args.patient, ttl_s))
        if args.command == "staff":
            password = _read_password() if args.staff_command == "password" else None
            if args.staff_command == "password" and password is None:
                return 2
            return asyncio.run(_staff(settings, args.staff_command, args.username, password))
        if args.command in ("facilities", "import", "report"):
            return htn_cli.run(settings, args)
        if args.command == "config":
            values = settings.masked()
            width = max(len(k) for k in values)
            for key, value in values.items():
                print(f"{key:<{width}}  {value}")
            return 0
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"donghanh: database error: {exc}", file=sys.stderr)
        return 1
    return 2


async def _migrate(settings: Settings) -> int:
    async with database_dsn(settings) as dsn:
        con = await asyncpg.connect(dsn)
        try:
            applied = await migrate(con)
        finally:
            await con.close()
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return 0


async def _link(settings: Settings, patient_id: int, ttl_s: int) -> int:
    settings = settings.with_secret()
    signer = LinkSigner(settings.secret_key, settings.previous_secret_keys)
    async with database_dsn(settings) as dsn:
        con = await asyncpg.connect(dsn)
        try:
            await migrate(con)
            token, expires_at = await issue_link(con, signer, patient_id, ttl_s)
            code = await short_links.code_for(con, signer.verify(token))
        except DbError as exc:
            print(f"donghanh: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await con.close()
    base_url, guessed = link_base_url(settings)
    print(f"{base_url}/j/{token}")
    print(f"short: {base_url}/s/{code}  (for SMS)", file=sys.stderr)
    print(f"expires {localtime(expires_at)} ({FACILITY_TZ.key})", file=sys.stderr)
    if guessed:
        print(f"note: DONGHANH_PUBLIC_URL is not set and no server has recorded its URL in {settings.data_dir}; "
              f"the link assumes {base_url}", file=sys.stderr)
    return 0


SERVED_URL_FILE = "served_url"


def record_served_url(settings: Settings) -> None:
    """`serve` writes the URL it builds links with (the public URL, or its own host and port) into the data
    dir, so `donghanh link` run later prints links to that server and not to a guessed port."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / SERVED_URL_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(settings.base_url + "\n", encoding="utf-8")
    tmp.replace(path)


def link_base_url(settings: Settings) -> tuple[str, bool]:
    """The base of printed links: DONGHANH_PUBLIC_URL when configured, else the URL the server recorded,
    else the default guess (second value True)."""
    if settings.public_url:
        return settings.base_url, False
    try:
        recorded = (settings.data_dir / SERVED_URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    if recorded.startswith(("http://", "https://")):
        return recorded.rstrip("/"), False
    return settings.base_url, True


async def _demo_banner(app: web.Application) -> None:
    """After start-up: where to go, who to sign in as, and a patient link ready to open."""
    settings = app[settings_key]
    async with app[pool_key].acquire() as con:
        patient_id = await demo.patient_not_in_queue(con)
        link = None
        if patient_id is not None:
            token, _ = await issue_link(con, app[signer_key], patient_id, settings.link_ttl_s)
            code = await short_links.code_for(con, app[signer_key].verify(token))
            link = f"{settings.base_url}/s/{code}"
    lines = ["", "Đồng Hành is running (demo data)", f"  open:        {settings.base_url}/",
             f"  staff:       {settings.base_url}/staff  (password for all: {demo.DEMO_PASSWORD})"]
    lines += [f"               {s.username:<12} {s.role:<11} {s.name}" for s in demo.STAFF]
    if link:
        lines.append(f"  patient {patient_id}:   {link}")
    lines.append("  more links:  donghanh link --patient <id>   (patients 1–10)")
    lines.append("  stop:        Ctrl-C")
    print("\n".join(lines) + "\n", flush=True)


def serve(settings: Settings, *, demo_data: bool, ssl_context: ssl.SSLContext | None = None) -> None:
    app = create_app(settings, demo_data=demo_data)
    record_served_url(settings)
    if demo_data:
        app.on_startup.append(_demo_banner)
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, ssl_context=ssl_context,
                print=lambda text: print(text, flush=True), shutdown_timeout=5)

