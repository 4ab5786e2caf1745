"""Shared fixtures: one real PostgreSQL per test session (embedded, or TEST_DATABASE_URL), a fresh
database per test cloned from a migrated template, and the real application on a loopback port."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from db.pool import create_pool
from web.app import create_app
from web.keys import hub_key, pool_key
from web.settings import Settings

TEMPLATE = "dh_test_template"
_counter = itertools.count()


@dataclass(frozen=True)
class PgServer:
    admin_dsn: str

    def dsn(self, database: str) -> str:
        head, _, tail = self.admin_dsn.partition("?")
        base = head.rsplit("/", 1)[0]
        return f"{base}/{database}" + (f"?{tail}" if tail else "")


async def _prepare_template(admin_dsn: str, template_dsn: str) -> None:
    con = await asyncpg.connect(admin_dsn)
    try:
        await con.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await con.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await con.close()
    con = await asyncpg.connect(template_dsn)
    try:
        await migrate(con)
    finally:
        await con.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL for the whole session: TEST_DATABASE_URL (admin rights) or an embedded one."""
    url = os.environ.get("TEST_DATABASE_URL")
    embedded = None
    if url:
        server = PgServer(url)
    else:
        root = Path(tempfile.mkdtemp(prefix="dh-test-pg-"))
        embedded = EmbeddedPostgres(root / "pg", delete_on_stop=True)
        server = PgServer(embedded.dsn("postgres"))
    asyncio.run(_prepare_template(server.admin_dsn, server.dsn(TEMPLATE)))
    yield server
    if embedded is not None:
        embedded.stop()


@pytest.fixture
async def dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (a copy of the template: milliseconds, not a migration run)."""
    name = f"dh_test_{os.getpid()}_{next(_counter)}"
    con = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await con.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await con.close()
    yield pg_server.dsn(name)
    con = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await con.close()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(dsn, min_size=1, max_size=60)
    yield p
    await p.close()


def make_settings(dsn: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": dsn, "data_dir": data_dir,
                                 "secret_key": "test-secret-" + "x" * 32,
                                 "requeue_grace_s": 60}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class RunningApp:
    app: web.Application
    server: TestServer

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[pool_key]

    @property
    def hub(self):  # type: ignore[no-untyped-def]
        return self.app[hub_key]


@pytest.fixture
def app_settings(dsn: str, tmp_path: Path) -> Settings:
    return make_settings(dsn, tmp_path)


@pytest.fixture
async def running_app(app_settings: Settings) -> AsyncIterator[RunningApp]:
    """The real application with demo data, on 127.0.0.1 and a free port."""
    app = create_app(app_settings, demo_data=True)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield RunningApp(app, server)
    finally:
        await server.close()


# ---- two apps in this process on one database, joined by the bus ------------------------------------------

@pytest.fixture
def grace_s() -> int:
    return 60


@pytest.fixture
async def two_apps(dsn: str, tmp_path: Path, grace_s: int) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    """Two independent apps (own pool, own hub, own bus listener) on the same database."""
    apps: list[RunningApp] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            app = create_app(make_settings(dsn, tmp_path / name, bus=True, requeue_grace_s=grace_s),
                             demo_data=True)
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            apps.append(RunningApp(app, server))
        yield apps[0], apps[1]
    finally:
        for running in reversed(apps):
            await running.server.close()


def new_id() -> str:
    return uuid.uuid4().hex[:8]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With DONGHANH_REQUIRE_E2E=1 (CI), a skipped or missing browser test fails the run."""
    if os.environ.get("DONGHANH_REQUIRE_E2E") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    e2e_passed = [r for r in reporter.stats.get("passed", []) if "tests/e2e/" in r.nodeid]
    e2e_skipped = [r for r in reporter.stats.get("skipped", []) if "tests/e2e/" in r.nodeid]
    if e2e_skipped or not e2e_passed:
        reporter.write_line(f"DONGHANH_REQUIRE_E2E: {len(e2e_skipped)} browser test(s) skipped, "
                            f"{len(e2e_passed)} passed: browser tests must run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
