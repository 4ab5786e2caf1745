"""Page rendering: every template gets `_` (translate), the language, the CSRF token and static URLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from care import access
from care.access import Action
from web.auth import csrf_token
from web.keys import static_key
from web.rkeys import lang_rkey, t_rkey


def base_context(request: web.Request) -> dict[str, Any]:
    static = request.app[static_key]
    lang = request[lang_rkey]
    other = "en" if lang == "vi" else "vi"
    return {
        "_": request[t_rkey],
        "lang": lang,
        "other_lang": other,
        "other_lang_url": request.rel_url.update_query(lang=other).path_qs,
        "csrf_token": csrf_token(request),
        "static": lambda name: f"/static/{name}?v={static.version(name)}",
    }


def _may(role: str) -> Callable[[str], bool]:
    """`may('invite')` in staff templates: is the action open to this role at all (care/access.py)?"""
    return lambda action: access.may_ever(role, Action(action))


def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    extra = {"may": _may(context["me"].role)} if "me" in context else {}
    response = aiohttp_jinja2.render_template(template, request, {**base_context(request), **extra, **context},
                                              status=status)
    response.enable_compression()  # pages travel over 3G; gzip when the browser accepts it
    return response
