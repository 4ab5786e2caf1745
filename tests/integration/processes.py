"""Real `donghanh serve` processes for integration tests: started on a free port over the test database,
read until they listen, stopped with SIGINT (shared by the tests of workers, the bus across processes and
cross-process counts)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.conftest import RunningApp
from tests.integration.test_cli import ROOT, SECRET, _free_port
from web.auth import LinkSigner, issue_link


@asynccontextmanager
async def served(env: dict[str, str], *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`donghanh serve …` until it prints "Running on"; SIGINT and wait on the way out."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", "serve", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert server.stdout is not None
        output = b""
        while True:
            line = await asyncio.wait_for(server.stdout.readline(), timeout=90)
            output += line
            assert line, f"the server exited before listening: {output.decode()[-2000:]}"
            if b"Running on" in line:
                break
        yield server
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), timeout=60)


class Remote(RunningApp):
    """Enough of RunningApp for the signaling helpers: a URL (and a pool for links)."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self._url, self._pool = url, pool

    @property
    def url(self) -> str:
        return self._url

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool


def bus_env(clean_env: dict[str, str], dsn: str) -> dict[str, str]:
    """The environment of a process joined to the others by the bus, on the test database."""
    return {**clean_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET, "DONGHANH_BUS": "true"}


@asynccontextmanager
async def serve_one(env: dict[str, str], pool: asyncpg.Pool, data_dir: str, *args: str) -> AsyncIterator[Remote]:
    """One `serve` process on a free port (its own data dir), as a Remote."""
    port = _free_port()
    async with served({**env, "DONGHANH_DATA_DIR": data_dir}, *args, "--port", str(port)):
        yield Remote(f"http://127.0.0.1:{port}", pool)


async def link_token(pool: asyncpg.Pool, patient_id: int) -> str:
    """A join link for the patient, signed with the processes' secret."""
    async with pool.acquire() as con:
        token, _ = await issue_link(con, LinkSigner(SECRET), patient_id, 3600)
    return token
