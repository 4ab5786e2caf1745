"""Where the database is: DATABASE_URL, or the embedded server under the data dir (started and stopped here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from db.embedded import EmbeddedPostgres, ensure_database
from web.settings import Settings

EMBEDDED_DATABASE = "donghanh"


@contextlib.asynccontextmanager
async def database_dsn(settings: Settings) -> AsyncIterator[str]:
    """Yield a DSN; with no DATABASE_URL, run the embedded PostgreSQL for the duration."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = await asyncio.to_thread(EmbeddedPostgres, settings.data_dir / "pg")
    try:
        await ensure_database(embedded.dsn(), EMBEDDED_DATABASE)
        yield embedded.dsn(EMBEDDED_DATABASE)
    finally:
        await asyncio.to_thread(embedded.stop)
