"""HttpSmsGateway against a local HTTP server that misbehaves on purpose, through the real scheduler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from db import messages as messages_db
from tests.integration.conftest import Factory
from tests.integration.test_invitations import LINK_URL
from web.clock import Clock
from web.gateways import HttpSmsGateway, parse_auth_header
from web.scheduler import Scheduler

TEXT = "TYT xa Mu Cang Chai: moi kham benh qua video. Link: https://kham.example.vn/j/abc.def_ghi-jkl"


@dataclass
class FakeProvider:
    """Answers each request with the next scripted reply: a status (with a provider id on 2xx) or "hang"."""

    script: list[int | str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append({"method": request.method, "query": dict(request.query), "body": body,
                              "auth": request.headers.get("Authorization"),
                              "key": request.headers.get("X-Api-Key")})
        reply = self.script.pop(0) if self.script else 200
        if reply == "hang":  # longer than the client's timeout; released when the test ends
            await asyncio.wait_for(self.release.wait(), 10)
            reply = 200
        assert isinstance(reply, int)
        if 200 <= reply < 300:
            return web.json_response({"id": f"prov-{len(self.requests)}", "status": "accepted"}, status=reply)
        return web.json_response({"error": "nope"}, status=reply)


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider([])
    app = web.Application()
    app.router.add_route("*", "/sms", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/sms"))
    finally:
        fake.release.set()
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def one_message(pool: asyncpg.Pool, make: Factory, clock: Clock) -> int:
    patient = await make.patient()
    async with pool.acquire() as con:
        message_id = await messages_db.schedule(con, patient_id=patient, to_phone="+84912345678", lang="vi",
                                                kind="invitation", body=TEXT, dedupe_key="gw-test",
                                                due_at=clock.now())
    assert message_id is not None
    return message_id


async def send_through(pool: asyncpg.Pool, gateway: HttpSmsGateway, clock: Clock,
                       message_id: int) -> messages_db.OutboundMessage:
    scheduler = Scheduler(pool, gateway, clock, link_url=LINK_URL, tries_per_send=gateway.tries_per_send)
    await scheduler.tick()
    async with pool.acquire() as con:
        message = await messages_db.get(con, message_id)
    assert message is not None
    return message


async def test_two_503s_then_200_sends_once_after_three_attempts(
        pool: asyncpg.Pool, make: Factory, provider: tuple[FakeProvider, str],
        client: aiohttp.ClientSession) -> None:
    fake, url = provider
    fake.script = [503, 503, 200]
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    gateway = HttpSmsGateway(client, url, auth_header="Authorization: Bearer s3cret", retries=3, backoff_s=0.001)
    message = await send_through(pool, gateway, clock, message_id)
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 3, "prov-3")
    assert message.gateway == "http" and message.last_error is None and message.sent_at is not None
    assert len(fake.requests) == 3
    sent = fake.requests[-1]
    assert sent["method"] == "POST" and sent["auth"] == "Bearer s3cret"
    assert json.loads(sent["body"]) == {"to": "+84912345678", "text": TEXT, "reference": "gw-test"}
    async with pool.acquire() as con:
        details = await con.fetchval("SELECT details FROM audit_event WHERE action = 'message.send'")
    assert details["status"] == "sent" and details["attempts"] == 3


async def test_a_400_fails_at_once_without_retrying(pool: asyncpg.Pool, make: Factory,
                                                    provider: tuple[FakeProvider, str],
                                                    client: aiohttp.ClientSession) -> None:
    fake, url = provider
    fake.script = [400]
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    message = await send_through(pool, HttpSmsGateway(client, url, retries=3, backoff_s=0.001), clock, message_id)
    assert (message.status, message.attempts) == ("failed", 1)
    assert message.last_error is not None and message.last_error.startswith("HTTP 400")
    assert len(fake.requests) == 1


async def test_timeouts_are_retried(pool: asyncpg.Pool, make: Factory, provider: tuple[FakeProvider, str],
                                    client: aiohttp.ClientSession) -> None:
    fake, url = provider
    fake.script = ["hang", 200]
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    gateway = HttpSmsGateway(client, url, retries=2, timeout_s=0.2, backoff_s=0.001)
    message = await send_through(pool, gateway, clock, message_id)
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 2, "prov-2")


async def test_a_provider_still_down_after_every_retry_is_tried_again_later(
        pool: asyncpg.Pool, make: Factory, provider: tuple[FakeProvider, str],
        client: aiohttp.ClientSession) -> None:
    fake, url = provider
    fake.script = [502] * 4
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    gateway = HttpSmsGateway(client, url, retries=3, backoff_s=0.001)
    message = await send_through(pool, gateway, clock, message_id)
    assert (message.status, message.attempts) == ("scheduled", 4)
    assert message.next_attempt_at is not None and message.last_error is not None and "502" in message.last_error
    clock.advance(message.next_attempt_at - clock.now())
    message = await send_through(pool, gateway, clock, message_id)
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 5, "prov-5")


async def test_connection_errors_are_retried_and_recorded(pool: asyncpg.Pool, make: Factory,
                                                          client: aiohttp.ClientSession) -> None:
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/sms"))
    await server.close()  # nothing listens there any more
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    message = await send_through(pool, HttpSmsGateway(client, url, retries=1, backoff_s=0.001), clock, message_id)
    assert (message.status, message.attempts) == ("scheduled", 2)
    assert message.last_error is not None and "Connect" in message.last_error


async def test_url_template_sends_a_get_with_the_values_encoded(pool: asyncpg.Pool, make: Factory,
                                                                provider: tuple[FakeProvider, str],
                                                                client: aiohttp.ClientSession) -> None:
    fake, url = provider
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    gateway = HttpSmsGateway(client, url + "?Phone={to}&Content={text}&Brand=TYT", auth_header="X-Api-Key: k1")
    message = await send_through(pool, gateway, clock, message_id)
    assert message.status == "sent"
    assert fake.requests[0]["method"] == "GET" and fake.requests[0]["key"] == "k1"
    assert fake.requests[0]["query"] == {"Phone": "+84912345678", "Content": TEXT, "Brand": "TYT"}


async def test_a_json_body_template_is_filled_safely(pool: asyncpg.Pool, make: Factory,
                                                     provider: tuple[FakeProvider, str],
                                                     client: aiohttp.ClientSession) -> None:
    fake, url = provider
    clock = Clock()
    message_id = await one_message(pool, make, clock)
    template = '{"messages": [{"destinations": [{"to": "{to}"}], "text": "{text}", "from": "DONGHANH"}]}'
    await send_through(pool, HttpSmsGateway(client, url, body_template=template), clock, message_id)
    assert json.loads(fake.requests[0]["body"]) == {
        "messages": [{"destinations": [{"to": "+84912345678"}], "text": TEXT, "from": "DONGHANH"}]}


def test_auth_header_forms() -> None:
    assert parse_auth_header("") == {}
    assert parse_auth_header("Authorization: Bearer abc") == {"Authorization": "Bearer abc"}
    assert parse_auth_header("X-Api-Key:abc") == {"X-Api-Key": "abc"}
    assert parse_auth_header("Basic dXNlcjpwYXNz") == {"Authorization": "Basic dXNlcjpwYXNz"}
