"""The aiohttp application factory. Only the CLI calls `run_app`; tests call `create_app` too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import WSCloseCode, web

from db import demo
from db.migrate import migrate
from db.pool import create_pool
from signaling.hub import Hub
from web import echo_routes, invitation_routes, patient_routes, registry_routes, safety_routes, staff_routes, ws
from web.auth import LinkSigner, ice_servers, patient_identity, resolve_link
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
    sockets_key,
    static_key,
)
from web.middleware import error_middleware, language_middleware, security_middleware
from web.settings import Settings
from web.static import StaticFiles

log = logging.getLogger(__name__)

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


async def _hub(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    pool = app[pool_key]
    signer = app[signer_key]

    async def authenticate_patient(token: str) -> Any:
        async with pool.acquire() as con:
            return patient_identity(await resolve_link(con, signer, token))

    hub = Hub(pool, authenticate_patient=authenticate_patient, ice_servers=lambda: ice_servers(settings),
              max_message_bytes=settings.max_message_bytes, requeue_grace_s=settings.requeue_grace_s,
              offline_grace_s=settings.offline_grace_s)
    await hub.start()
    app[hub_key] = hub
    yield
    await hub.close()


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
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_hub)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/static/{name}", static.handle, name="static")
    app.router.add_get("/healthz", health)
    app.router.add_get("/ws", ws.websocket)
    patient_routes.setup(app)
    staff_routes.setup(app)
    registry_routes.setup(app)
    invitation_routes.setup(app)
    echo_routes.setup(app)
    safety_routes.setup(app)
    return app


async def health(request: web.Request) -> web.Response:
    """Liveness and database state, as JSON; 503 when the database does not answer."""
    from db.pool import database_state

    try:
        state = await asyncio.wait_for(database_state(request.app[pool_key]), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return web.json_response({"status": "degraded", "database": {"status": "down", "error": type(exc).__name__}},
                                 status=503)
    hub = request.app[hub_key]
    return web.json_response({"status": "ok", "database": state,
                              "sockets": len(hub.clients), "rooms": len(hub.rooms)})
