"""db.migrate on a real PostgreSQL: order, bookkeeping, idempotence, tamper refusal, append-only tables."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db import notes
from db.migrate import available_migrations, migrate
from tests.conftest import PgServer
from tests.integration.conftest import Factory

_counter = itertools.count()


@pytest.fixture
async def empty_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A brand-new database with nothing in it (not cloned from the migrated template)."""
    name = f"dh_empty_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield pg_server.dsn(name)
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def empty_con(empty_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    con = await asyncpg.connect(empty_dsn)
    yield con
    await con.close()


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 2


async def test_empty_database_gets_every_migration_in_order_and_records_them(
        empty_con: asyncpg.Connection) -> None:
    shipped = available_migrations()
    applied = await migrate(empty_con)
    assert [m.version for m in applied] == [m.version for m in shipped]
    rows = await empty_con.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
        (m.version, m.name, m.checksum) for m in shipped]
    assert [r["applied_at"] for r in rows] == sorted(r["applied_at"] for r in rows)
    tables = {r["tablename"] for r in await empty_con.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"facility", "staff", "patient", "join_link", "queue_entry", "consultation", "note_version",
            "audit_event"} <= tables


async def test_second_run_applies_nothing(empty_con: asyncpg.Connection) -> None:
    await migrate(empty_con)
    before = await empty_con.fetch("SELECT * FROM schema_migrations ORDER BY version")
    assert await migrate(empty_con) == []
    assert await empty_con.fetch("SELECT * FROM schema_migrations ORDER BY version") == before


async def test_two_processes_migrating_at_once_apply_each_migration_once(empty_dsn: str) -> None:
    cons = [await asyncpg.connect(empty_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(con) for con in cons))
        versions = await cons[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        for con in cons:
            await con.close()
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in available_migrations()]
    assert [r["version"] for r in versions] == applied


async def test_changed_checksum_of_an_applied_migration_is_refused(empty_con: asyncpg.Connection) -> None:
    await migrate(empty_con)
    await empty_con.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(RuntimeError, match="0001_foundation was changed after it was applied"):
        await migrate(empty_con)


async def test_required_extensions_are_installed(empty_con: asyncpg.Connection) -> None:
    await migrate(empty_con)
    installed = {r["extname"] for r in await empty_con.fetch("SELECT extname FROM pg_extension")}
    assert {"pg_trgm", "unaccent"} <= installed
    assert await empty_con.fetchval("SELECT unaccent('Tăng huyết áp')") == "Tang huyet ap"


@pytest.fixture
async def seeded(pool: asyncpg.Pool, make: Factory) -> asyncpg.Pool:
    """One signed note version, and audit events (from the queue and the signature)."""
    doctor = await make.staff()
    claim = await make.claimed(doctor)
    async with pool.acquire() as con:
        await notes.sign(con, claim.consultation_id, doctor, 0,
                         notes.NoteContent(plan="Nghỉ ngơi, uống nhiều nước."))
    return pool


@pytest.mark.parametrize(("table", "statement"), [
    ("note_version", "UPDATE note_version SET plan = 'sửa lén'"),
    ("note_version", "DELETE FROM note_version"),
    ("audit_event", "UPDATE audit_event SET details = '{}'"),
    ("audit_event", "DELETE FROM audit_event"),
])
async def test_signed_notes_and_audit_trail_refuse_update_and_delete(seeded: asyncpg.Pool, table: str,
                                                                     statement: str) -> None:
    async with seeded.acquire() as con:
        before = await con.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")
        assert before
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"{table} is append-only"):
            await con.execute(statement)
        assert await con.fetch(f"SELECT * FROM {table} ORDER BY 1, 2") == before
