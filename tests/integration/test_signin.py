"""Sign-in over real HTTP: throttling per account and per address, lock messages, the audit of failures,
CSRF tokens bound to the session, and password checks that never stall the event loop."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from care.appointments import FACILITY_TZ
from db import audit
from db import staff as staff_db
from tests.conftest import RunningApp
from tests.integration.test_http import DEMO_PASSWORD, csrf_cookie, jar_session
from tests.integration.wsclient import WsClient
from web.app import create_app
from web.i18n import Catalogs
from web.keys import clock_key, signin_key
from web.settings import Settings
from web.staff_routes import SIGN_IN_LOCKED, SIGN_IN_WAIT
from web.throttle import ACCOUNT, ADDRESS

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

STATION = "203.0.113.7"  # a commune station's one public address (through the local proxy)
ELSEWHERE = "198.51.100.20"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar_session() as session:
        yield session


async def attempt(http: aiohttp.ClientSession, app: RunningApp, username: str, password: str,
                  address: str = STATION) -> aiohttp.ClientResponse:
    """One sign-in as a browser behind the documented proxy does it: form page, then POST."""
    headers = {"X-Forwarded-For": address}
    await http.get(f"{app.url}/staff/login", headers=headers)
    return await http.post(f"{app.url}/staff/login", allow_redirects=False, headers=headers, data={
        "username": username, "password": password, "_csrf": csrf_cookie(http, app)})


def advance(app: RunningApp, r: aiohttp.ClientResponse) -> None:
    """Move the app's clock past the wait a 429 announced."""
    app.app[clock_key].advance(timedelta(seconds=int(r.headers["Retry-After"])))


def vietnamese(msgid: str) -> str:
    text = Catalogs.load().gettext("vi", msgid)
    assert text != msgid, f"no Vietnamese translation for {msgid!r}"
    return text


def message_pattern(msgid: str, time_format: str) -> re.Pattern[str]:
    text = re.escape(vietnamese(msgid)).replace(re.escape("{time}"), f"({time_format})")
    return re.compile(text)


async def test_account_waits_grow_then_it_locks_with_a_message_naming_the_time(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    checked, waits = 0, []
    while True:
        r = await attempt(http, running_app, "bacsi.lan", "sai-mat-khau")
        page = await r.text()
        if r.status == 401:
            checked += 1
            continue
        assert r.status == 429
        wait = int(r.headers["Retry-After"])
        if checked >= ACCOUNT.lock_after:
            break
        match = message_pattern(SIGN_IN_WAIT, r"\d\d:\d\d:\d\d").search(page)
        assert match, page
        retry_at = (running_app.app[clock_key].now() + timedelta(seconds=wait)).astimezone(FACILITY_TZ)
        assert match.group(1) in {(retry_at - timedelta(seconds=s)).strftime("%H:%M:%S") for s in (0, 1)}
        waits.append(wait)
        advance(running_app, r)
    # 3 free tries, then waits of 1, 2, 4… seconds, then the lock at the 10th failure.
    assert checked == ACCOUNT.lock_after
    assert waits == [2 ** i for i in range(ACCOUNT.lock_after - ACCOUNT.free - 1)]
    assert wait == ACCOUNT.lock.total_seconds()
    match = message_pattern(SIGN_IN_LOCKED, r"\d\d:\d\d").search(page)
    assert match, page
    lock_end = (running_app.app[clock_key].now() + ACCOUNT.lock).astimezone(FACILITY_TZ)
    assert match.group(1) in {(lock_end - timedelta(minutes=m)).strftime("%H:%M") for m in (0, 1)}
    # While locked even the right password is not checked, and no session opens.
    r = await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)
    assert r.status == 429 and "dh_session" not in r.cookies
    advance(running_app, r)
    assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303


