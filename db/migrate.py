"""Numbered SQL migrations (`db/migrations/NNNN_name.sql`), each applied once, in order, in a transaction."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any constant works; it makes two processes starting at once apply migrations one after the other.
_MIGRATION_LOCK = 0x0D0E_4A11


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in order."""
    found: list[Migration] = []
    for entry in resources.files("db").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


async def migrate(con: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration; returns those applied now. Refuses if an applied file changed."""
    applied_now: list[Migration] = []
    async with con.transaction():
        # Under the lock: two processes creating the table at once collide in the catalog (pg_type).
        await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await con.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await con.fetch("SELECT version, checksum FROM schema_migrations")
    done = {r["version"]: r["checksum"] for r in rows}
    for m in available_migrations():
        if m.version in done:
            if done[m.version] != m.checksum:
                raise RuntimeError(f"migration {m.version:04d}_{m.name} was changed after it was applied")
            continue
        async with con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if await con.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", m.version):
                continue  # another process applied it while we waited for the lock
            await con.execute(m.sql)
            await con.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version, m.name, m.checksum,
            )
        log.info("applied migration %04d_%s", m.version, m.name)
        applied_now.append(m)
    return applied_now
