"""Routes for the invitation area (issue 4); filled in by its feature work."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this area's routes (and background tasks, via app.cleanup_ctx) on the app."""