async def test_english_lock_message(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    await http.get(f"{running_app.url}/staff/login?lang=en")
    for _ in range(ACCOUNT.free + 1):
        assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 401
    r = await attempt(http, running_app, "bacsi.lan", "wrong")
    assert r.status == 429
    assert "Too many failed sign-ins. Please wait until " in await r.text()


async def test_a_successful_sign_in_resets_the_account_counter(running_app: RunningApp,
                                                               http: aiohttp.ClientSession) -> None:
    for _ in range(ACCOUNT.free + 1):
        assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 401
    r = await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)
    assert r.status == 429
    advance(running_app, r)
    assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
    # From zero again: the free tries are answered at once, no wait carried over.
    async with jar_session() as other:
        for _ in range(ACCOUNT.free + 1):
            assert (await attempt(other, running_app, "bacsi.lan", "wrong")).status == 401


async def test_unknown_accounts_are_throttled_like_real_ones(running_app: RunningApp,
                                                             http: aiohttp.ClientSession) -> None:
    for username in ("bacsi.lan", "khong.co.ai"):
        statuses = [(await attempt(http, running_app, username, "wrong", ELSEWHERE)).status
                    for _ in range(ACCOUNT.free + 2)]
        assert statuses == [401] * (ACCOUNT.free + 1) + [429], username


