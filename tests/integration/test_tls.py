"""`donghanh serve` with DONGHANH_TLS_CERT/KEY serves HTTPS and WSS itself (a real subprocess, a certificate
made in the test, the test PostgreSQL); plain HTTP on that port gets nowhere."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_cli import ROOT, SECRET, _free_port, donghanh
from tests.tls_cert import self_signed


async def test_serve_speaks_https_and_wss_with_the_configured_certificate(
        clean_env: dict[str, str], dsn: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = _free_port()
    env = {**clean_env, "DATABASE_URL": dsn, "DONGHANH_SECRET_KEY": SECRET,
           "DONGHANH_TLS_CERT": str(cert), "DONGHANH_TLS_KEY": str(key)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from web.cli import main; raise SystemExit(main())", "serve", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert server.stdout is not None
        while True:  # aiohttp prints "Running on https://…" once it listens
            line = await asyncio.wait_for(server.stdout.readline(), timeout=60)
            assert line, "the server exited before listening"
            if b"Running on" in line:
                assert b"https://" in line, line
                break
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"https://localhost:{port}/healthz", ssl=trust)
            assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.ws_connect(f"wss://localhost:{port}/ws", ssl=trust) as ws:
                await ws.send_json({"type": "ping", "id": "p1"})
                assert await asyncio.wait_for(ws.receive_json(), timeout=10) == {"type": "pong", "id": "p1"}
            with pytest.raises(aiohttp.ClientError):  # a client that does not trust the certificate
                await http.get(f"https://localhost:{port}/healthz")
            with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port
                await http.get(f"http://localhost:{port}/healthz")
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), timeout=30)


async def test_serve_refuses_a_key_that_does_not_match_the_certificate(clean_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_key = self_signed(other)
    run = await donghanh("serve", env={**clean_env, "DONGHANH_TLS_CERT": str(cert), "DONGHANH_TLS_KEY": str(wrong_key)})
    assert run.code == 2
    assert "configuration error: DONGHANH_TLS_CERT/DONGHANH_TLS_KEY" in run.err
    assert "Traceback" not in run.err
