"""Typed application keys for shared state (created in cleanup_ctx; no module-level globals)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from signaling.hub import Hub
from web.auth import LinkSigner
from web.clock import Clock
from web.i18n import Catalogs
from web.settings import Settings
from web.signin import SignIn
from web.static import StaticFiles

settings_key = web.AppKey("settings_key", Settings)
pool_key = web.AppKey("pool_key", asyncpg.Pool)
hub_key = web.AppKey("hub_key", Hub)
signer_key = web.AppKey("signer_key", LinkSigner)
catalogs_key = web.AppKey("catalogs_key", Catalogs)
sockets_key = web.AppKey("sockets_key", set[web.WebSocketResponse])
demo_key = web.AppKey("demo_key", bool)
static_key = web.AppKey("static_key", StaticFiles)
clock_key = web.AppKey("clock_key", Clock)
signin_key = web.AppKey("signin_key", SignIn)
