"""The coordinator's dashboard: waiting patients by level, calls in progress, open requests by urgency and
age (overdue first, in red), referrals in transit, who is on duty, and the last 30 days per urgency; each
table as CSV. Counts, states and ages only (Action.read_counts), for one's facility and below. The page
refreshes itself every 15 s and whenever its socket carries an escalation event."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from care.access import Action
from db import coordination
from web import coordination_view, escalation_texts
from web.access import require_role
from web.errors import ApiError
from web.keys import clock_key, pool_key
from web.render import render
from web.rkeys import lang_rkey, t_rkey
from web.staff_routes import require_api_session, require_page_session

TABLES = ("waiting", "calls", "open_requests", "referrals", "on_duty", "stats")


async def data(request: web.Request) -> web.Response:
    """The tables as the page shows them (translated headers and labels; see web/coordination_view.py).
    The machine form, raw codes and numbers, is the CSV export."""
    session = await require_api_session(request)
    require_role(request, session.staff, Action.read_counts)
    async with request.app[pool_key].acquire() as con:
        tables = await coordination.snapshot(con, session.staff.facility_id, request.app[clock_key].now())
        names = await coordination_view.specialty_names(con, request[lang_rkey])
    return web.json_response(coordination_view.tables(request[t_rkey], tables, names))


async def export(request: web.Request) -> web.StreamResponse:
    session = await require_api_session(request)
    require_role(request, session.staff, Action.read_counts)
    table = request.match_info["table"]
    if table not in TABLES:
        raise ApiError("not_found", f"no table {table!r} (one of {', '.join(TABLES)})")
    async with request.app[pool_key].acquire() as con:
        rows = (await coordination.snapshot(con, session.staff.facility_id, request.app[clock_key].now()))[table]
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{table}.csv"'})


async def page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_counts)
    t = request[t_rkey]
    return render(request, "coordination.html", {"me": session.staff, "tables": TABLES,
                                                  "js_strings": t.json(escalation_texts.DASHBOARD_JS)})


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/coordination", page)
    app.router.add_get("/api/coordination", data)
    app.router.add_get("/api/coordination/{table}.csv", export)
