"""The aiohttp application factory. Only the CLI calls `run_app`; tests call `create_app` too."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from importlib import resources
from typing import Any

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import WSCloseCode, web

from db import demo
from db.migrate import migrate
from db.pool import create_pool
from db.staff import Session
from signaling import liveness
from signaling.bus import Bus
from signaling.hub import Hub
from web import (
    coordination_routes,
    echo_routes,
    escalation_attachment_routes,
    escalation_routes,
    htn_routes,
    invitation_routes,
    localtime,
    metrics,
    patient_routes,
    referral_routes,
    registry_routes,
    safety_routes,
    short_link_routes,
    staff_routes,
    tb_case_routes,
    tb_clips,
    tb_patient,
    tb_routes,
    thread_routes,
    ws,
)
from web.auth import (
    SESSION_COOKIE,
    LinkError,
    LinkSigner,
    ice_servers,
    patient_identity,
    resolve_link,
    resolve_links,
    staff_session,
)
from web.client import client_address, is_loopback
from web.clock import Clock
from web.database import database_dsn
from web.i18n import Catalogs
from web.keys import (
    catalogs_key,
    clock_key,
    demo_key,
    hub_key,
    pool_key,
    settings_key,
    signer_key,
    signin_key,
    sockets_key,
    static_key,
)
from web.middleware import (
    error_middleware,
    hide_server_version,
    language_middleware,
    name_server_software,
    security_middleware,
)
from web.settings import Settings
from web.signin import SignIn
from web.static import StaticFiles

log = logging.getLogger(__name__)

# Allocations (net of frees) between two collections of the youngest generation; Python's default is 700.
YOUNG_GC_THRESHOLD = 20_000

async def _database(app: web.Application) -> AsyncIterator[None]:
    """Pool (and, with no DATABASE_URL, the embedded server); migrations applied; demo data if asked."""
    async with database_dsn(app[settings_key]) as dsn:
        pool = await create_pool(dsn)
        try:
            async with pool.acquire() as con:
                await migrate(con)
                if app[demo_key] and await demo.seed(con):
                    log.info("demo data seeded")
            app[pool_key] = pool
            yield
        finally:
            await pool.close()


async def _signin(app: web.Application) -> AsyncIterator[None]:
    """The sign-in use case and the threads that check passwords (scrypt never runs on the event loop)."""
    settings = app[settings_key]
    executor = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="donghanh-password")
    app[signin_key] = SignIn(app[pool_key], executor, app[clock_key], secret=settings.secret_key,
                             session_ttl=timedelta(seconds=settings.session_ttl_s),
                             throttled=settings.signin_throttle)
    yield
    executor.shutdown(wait=True, cancel_futures=True)


async def _hub(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    pool = app[pool_key]
    signer = app[signer_key]

    async def authenticate_patient(con: asyncpg.Connection, token: str) -> Any:
        return patient_identity(await resolve_link(con, signer, token))

    async def authenticate_patients(con: asyncpg.Connection, tokens: Sequence[str]) -> list[Any]:
        return [link if isinstance(link, LinkError) else patient_identity(link)
                for link in await resolve_links(con, signer, tokens)]

    hub = Hub(pool, authenticate_patient=authenticate_patient, authenticate_patients=authenticate_patients,
              ice_servers=lambda: ice_servers(settings),
              max_message_bytes=settings.max_message_bytes, requeue_grace_s=settings.requeue_grace_s,
              outbox_limit=settings.socket_queue, hello_timeout_s=settings.hello_timeout_s,
              max_sockets_per_address=settings.max_sockets_per_address,
              session_check_s=settings.session_check_s,
              offline_grace_s=settings.offline_grace_s,
              ice_transport_policy=settings.ice_transport_policy)
    if settings.bus:  # before start: the hub reads the other processes' presence rows under its process id
        hub.bus = Bus(pool, on_message=hub.on_bus, on_resync=hub.resync)
    await hub.start()
    if hub.bus is not None:
        await hub.bus.start()
        await hub.bus_started()
    app[hub_key] = hub
    # Silent sockets (a phone that lost its network) are pinged and dropped by one sweep (DONGHANH_HEARTBEAT).
    pings = asyncio.create_task(liveness.run(lambda: hub.clients, settings.heartbeat_s), name="socket-liveness")
    yield
    pings.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pings
    if hub.bus is not None:
        await hub.bus_stopping()
        await hub.bus.close()
    await hub.close()


async def _frozen_heap(app: web.Application) -> AsyncIterator[None]:
    """Once started, move everything alive (modules, templates, catalogs, pools: ~100,000 objects that live
    as long as the process) out of the garbage collector's reach, and collect the young generation less
    often: every relayed message allocates a few short-lived objects, and with the default threshold (700)
    the collector ran dozens of times a second under load, its older generations walking the whole heap
    (BENCHMARKS.md, "Signaling relay latency"). Undone on the way out (tests build many apps in one process)."""
    gc.freeze()  # no collection first: start-up leaves little garbage, and tests start hundreds of apps
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *previous[1:])
    yield
    gc.set_threshold(*previous)
    gc.unfreeze()


async def _close_sockets(app: web.Application) -> None:
    open_sockets: set[web.WebSocketResponse] = app[sockets_key]
    for socket in list(open_sockets):
        await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(settings: Settings, *, demo_data: bool = False) -> web.Application:
    """Build the application: pages, JSON API and /ws over one PostgreSQL pool."""
    settings = settings.with_secret()
    app = web.Application(middlewares=[security_middleware, language_middleware, error_middleware],
                          client_max_size=256 * 1024)
    app[settings_key] = settings
    app[demo_key] = demo_data
    app[signer_key] = LinkSigner(settings.secret_key, settings.previous_secret_keys)
    app[catalogs_key] = Catalogs.load()
    app[clock_key] = Clock()
    app[sockets_key] = set()  # each socket removes itself in its handler's finally
    static = StaticFiles(resources.files("web").joinpath("static"))
    app[static_key] = static
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    localtime.install(environment)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_signin)
    app.cleanup_ctx.append(_hub)
    app.cleanup_ctx.append(_frozen_heap)  # last: after everything start-up loads
    app.on_shutdown.append(_close_sockets)
    name_server_software()
    app.on_response_prepare.append(hide_server_version)
    app.router.add_get("/static/{name}", static.handle, name="static")
    app.router.add_get("/healthz", health)
    metrics.setup(app)
    app.router.add_get("/ws", ws.websocket)
    patient_routes.setup(app)
    tb_clips.setup(app)
    tb_routes.setup(app)
    tb_patient.setup(app)
    tb_case_routes.setup(app)
    short_link_routes.setup(app)
    staff_routes.setup(app)
    registry_routes.setup(app)
    invitation_routes.setup(app)
    echo_routes.setup(app)
    safety_routes.setup(app)
    escalation_routes.setup(app)
    escalation_attachment_routes.setup(app)
    referral_routes.setup(app)
    coordination_routes.setup(app)
    htn_routes.setup(app)
    thread_routes.setup(app)
    return app


async def health(request: web.Request) -> web.Response:
    """Liveness as JSON: `ok` (200) or `degraded` (503 when the database does not answer). Details
    (PostgreSQL version, migration, pool, socket and room counts) only for a signed-in admin or a
    client on this machine (the container's health check, an operator's curl)."""
    from db.pool import database_state

    try:
        state = await asyncio.wait_for(database_state(request.app[pool_key]), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if not await _sees_health_details(request):
            return web.json_response({"status": "degraded"}, status=503)
        return web.json_response({"status": "degraded", "database": {"status": "down", "error": type(exc).__name__}},
                                 status=503)
    if not await _sees_health_details(request):
        return web.json_response({"status": "ok"})
    hub = request.app[hub_key]
    return web.json_response({"status": "ok", "database": state,
                              "sockets": len(hub.clients), "rooms": len(hub.rooms)})


async def _sees_health_details(request: web.Request) -> bool:
    if is_loopback(client_address(request, request.app[settings_key].trusted_proxies)):
        return True
    if SESSION_COOKIE not in request.cookies:
        return False
    async def lookup() -> Session | None:
        async with request.app[pool_key].acquire() as con:
            return await staff_session(con, request)
    try:
        session = await asyncio.wait_for(lookup(), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return session is not None and session.staff.role == "admin"
