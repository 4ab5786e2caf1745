"""Short links over HTTP on the real app: `/s/<code>` opens the patient's page, unknown codes are
counted per client address (429 with a translated page), the long `/j/<token>` keeps working, the
station's phone number is on unusable-link pages, and unknown paths get our own translated 404 page."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from care.short_code import ALPHABET, MAX_MISSES, MISS_WINDOW
from db import short_links
from tests.conftest import RunningApp
from tests.integration.test_http import new_link
from web.auth import issue_link
from web.keys import clock_key, signer_key

COMMUNE_PHONE = "0216 3878 210"  # the demo commune station's number


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def short_code(app: RunningApp, token: str) -> str:
    async with app.pool.acquire() as con:
        return await short_links.code_for(con, app.app[signer_key].verify(token))


async def test_a_short_link_opens_the_patients_page_and_the_long_link_still_works(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    token = await new_link(running_app)
    code = await short_code(running_app, token)
    assert len(code) == 12 and set(code) <= set(ALPHABET)
    assert await short_code(running_app, token) == code  # one code per link
    short = await http.get(f"{running_app.url}/s/{code}", allow_redirects=False)
    page = await short.text()
    assert short.status == 200 and f'data-token="{token}"' in page and "Giàng A Páo" in page
    long = await http.get(f"{running_app.url}/j/{token}")
    assert long.status == 200 and f'data-token="{token}"' in await long.text()


async def test_an_unknown_code_is_a_translated_not_found_page(running_app: RunningApp,
                                                              http: aiohttp.ClientSession) -> None:
    for path in ("/s/AAAAAAAAAAAA", "/s/short", "/s/" + "é" * 12):
        r = await http.get(f"{running_app.url}{path}")
        assert r.status == 404 and 'data-code="link_invalid"' in await r.text(), path
    r = await http.get(f"{running_app.url}/s/AAAAAAAAAAAB?lang=en")
    assert "This link is not valid" in await r.text()


async def test_too_many_unknown_codes_from_one_address_get_429_until_the_window_passes(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    """Behind our proxy (127.0.0.1 is trusted), the address is the one in X-Forwarded-For."""
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    code = await short_code(running_app, await new_link(running_app))
    for n in range(MAX_MISSES):
        r = await http.get(f"{running_app.url}/s/{n:012d}", headers=guesser)
        assert r.status == 404
    refused = await http.get(f"{running_app.url}/s/{code}", headers=guesser)  # even a real code, now
    page = await refused.text()
    assert refused.status == 429 and refused.headers["Retry-After"] == str(int(MISS_WINDOW.total_seconds()))
    assert "Thử quá nhiều lần" in page and 'data-code="too_many"' in page
    english = await http.get(f"{running_app.url}/s/{code}?lang=en", headers=guesser)
    assert english.status == 429 and "Too many attempts" in await english.text()
    other = await http.get(f"{running_app.url}/s/{code}", headers={"X-Forwarded-For": "198.51.100.9"})
    assert other.status == 200  # another address is not affected
    running_app.app[clock_key].advance(MISS_WINDOW)
    again = await http.get(f"{running_app.url}/s/{code}", headers=guesser)
    assert again.status == 200


async def test_misses_are_counted_in_postgresql_per_address(running_app: RunningApp,
                                                            http: aiohttp.ClientSession) -> None:
    for _ in range(3):
        await http.get(f"{running_app.url}/s/ZZZZZZZZZZZZ", headers={"X-Forwarded-For": "192.0.2.1"})
    async with running_app.pool.acquire() as con:
        rows = await con.fetch("SELECT address, misses FROM short_link_miss")
    assert [(r["address"], r["misses"]) for r in rows] == [("192.0.2.1", 3)]


async def test_an_expired_link_says_which_station_to_call(running_app: RunningApp,
                                                          http: aiohttp.ClientSession) -> None:
    async with running_app.pool.acquire() as con:
        token, _ = await issue_link(con, running_app.app[signer_key], 1, 3600)
        jti = running_app.app[signer_key].verify(token)
        past = datetime.now(UTC) - timedelta(hours=1)
        await con.execute("UPDATE join_link SET expires_at = $2 WHERE jti = $1", jti, past)
    expired_token = running_app.app[signer_key].sign(jti, past)  # the JWT itself has expired too
    for t in (token, expired_token):
        r = await http.get(f"{running_app.url}/j/{t}")
        page = await r.text()
        assert r.status == 410 and 'data-code="link_expired"' in page
        assert f"Trạm Y tế xã Mù Cang Chải: gọi {COMMUNE_PHONE}" in page
        assert 'href="tel:02163878210"' in page
    forged = await http.get(f"{running_app.url}/j/{token[:-4]}AAAA")
    assert forged.status == 404 and COMMUNE_PHONE not in await forged.text()  # nothing for a forged token


@pytest.mark.parametrize("path", ["/j/", "/j", "/no/such/page", "/staff/nowhere", "/s/"])
async def test_unknown_paths_get_our_translated_404_page(running_app: RunningApp, http: aiohttp.ClientSession,
                                                         path: str) -> None:
    r = await http.get(f"{running_app.url}{path}")
    page = await r.text()
    assert r.status == 404 and r.headers["Content-Type"].startswith("text/html")
    assert "Không tìm thấy trang" in page and "Không có trang nào ở địa chỉ này" in page
    assert "Not Found" not in page and '<html lang="vi">' in page
    english = await (await http.get(f"{running_app.url}{path}?lang=en")).text()
    assert "No page exists at this address" in english and '<html lang="en">' in english


async def test_a_malformed_code_is_a_miss_too(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{running_app.url}/s/{uuid.uuid4()}")  # dashes: not a code, not looked up
    assert r.status == 404
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT misses FROM short_link_miss WHERE address = '127.0.0.1'") == 1


async def test_addresses_whose_window_has_passed_are_forgotten(running_app: RunningApp,
                                                               http: aiohttp.ClientSession) -> None:
    await http.get(f"{running_app.url}/s/ZZZZZZZZZZZZ", headers={"X-Forwarded-For": "192.0.2.1"})
    running_app.app[clock_key].advance(MISS_WINDOW + timedelta(seconds=1))
    await http.get(f"{running_app.url}/s/ZZZZZZZZZZZZ", headers={"X-Forwarded-For": "192.0.2.2"})
    async with running_app.pool.acquire() as con:
        rows = await con.fetch("SELECT address FROM short_link_miss")
    assert [r["address"] for r in rows] == ["192.0.2.2"]
