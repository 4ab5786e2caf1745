"""The `donghanh` command line, run as a real subprocess against the test PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import jwt
import pytest

from db import patients as patients_db
from tests.integration.conftest import Network
from web.auth import LINK_AUDIENCE, LinkSigner

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-" + "q" * 40


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """The parent's environment without any Đồng Hành settings, and a data dir of our own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONGHANH_") and k != "DATABASE_URL"}
    env["DONGHANH_DATA_DIR"] = str(tmp_path / "data")
    return env


async def donghanh(*args: str, env: dict[str, str]) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def test_help_exits_zero_and_mentions_database_url(base_env: dict[str, str],
                                                          subtests: pytest.Subtests) -> None:
    commands = [[], ["serve"], ["link"], ["config"], ["migrate"]]
    runs = await asyncio.gather(*(donghanh(*command, "--help", env=base_env) for command in commands))
    for command, run in zip(commands, runs, strict=True):
        with subtests.test(command=" ".join(command) or "(top)"):
            assert run.code == 0, run.err
            assert run.out.startswith("usage: donghanh")
            assert "DATABASE_URL" in run.out
            assert run.err == ""


async def test_no_command_is_a_usage_error(base_env: dict[str, str]) -> None:
    run = await donghanh(env=base_env)
    assert run.code == 2 and "usage: donghanh" in run.err and "Traceback" not in run.err


async def test_config_masks_the_secret_key(base_env: dict[str, str]) -> None:
    env = {**base_env, "DONGHANH_SECRET_KEY": SECRET, "DATABASE_URL": "postgresql://dh:Mk-2026@db/dh",
           "DONGHANH_PORT": "9001"}
    run = await donghanh("config", env=env)
    assert run.code == 0, run.err
    lines = dict(line.split(None, 1) for line in run.out.splitlines())
    assert lines["secret_key"].startswith("****")
    assert lines["port"] == "9001" and lines["base_url"] == "http://localhost:9001"
    assert lines["database_url"] == "postgresql://dh:****@db/dh"
    assert SECRET not in run.out and SECRET[:16] not in run.out and "Mk-2026" not in run.out


async def test_config_masks_credentials_inside_urls(base_env: dict[str, str]) -> None:
    env = {**base_env, "DATABASE_URL": "postgresql://dh@db/dh?sslmode=require&sslpassword=Mk-2026",
           "DONGHANH_SMS_GATEWAY": "http",
           "DONGHANH_SMS_URL": "https://sms.example.vn/send?to={to}&text={text}&apikey=Mk-2026"}
    run = await donghanh("config", env=env)
    assert run.code == 0, run.err
    lines = dict(line.split(None, 1) for line in run.out.splitlines())
    assert lines["database_url"] == "postgresql://dh@db/dh?sslmode=require&sslpassword=****"
    assert lines["sms_url"] == "https://sms.example.vn/send?to={to}&text={text}&apikey=****"
    assert "Mk-2026" not in run.out


@pytest.fixture
async def patient_dsn(dsn: str, pool: asyncpg.Pool, network: Network) -> tuple[str, int]:
    """The test database with one patient; (dsn, patient id)."""
    async with pool.acquire() as con:
        patient_id = await patients_db.create(con, facility_id=network.commune, name="Giàng A Páo",
                                              phone="0912345601")
    return dsn, patient_id


async def test_link_prints_a_url_whose_token_verifies(base_env: dict[str, str], patient_dsn: tuple[str, int],
                                                      pool: asyncpg.Pool) -> None:
    dsn, patient_id = patient_dsn
    env = {**base_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET,
           "DONGHANH_PUBLIC_URL": "https://kham.example.vn"}
    before = datetime.now(UTC)
    run = await donghanh("link", "--patient", str(patient_id), "--ttl", "2h", env=env)
    assert run.code == 0, run.err
    url = run.out.strip()
    assert url.startswith("https://kham.example.vn/j/") and "\n" not in url
    token = url.rsplit("/j/", 1)[1]
    jti = LinkSigner(SECRET).verify(token)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=LINK_AUDIENCE)
    expires = datetime.fromtimestamp(claims["exp"], UTC)
    two_hours = timedelta(hours=2)
    assert before + two_hours - timedelta(minutes=1) <= expires <= datetime.now(UTC) + two_hours
    assert "expires" in run.err
    async with pool.acquire() as con:
        row = await con.fetchrow("SELECT patient_id FROM join_link WHERE jti = $1", jti)
    assert row is not None and row["patient_id"] == patient_id
    with pytest.raises(Exception, match="Signature verification failed"):
        jwt.decode(token, "another-key-" + "w" * 40, algorithms=["HS256"], audience=LINK_AUDIENCE)


