"""Typed per-request storage keys (set by middleware, read by handlers and templates)."""

from __future__ import annotations

from aiohttp import web

from db.staff import Session
from web.i18n import Translator

lang_rkey = web.RequestKey("lang", str)
t_rkey = web.RequestKey("t", Translator)
csrf_rkey = web.RequestKey("csrf_token", str)
# The staff session of the request once looked up (None: looked up, there is none).
session_rkey: web.RequestKey[Session | None] = web.RequestKey("staff_session")
