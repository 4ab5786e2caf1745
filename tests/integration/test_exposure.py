"""What the app tells strangers: /healthz details, the Server header, the CSP's socket origin."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from db import staff as staff_db
from tests.conftest import RunningApp
from tests.integration.test_http import jar_session, sign_in
from web.app import create_app
from web.middleware import CSP, SERVER_HEADER
from web.settings import Settings

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

# The documented deployment: nginx on this machine adds the browser's address to X-Forwarded-For.
FROM_INTERNET = {"X-Forwarded-For": "203.0.113.7"}
ADMIN_PASSWORD = "quan-tri-2026"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar_session() as session:
        yield session


async def test_healthz_for_a_stranger_says_only_ok(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/healthz", headers=FROM_INTERNET)
    assert r.status == 200
    assert await r.json() == {"status": "ok"}


async def test_healthz_for_a_local_client_has_the_details(running_app: RunningApp,
                                                          http: aiohttp.ClientSession) -> None:
    body = await (await http.get(f"{running_app.url}/healthz")).json()
    assert body["status"] == "ok" and body["database"]["server_version"] and "sockets" in body


async def test_a_spoofed_forwarded_for_does_not_make_a_stranger_local(running_app: RunningApp,
                                                                       http: aiohttp.ClientSession) -> None:
    # The client writes "127.0.0.1"; the proxy appends the real address: the right-most untrusted entry counts.
    r = await http.get(f"{running_app.url}/healthz", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.7"})
    assert await r.json() == {"status": "ok"}


async def test_healthz_for_a_signed_in_admin_has_the_details(running_app: RunningApp,
                                                             http: aiohttp.ClientSession) -> None:
    async with running_app.pool.acquire() as con:
        facility = await con.fetchval("SELECT min(id) FROM facility")
        await staff_db.create(con, facility_id=facility, username="quantri", name="Quản trị", role="admin",
                              password=ADMIN_PASSWORD)
    assert (await sign_in(http, running_app, "quantri", ADMIN_PASSWORD)).status == 303
    body = await (await http.get(f"{running_app.url}/healthz", headers=FROM_INTERNET)).json()
    assert body["database"]["status"] == "ok" and "sockets" in body


async def test_healthz_for_a_signed_in_doctor_says_only_ok(running_app: RunningApp,
                                                           http: aiohttp.ClientSession) -> None:
    assert (await sign_in(http, running_app)).status == 303
    body = await (await http.get(f"{running_app.url}/healthz", headers=FROM_INTERNET)).json()
    assert body == {"status": "ok"}


async def test_no_response_names_a_server_version(running_app: RunningApp, http: aiohttp.ClientSession,
                                                  subtests: pytest.Subtests) -> None:
    for path in ("/", "/staff/login", "/healthz", "/static/app.css", "/no-such-page", "/api/icd10?q=I10"):
        with subtests.test(path=path):
            r = await http.get(f"{running_app.url}{path}", allow_redirects=False)
            assert r.headers["Server"] == SERVER_HEADER
            assert not any(ch.isdigit() for ch in r.headers["Server"])
    async with http.ws_connect(f"{running_app.url}/ws") as ws:
        assert ws._response.headers["Server"] == SERVER_HEADER


def connect_src(r: aiohttp.ClientResponse) -> str:
    directives = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    return directives["connect-src"]


async def test_csp_allows_sockets_to_the_apps_own_origin_only(running_app: RunningApp,
                                                             http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/staff/login")
    own = running_app.url.replace("http://", "ws://")
    assert connect_src(r) == f"'self' {own}"
    assert "ws: " not in CSP.format(connect=connect_src(r)) and "wss:;" not in r.headers["Content-Security-Policy"]


async def test_csp_names_no_origin_for_a_host_header_that_is_not_a_host(running_app: RunningApp,
                                                                        http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/staff/login", headers={"Host": "evil.example; script-src *"})
    assert connect_src(r) == "'self'"


@pytest.fixture
async def public_app(app_settings: Settings) -> AsyncIterator[RunningApp]:
    settings = dataclasses.replace(app_settings, public_url="https://kham.example.vn")
    app = create_app(settings, demo_data=True)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield RunningApp(app, server)
    finally:
        await server.close()


async def test_csp_names_the_public_urls_secure_socket_origin(public_app: RunningApp,
                                                              http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{public_app.url}/staff/login")
    assert connect_src(r) == "'self' wss://kham.example.vn"


async def test_a_malformed_request_is_refused_without_naming_a_version(running_app: RunningApp) -> None:
    # aiohttp answers a broken request line itself, before any handler or response signal runs.
    host, port = running_app.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"NOT A REQUEST\r\n\r\n")
        await writer.drain()
        head = (await asyncio.wait_for(reader.read(4096), 10)).decode("latin-1")
    finally:
        writer.close()
    assert head.split("\r\n", 1)[0].endswith(" 400 Bad Request"), head
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    assert server == [f"Server: {SERVER_HEADER}"]