async def test_link_for_an_unknown_patient_fails_clearly(base_env: dict[str, str], dsn: str,
                                                         pool: asyncpg.Pool) -> None:
    run = await donghanh("link", "--patient", "99999",
                         env={**base_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET})
    assert run.code == 1
    assert run.out == ""
    assert "patient 99999 does not exist" in run.err
    assert "Traceback" not in run.err
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM join_link") == 0


async def test_link_without_a_configured_key_generates_one_in_the_data_dir(
        base_env: dict[str, str], patient_dsn: tuple[str, int]) -> None:
    dsn, patient_id = patient_dsn
    run = await donghanh("link", "--patient", str(patient_id), env={**base_env, "DATABASE_URL": dsn})
    assert run.code == 0, run.err
    key = (Path(base_env["DONGHANH_DATA_DIR"]) / "secret_key").read_text().strip()
    assert isinstance(LinkSigner(key).verify(run.out.strip().rsplit("/j/", 1)[1]), uuid.UUID)


async def test_migrate_on_a_migrated_database_applies_nothing_and_says_so(base_env: dict[str, str],
                                                                          dsn: str) -> None:
    run = await donghanh("migrate", env={**base_env, "DATABASE_URL": dsn})
    assert run.code == 0, run.err
    assert run.out.strip() == "applied 0 migration(s)"


async def test_unreachable_database_is_a_clear_error(base_env: dict[str, str], dsn: str) -> None:
    missing = dsn.rsplit("/", 1)[0] + "/no_such_database"
    run = await donghanh("migrate", env={**base_env, "DATABASE_URL": missing})
    assert run.code == 1
    assert "database error" in run.err and "Traceback" not in run.err


async def test_bad_configuration_exits_2_naming_it(base_env: dict[str, str],
                                                   subtests: pytest.Subtests) -> None:
    cases: list[tuple[dict[str, str], list[str], str]] = [
        ({"DONGHANH_LINK_TTL": "forever"}, ["link", "--patient", "1"], "DONGHANH_LINK_TTL"),
        ({"DONGHANH_LINK_TTL": "forever"}, ["config"], "DONGHANH_LINK_TTL"),
        ({}, ["link", "--patient", "1", "--ttl", "soon"], "--ttl"),
        ({"DONGHANH_PORT": "http"}, ["serve"], "DONGHANH_PORT"),
    ]
    runs = await asyncio.gather(*(donghanh(*args, env={**base_env, **env}) for env, args, _ in cases))
    for (_, args, variable), run in zip(cases, runs, strict=True):
        with subtests.test(args=" ".join(args), variable=variable):
            assert run.code == 2
            assert "configuration error" in run.err and variable in run.err
            assert "Traceback" not in run.err and run.out == ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_link_prints_the_url_of_the_server_that_serve_started(base_env: dict[str, str],
                                                                    patient_dsn: tuple[str, int]) -> None:
    """`serve --port N` without DONGHANH_PUBLIC_URL: a later `link` prints port N, not the default 8080."""
    dsn, patient_id = patient_dsn
    port = _free_port()
    env = {**base_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", "serve", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert server.stdout is not None
        while True:  # aiohttp prints "Running on …" once it listens
            line = await asyncio.wait_for(server.stdout.readline(), timeout=60)
            assert line, "the server exited before listening"
            if b"Running on" in line:
                break
        run = await donghanh("link", "--patient", str(patient_id), env=env)
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), timeout=30)
    assert run.code == 0, run.err
    assert run.out.startswith(f"http://localhost:{port}/j/"), run.out
    assert f"short: http://localhost:{port}/s/" in run.err and "note:" not in run.err


def _record_served_url(data_dir: Path, url: str) -> None:
    """As `serve` leaves it in the data dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "served_url").write_text(url + "\n")


async def test_link_prefers_the_configured_public_url_and_warns_when_it_only_guesses(
        base_env: dict[str, str], patient_dsn: tuple[str, int]) -> None:
    dsn, patient_id = patient_dsn
    env = {**base_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET}
    guessed = await donghanh("link", "--patient", str(patient_id), env=env)
    assert guessed.code == 0 and guessed.out.startswith("http://localhost:8080/j/")
    assert "DONGHANH_PUBLIC_URL is not set" in guessed.err
    _record_served_url(Path(base_env["DONGHANH_DATA_DIR"]), "http://192.168.1.20:9000")
    recorded = await donghanh("link", "--patient", str(patient_id), env=env)
    assert recorded.out.startswith("http://192.168.1.20:9000/j/") and "note:" not in recorded.err
    public = await donghanh("link", "--patient", str(patient_id),
                            env={**env, "DONGHANH_PUBLIC_URL": "https://kham.example.vn/"})
    assert public.out.startswith("https://kham.example.vn/j/")
    short = public.err.split("short: ", 1)[1].split()[0]
    code = short.rsplit("/s/", 1)[1]
    assert short.startswith("https://kham.example.vn/s/") and len(code) == 12 and code.isalnum()
    assert "(Asia/Ho_Chi_Minh)" in public.err  # the expiry in the facility's time
