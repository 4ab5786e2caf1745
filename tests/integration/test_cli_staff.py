"""`donghanh staff deactivate|password`, run as real subprocesses against the database of a running app: the
account's open pages are closed (4401) by the server's revalidation, as they would be in production."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from db import staff as staff_db
from signaling.rooms import CloseCode
from tests.conftest import RunningApp
from tests.integration.test_call_signaling import connect, staff_session
from tests.integration.test_sessions_end import close_code

ROOT = Path(__file__).resolve().parents[2]


async def donghanh(*args: str, dsn: str, data_dir: Path, stdin: str = "") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONGHANH_") and k != "DATABASE_URL"}
    env.update({"DATABASE_URL": dsn, "DONGHANH_DATA_DIR": str(data_dir)})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def doctor_http(running_app: RunningApp) -> AsyncIterator[aiohttp.ClientSession]:
    session = await staff_session(running_app, "bacsi.lan")
    yield session
    await session.close()


async def test_staff_deactivate_ends_the_accounts_sessions_and_closes_its_pages(
        running_app: RunningApp, doctor_http: aiohttp.ClientSession, dsn: str, tmp_path: Path) -> None:
    page = await connect(doctor_http, running_app)
    code, out, err = await donghanh("staff", "deactivate", "bacsi.lan", dsn=dsn, data_dir=tmp_path)
    assert code == 0, err
    assert out.strip() == "deactivated bacsi.lan; 1 session(s) ended"
    assert await running_app.hub.revalidate() == 1
    assert (await close_code(page))[0] == CloseCode.SESSION_ENDED
    async with running_app.pool.acquire() as con:
        assert await staff_db.authenticate(con, "bacsi.lan", "demo1234") is None


async def test_staff_password_reads_stdin_and_ends_the_sessions(
        running_app: RunningApp, doctor_http: aiohttp.ClientSession, dsn: str, tmp_path: Path) -> None:
    page = await connect(doctor_http, running_app)
    code, out, err = await donghanh("staff", "password", "bacsi.lan", dsn=dsn, data_dir=tmp_path,
                                    stdin="mat-khau-moi-2026\n")
    assert code == 0, err
    assert out.strip() == "new password set for bacsi.lan; 1 session(s) ended"
    assert await running_app.hub.revalidate() == 1
    assert (await close_code(page))[0] == CloseCode.SESSION_ENDED
    async with running_app.pool.acquire() as con:
        assert await staff_db.authenticate(con, "bacsi.lan", "mat-khau-moi-2026") is not None


@pytest.mark.parametrize("args, stdin, code, message", [
    (("staff", "password", "bacsi.lan"), "short\n", 2, "at least 10 characters"),
    (("staff", "deactivate", "khong.co.ai"), "", 1, "no staff account named 'khong.co.ai'"),
    (("staff", "password", "khong.co.ai"), "mat-khau-du-dai\n", 1, "no staff account named 'khong.co.ai'"),
])
async def test_staff_commands_refuse_clearly_and_change_nothing(
        running_app: RunningApp, dsn: str, tmp_path: Path, args: tuple[str, ...], stdin: str, code: int,
        message: str) -> None:
    result = await donghanh(*args, dsn=dsn, data_dir=tmp_path, stdin=stdin)
    assert result[0] == code and message in result[2] and "Traceback" not in result[2]
    async with running_app.pool.acquire() as con:
        assert await staff_db.authenticate(con, "bacsi.lan", "demo1234") is not None


async def test_staff_help_explains_both_actions(dsn: str, tmp_path: Path) -> None:
    code, out, _ = await donghanh("staff", "--help", dsn=dsn, data_dir=tmp_path)
    assert code == 0 and "deactivate" in out and "password" in out and "4401" in out