async def test_one_address_is_slowed_after_many_failures_on_many_accounts(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    # Lan has signed in from her station browser before: it carries a device cookie for her account.
    async with jar_session() as lan_browser:
        assert (await attempt(lan_browser, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
        # Someone at the same address sprays one guess at each of many names (no account gets slowed).
        for n in range(ADDRESS.free + 1):
            assert (await attempt(http, running_app, f"ten.doan.{n}", "wrong")).status == 401
        r = await attempt(http, running_app, "bacsi.minh", "wrong")
        assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= ADDRESS.max_delay.total_seconds()
        # Another address is not affected.
        assert (await attempt(http, running_app, "bacsi.minh", "wrong", ELSEWHERE)).status == 401
        # Lan, on the browser she signed in with before, is not locked out by her station's address.
        assert (await attempt(lan_browser, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
    # A browser that never signed in to Minh's account waits like everyone else at that address.
    async with jar_session() as new_browser:
        assert (await attempt(new_browser, running_app, "bacsi.minh", DEMO_PASSWORD)).status == 429


async def test_guessing_at_an_account_does_not_lock_its_owner_on_a_known_browser(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    async with jar_session() as lan_browser:
        assert (await attempt(lan_browser, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
        for _ in range(ACCOUNT.free + 1):
            assert (await attempt(http, running_app, "bacsi.lan", "wrong", ELSEWHERE)).status == 401
        assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD, ELSEWHERE)).status == 429
        assert (await attempt(lan_browser, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303


async def test_a_forged_device_cookie_earns_nothing(running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    http.cookie_jar.update_cookies({"dh_device": "abc.0123456789abcdef0123456789abcdef"}, URL(running_app.url))
    for _ in range(ACCOUNT.free + 1):
        assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 401
    assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 429


async def test_throttling_holds_across_processes(running_app: RunningApp, app_settings: Settings,
                                                 http: aiohttp.ClientSession) -> None:
    for _ in range(ACCOUNT.free + 1):
        assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 401
    # A second application process on the same database sees the same counters.
    second_app = create_app(app_settings)
    server = TestServer(second_app, host="127.0.0.1")
    await server.start_server()
    try:
        r = await attempt(http, RunningApp(second_app, server), "bacsi.lan", DEMO_PASSWORD)
        assert r.status == 429
    finally:
        await server.close()


async def test_the_count_is_forgotten_after_a_quiet_hour_and_its_row_pruned(running_app: RunningApp,
                                                                          http: aiohttp.ClientSession) -> None:
    for _ in range(ACCOUNT.free + 1):
        assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 401
    running_app.app[clock_key].advance(ACCOUNT.forget_after + timedelta(minutes=1))
    # Another failure elsewhere prunes the forgotten counters (Lan's account, the station's address).
    assert (await attempt(http, running_app, "bacsi.minh", "wrong", ELSEWHERE)).status == 401
    async with running_app.pool.acquire() as con:
        kinds = sorted(r["kind"] for r in await con.fetch("SELECT kind FROM signin_throttle"))
    assert kinds == ["account", "address"]  # Minh's and ELSEWHERE's only
    for _ in range(ACCOUNT.free + 1):
        assert (await attempt(http, running_app, "bacsi.lan", "wrong")).status == 401


# ---- audit -------------------------------------------------------------------------------------------

async def sign_in_events(app: RunningApp, action: str) -> list[dict[str, Any]]:
    async with app.pool.acquire() as con:
        rows = await con.fetch("SELECT * FROM audit_event WHERE action = $1 ORDER BY id", action)
    return [dict(r) for r in rows]


async def test_failed_sign_ins_are_audited_with_the_staff_id_and_address_only(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    assert (await attempt(http, running_app, "BacSi.Lan ", "mat-khau-sai-123")).status == 401
    assert (await attempt(http, running_app, "ai.do.go.nham", "mat-khau-sai-456", ELSEWHERE)).status == 401
    async with running_app.pool.acquire() as con:
        lan_id = await con.fetchval("SELECT id FROM staff WHERE username = 'bacsi.lan'")
        all_audit = json.dumps([dict(r) for r in await con.fetch("SELECT * FROM audit_event")], default=str)
        assert await audit.verify_chain(con) is None
    known, unknown = await sign_in_events(running_app, "staff.sign_in_failed")
    assert (known["object_kind"], known["object_id"], known["actor_kind"]) == ("staff", str(lan_id), "system")
    assert known["details"]["address"] == STATION and known["details"]["reason"] == "wrong_password"
    assert unknown["object_id"] == "" and unknown["details"]["reason"] == "unknown_account"
    assert unknown["details"]["address"] == ELSEWHERE and len(unknown["details"]["account"]) == 32
    for secret in ("mat-khau-sai", "ai.do.go.nham", "BacSi.Lan"):
        assert secret not in all_audit


async def test_sign_in_opens_the_session_and_audits_it_with_the_address(running_app: RunningApp,
                                                                       http: aiohttp.ClientSession) -> None:
    assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
    (event,) = await sign_in_events(running_app, "staff.sign_in")
    async with running_app.pool.acquire() as con:
        session_at = await con.fetchval("SELECT created_at FROM staff_session")
    assert event["details"] == {"address": STATION}
    assert event["at"] >= session_at  # written after the session's insert (one transaction: web.signin)


# ---- CSRF bound to the session ------------------------------------------------------------------------

def set_csrf_cookie(http: aiohttp.ClientSession, app: RunningApp, value: str) -> None:
    http.cookie_jar.update_cookies({"dh_csrf": value}, URL(app.url))


async def change_level(http: aiohttp.ClientSession, app: RunningApp, token: str) -> aiohttp.ClientResponse:
    return await http.post(f"{app.url}/api/queue/{uuid.uuid4()}/level", json={"level": "NC2"},
                           headers={"X-CSRF-Token": token})


async def test_a_csrf_token_from_before_sign_in_no_longer_works_after_it(running_app: RunningApp,
                                                                         http: aiohttp.ClientSession) -> None:
    await http.get(f"{running_app.url}/staff/login")
    before = csrf_cookie(http, running_app)
    assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
    after = csrf_cookie(http, running_app)
    assert after != before
    # Even with the old token back in the cookie (a double-submit pair an attacker could plant):
    set_csrf_cookie(http, running_app, before)
    r = await change_level(http, running_app, before)
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
    r = await http.post(f"{running_app.url}/staff/logout", allow_redirects=False, data={"_csrf": before})
    assert r.status == 403
    # The session's token works, whatever the cookie says.
    r = await change_level(http, running_app, after)
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    # Pages carry the session's token again (and put it back into the cookie for the scripts).
    page = await (await http.get(f"{running_app.url}/staff")).text()
    assert f'name="_csrf" value="{after}"' in page and csrf_cookie(http, running_app) == after


async def test_forged_and_borrowed_csrf_tokens_are_refused(running_app: RunningApp,
                                                           http: aiohttp.ClientSession) -> None:
    assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
    async with jar_session() as minh:
        assert (await attempt(minh, running_app, "bacsi.minh", DEMO_PASSWORD)).status == 303
        minhs = csrf_cookie(minh, running_app)
    for forged in ("forged-token-0123456789abcdef", minhs, "không-phải-ascii"):
        set_csrf_cookie(http, running_app, forged)  # cookie and header agree: double-submit would pass
        r = await http.post(f"{running_app.url}/api/queue/{uuid.uuid4()}/level", json={"level": "NC2"},
                            headers={"X-CSRF-Token": forged.encode().decode("latin-1")})
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf", forged


async def test_sign_out_gives_the_browser_a_new_pre_login_token(running_app: RunningApp,
                                                               http: aiohttp.ClientSession) -> None:
    assert (await attempt(http, running_app, "bacsi.lan", DEMO_PASSWORD)).status == 303
    session_token = csrf_cookie(http, running_app)
    r = await http.post(f"{running_app.url}/staff/logout", allow_redirects=False, data={"_csrf": session_token})
    assert r.status == 303
    assert csrf_cookie(http, running_app) != session_token
    assert (await attempt(http, running_app, "bacsi.minh", DEMO_PASSWORD)).status == 303


# ---- password checks off the event loop ----------------------------------------------------------------

class GatedExecutor(ThreadPoolExecutor):
    """A real thread pool that holds every job until the gate opens, and reports what it was given."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(max_workers=2, thread_name_prefix="test-gated")
        self.gate = threading.Event()
        self.loop = loop
        self.jobs: list[str] = []
        self.threads: list[str] = []
        self.changed = asyncio.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs.append(getattr(fn, "__qualname__", repr(fn)))
        self.loop.call_soon_threadsafe(self.changed.set)

        def gated() -> Any:
            self.gate.wait(timeout=30)
            self.threads.append(threading.current_thread().name)
            return fn(*args, **kwargs)
        return super().submit(gated)


async def test_a_users_ping_round_trips_while_many_sign_ins_are_being_checked(
        running_app: RunningApp, http: aiohttp.ClientSession) -> None:
    assert (await attempt(http, running_app, "bacsi.minh", DEMO_PASSWORD)).status == 303
    sign_ins = 12  # more than the app's database pool: in flight, they must hold no connection
    minh = WsClient(await http.ws_connect(f"{running_app.url}/ws"))
    await minh.send(type="hello")
    await minh.expect("welcome")

    async with running_app.pool.acquire() as con:
        facility = await con.fetchval("SELECT facility_id FROM staff WHERE username = 'bacsi.lan'")
        for i in range(sign_ins):  # one account each: this is not about the account throttle
            await staff_db.create(con, facility_id=facility, username=f"nv.{i}", name=f"NV {i}", role="nurse",
                                  password=DEMO_PASSWORD)
    signin = running_app.app[signin_key]
    real_executor, gated = signin.executor, GatedExecutor(asyncio.get_running_loop())
    signin.executor = gated
    browsers = [jar_session() for _ in range(sign_ins)]
    try:
        tasks = [asyncio.create_task(attempt(b, running_app, f"nv.{i}", DEMO_PASSWORD if i % 2 else "wrong",
                                             f"198.51.100.{i}"))
                 for i, b in enumerate(browsers)]
        async with asyncio.timeout(30):
            while len(gated.jobs) < sign_ins:
                gated.changed.clear()
                await gated.changed.wait()
        assert set(gated.jobs) == {staff_db.check_password.__qualname__}
        # Every password check is waiting in the thread pool; the loop serves everyone else meanwhile.
        for n in range(20):
            ping = await minh.send(type="ping")
            await minh.expect("pong", id=ping)
            assert not any(t.done() for t in tasks), n
        assert (await http.get(f"{running_app.url}/staff", allow_redirects=False)).status == 200
        gated.gate.set()
        statuses = [r.status for r in await asyncio.gather(*tasks)]
        assert sorted(statuses) == [303] * (sign_ins // 2) + [401] * (sign_ins // 2)
        assert len(gated.threads) == sign_ins and all(t.startswith("test-gated") for t in gated.threads)
    finally:
        gated.gate.set()
        signin.executor = real_executor
        gated.shutdown(wait=True)
        for b in browsers:
            await b.close()
        await minh.close()


async def test_the_apps_own_pool_checks_passwords_in_named_worker_threads(running_app: RunningApp) -> None:
    executor = running_app.app[signin_key].executor
    name = await asyncio.get_running_loop().run_in_executor(executor, lambda: threading.current_thread().name)
    assert name.startswith("donghanh-password") and name != threading.main_thread().name
