"""Cross-cutting request handling: language, security headers, CSRF cookie, errors → JSON or page."""

from __future__ import annotations

import logging
import re
import secrets
from http import HTTPStatus

from aiohttp import hdrs, web, web_response
from aiohttp.typedefs import Handler
from yarl import URL

from db.errors import DbError
from signaling.errors import SignalingError
from web.auth import CSRF_COOKIE
from web.errors import ApiError, from_db, json_error
from web.i18n import LANGUAGES
from web.keys import catalogs_key, settings_key
from web.render import render
from web.rkeys import csrf_rkey, lang_rkey, t_rkey
from web.settings import Settings

log = logging.getLogger(__name__)

LANG_COOKIE = "dh_lang"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")

# What a Host header may look like before it is written into a header of ours (no `;`, spaces, quotes).
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")

# aiohttp announces "Python/3.x aiohttp/3.y" unless a Server header is already set.
SERVER_HEADER = "donghanh"


def socket_origin(settings: Settings, request: web.Request) -> str | None:
    """The websocket origin of this app (`wss://kham.example.vn`): from the public URL when configured,
    else from the request's own host; None when the Host header is not a plain host[:port]."""
    if settings.public_url:
        url = URL(settings.public_url)
        scheme, host = url.scheme, url.raw_authority
    else:
        scheme, host = request.scheme, request.host
    if not host or not _HOST.match(host) or scheme not in ("http", "https"):
        return None
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}"


def content_security_policy(settings: Settings, request: web.Request) -> str:
    """Scripts, styles and connections from this origin only; the socket to this app's own ws(s) origin
    ('self' alone does not cover ws: in every browser patients use)."""
    origin = socket_origin(settings, request)
    return CSP.format(connect="'self'" + (f" {origin}" if origin else ""))


def name_server_software() -> None:
    """Replies aiohttp writes itself, before any handler or signal runs (a malformed request line, an
    oversized header), take their Server header from this module constant: name the software without
    its version there too."""
    web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]


async def hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response the app sends (pages, static files, the socket upgrade)
    names the software without its version."""
    response.headers[hdrs.SERVER] = SERVER_HEADER


@web.middleware
async def language_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Vietnamese unless the person chose English (`?lang=en`, remembered in a cookie)."""
    settings = request.app[settings_key]
    chosen = request.query.get("lang")
    lang = chosen if chosen in LANGUAGES else request.cookies.get(LANG_COOKIE)
    if lang not in LANGUAGES:
        lang = settings.default_lang
    request[lang_rkey] = lang
    request[t_rkey] = request.app[catalogs_key].translator(lang)
    response = await handler(request)
    if chosen in LANGUAGES and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="Lax", httponly=True,
                            secure=settings.cookies_secure)
    return response


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and bare HTTP errors are responses too
        _secure(request, exc)
        raise
    return _secure(request, response)


def _secure(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if response.prepared:  # its headers are sent (a websocket's 101, when its socket closes): nothing to add
        return response
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(request.app[settings_key], request))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # The join token is in the path: never send it on as a referrer.
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
    if not request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")
    token = request.get(csrf_rkey)
    if isinstance(token, str) and request.cookies.get(CSRF_COOKIE) != token and not response.prepared:
        response.set_cookie(CSRF_COOKIE, token, samesite="Strict", httponly=False, path="/",
                            secure=request.app[settings_key].cookies_secure)
    return response


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals get their code and message; anything unexpected is logged (ids only) and shown as 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and _wants_json(request):
            return json_error(ApiError(exc.reason.lower().replace(" ", "_"), exc.reason, status=exc.status))
        if exc.status in (403, 404, 405) and not _wants_json(request):
            return await _error_page(request, exc.status, exc.reason)
        raise
    except ApiError as exc:
        if _wants_json(request):
            return json_error(exc)
        return await _error_page(request, exc.status, exc.message)
    except DbError as exc:
        api = from_db(exc)
        return json_error(api) if _wants_json(request) else await _error_page(request, api.status, api.message)
    except SignalingError as exc:
        api = ApiError(exc.code, exc.message)
        return json_error(api) if _wants_json(request) else await _error_page(request, api.status, api.message)
    except Exception:
        incident = secrets.token_hex(4)
        log.exception("unhandled error", extra={"incident": incident, "path": request.match_info.route.name})
        message = f"internal error (incident {incident})"
        if _wants_json(request):
            return json_error(ApiError("internal", message, status=500))
        return await _error_page(request, 500, message)


async def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    t = request[t_rkey]
    titles = {403: t("You are not allowed to see this page"), 404: t("Page not found"),
              500: t("Something went wrong on our side")}
    # aiohttp's bare reasons ("Not Found") are English: say it in the reader's language instead.
    bare = {403: t("You do not have access to this page."),
            404: t("No page exists at this address. If the link came in a message, check it was copied whole."),
            405: t("This page cannot be used that way.")}
    if status in bare and message == HTTPStatus(status).phrase:
        message = bare[status]
    response = render(request, "error.html", {"title": titles.get(status, t("Request refused")), "detail": message})
    response.set_status(status)
    return response
