"""The embedded PostgreSQL after `kill -9` of the app: adopted on restart, stopped on Ctrl-C (issue 7.5).

Real `donghanh serve` processes on their own data dir; the server's state is read from its
`postmaster.pid` and the process table, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest

from db.embedded import EmbeddedError, EmbeddedPostgres, Postmaster, running_postmaster

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Every postgres process (postmaster or backend) whose command line names this data dir."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    url: str
    stderr: list[str]

    async def health(self) -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as response:
            return response.status, await response.json()


async def _drain(stream: asyncio.StreamReader, sink: list[str], ready: asyncio.Event | None = None) -> None:
    async for raw in stream:
        line = raw.decode(errors="replace")
        sink.append(line)
        if ready is not None and "Running on" in line:
            ready.set()


StartServe = Callable[[], Awaitable[Serve]]


@pytest.fixture
def serve_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONGHANH_") and k != "DATABASE_URL"}
    env["DONGHANH_DATA_DIR"] = str(tmp_path / "data")
    env["DONGHANH_SECRET_KEY"] = "embedded-restart-" + "k" * 32
    return env


@pytest.fixture
async def start_serve(serve_env: dict[str, str]) -> AsyncIterator[StartServe]:
    """Starts `donghanh serve` and waits until it listens; kills whatever is left at the end."""
    started: list[Serve] = []
    tasks: list[asyncio.Task[None]] = []

    async def start() -> Serve:
        port = _free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", "serve",
            "--port", str(port), cwd=ROOT, env=serve_env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        ready = asyncio.Event()
        out: list[str] = []
        serve = Serve(process, f"http://127.0.0.1:{port}", [])
        tasks.append(asyncio.create_task(_drain(process.stdout, out, ready)))
        tasks.append(asyncio.create_task(_drain(process.stderr, serve.stderr)))
        exited = asyncio.create_task(process.wait())
        await asyncio.wait([asyncio.create_task(ready.wait()), exited], timeout=90,
                           return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), "".join(serve.stderr)[-3000:]
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.process.returncode is None:
            serve.process.kill()
            await serve.process.wait()
    for task in tasks:
        await asyncio.wait_for(task, 10)
    pgdata = Path(serve_env["DONGHANH_DATA_DIR"]) / "pg"
    if running_postmaster(pgdata.resolve()) is not None:  # a failed test must not leak a server
        EmbeddedPostgres(pgdata).stop()


async def test_restart_after_kill_9_adopts_the_server_and_ctrl_c_stops_it(
        start_serve: StartServe, serve_env: dict[str, str]) -> None:
    pgdata = (Path(serve_env["DONGHANH_DATA_DIR"]) / "pg").resolve()
    first: Serve = await start_serve()
    status, _ = await first.health()
    assert status == 200
    postmaster = Postmaster.read(pgdata)
    assert postmaster is not None and postmaster.process() is not None

    first.process.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(first.process.wait(), 30) == -signal.SIGKILL
    # The app is gone, its database server is not (pg_ctl puts it in a session of its own).
    assert postmaster.process() is not None

    second: Serve = await start_serve()
    status, body = await second.health()
    assert status == 200 and body["status"] == "ok"
    adopted = Postmaster.read(pgdata)
    assert adopted is not None and adopted.pid == postmaster.pid
    server = adopted.process()
    assert server is not None
    family = [server, *server.children(recursive=True)]

    second.process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(second.process.wait(), 60) == 0, "".join(second.stderr)[-3000:]
    assert running_postmaster(pgdata) is None
    assert not (pgdata / "postmaster.pid").exists()
    assert postgres_processes(pgdata) == []
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert any("embedded PostgreSQL stopped" in line for line in second.stderr)


async def test_stale_wheel_bookkeeping_does_not_keep_the_server_running(
        start_serve: StartServe, serve_env: dict[str, str]) -> None:
    """The wheel's `.handle_pids.json` naming a dead process (what made Ctrl-C a no-op) is ignored."""
    pgdata = (Path(serve_env["DONGHANH_DATA_DIR"]) / "pg").resolve()
    first: Serve = await start_serve()
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead.pid, first.process.pid]))

    first.process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(first.process.wait(), 60) == 0
    assert postgres_processes(pgdata) == []


def test_last_user_stops_the_server_and_not_before(tmp_path: Path) -> None:
    """`donghanh link` while `donghanh serve` runs: whichever finishes first leaves the server running."""
    pgdata = tmp_path / "pg"
    serve = EmbeddedPostgres(pgdata)
    link = EmbeddedPostgres(pgdata)
    try:
        assert link.adopted and link.postmaster.pid == serve.postmaster.pid
        link.stop()
        assert running_postmaster(pgdata.resolve()) is not None
    finally:
        link.stop()
        serve.stop()
    assert running_postmaster(pgdata.resolve()) is None
    assert postgres_processes(pgdata.resolve()) == []


def test_a_stale_postmaster_pid_is_replaced_by_a_fresh_server(tmp_path: Path) -> None:
    """After a reboot the pid in postmaster.pid may belong to anything: only a postgres on this data dir
    is adopted; here it is this very test process, which is not one."""
    pgdata = tmp_path / "pg"
    EmbeddedPostgres(pgdata).stop()
    pid_file = pgdata.resolve() / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{pgdata.resolve()}\n1700000000\n5432\n{pgdata.resolve()}\n\n"
                        "  0 0\nready\n")
    server = EmbeddedPostgres(pgdata)
    try:
        assert not server.adopted and server.postmaster.pid != os.getpid()
    finally:
        server.stop()
    assert postgres_processes(pgdata.resolve()) == []


def test_an_interrupted_initdb_is_redone_and_a_foreign_dir_refused(tmp_path: Path) -> None:
    """Ctrl-C during the very first start (initdb) leaves only a staging dir, which the next start replaces;
    a non-empty data dir without PG_VERSION is never initialised over."""
    pgdata = tmp_path / "pg"
    staging = tmp_path / "pg.initdb"
    staging.mkdir()
    (staging / "base").mkdir()  # what an initdb cut short leaves behind
    server = EmbeddedPostgres(pgdata)
    server.stop()
    assert (pgdata / "PG_VERSION").exists() and not staging.exists()

    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a database")
    with pytest.raises(EmbeddedError, match="no PG_VERSION"):
        EmbeddedPostgres(foreign)
    assert (foreign / "notes.txt").exists()
