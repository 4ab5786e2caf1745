"""`/s/<code>`: a short link, as SMS carry it. The code stands for a join link (looked up in PostgreSQL)
and the page is the join page itself, served at the short address (no redirect: one round trip less on
3G). Unknown codes are counted per client address; too many in a window and the address gets 429."""

from __future__ import annotations

from aiohttp import web

from care.short_code import MAX_MISSES, MISS_WINDOW, is_code
from db import links as links_db
from db import short_links
from web import texts
from web.client import client_address
from web.keys import clock_key, pool_key, settings_key, signer_key
from web.patient_routes import join_response
from web.render import render
from web.rkeys import t_rkey


async def short_link(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    settings = request.app[settings_key]
    address = client_address(request, settings.trusted_proxies)
    now = request.app[clock_key].now()
    t = request[t_rkey]
    async with request.app[pool_key].acquire() as con:
        if await short_links.blocked(con, address, now, window=MISS_WINDOW, max_misses=MAX_MISSES):
            response = render(request, "too_many.html", {"minutes": int(MISS_WINDOW.total_seconds() // 60)},
                              status=429)
            response.headers["Retry-After"] = str(int(MISS_WINDOW.total_seconds()))
            return response
        jti = await short_links.resolve(con, code) if is_code(code) else None
        link = await links_db.lookup(con, jti) if jti is not None else None
        if link is None:
            await short_links.record_miss(con, address, now, window=MISS_WINDOW)
    if link is None:
        return render(request, "link_error.html", {
            "code": "link_invalid", "message": t(texts.LINK_ERRORS["link_invalid"]), "facility_name": None,
            "facility_phone": None, "summary": None}, status=404)
    return await join_response(request, request.app[signer_key].sign(link.jti, link.expires_at))


def setup(app: web.Application) -> None:
    app.router.add_get("/s/{code}", short_link, name="short_link")
