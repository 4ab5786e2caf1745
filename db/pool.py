"""The asyncpg pool, with jsonb decoded to Python values."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(con: asyncpg.Connection) -> None:
    await con.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(con: asyncpg.Connection) -> None:
    """What a connection going back to the pool needs beyond asyncpg's own clean-up: nothing.

    asyncpg rolls back a transaction left open and drops listener callbacks before calling this; its default
    then sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` — one more round trip
    on every release, about half of the queries a socket's hello and join make. Nothing here leaves session
    state behind: advisory locks are transaction-scoped (`pg_advisory_xact_lock`), settings are `SET LOCAL`,
    cursors live inside transactions, and the bus's listening connection UNLISTENs (`remove_listener`)
    before it is released (decisions.md, "Reconnect storms")."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool whose connections speak jsonb as Python dicts/lists."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30,
        reset=_keep_session,
    )
    return pool


async def database_state(pool: asyncpg.Pool) -> dict[str, Any]:
    """For /healthz: server version, applied migration, pool size."""
    async with pool.acquire() as con:
        version = await con.fetchval("SHOW server_version")
        migration = await con.fetchval("SELECT max(version) FROM schema_migrations")
    return {"status": "ok", "server_version": version, "migration": migration,
            "pool_size": pool.get_size(), "pool_idle": pool.get_idle_size()}
