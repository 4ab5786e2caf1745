"""Referrals over HTTP: the asking doctor refers from an opinion that advises a transfer; the receiving
facility lists incoming referrals, acknowledges them and records the patient's arrival. The sender's
pages are told of each status (`escalation_update` with `event: referral_*`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from aiohttp import web

from care.access import Action
from db import referrals as referrals_db
from db.errors import DbError
from db.escalations import Notice
from web import escalation_texts
from web.access import require, require_role
from web.errors import ApiError, from_db
from web.escalation_routes import _load, push
from web.keys import clock_key, pool_key
from web.patient_routes import decode_body
from web.render import render
from web.rkeys import t_rkey
from web.staff_routes import require_api_session, require_page_session


class ReferBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    to_facility_id: int | None = None
    urgency: Annotated[str, msgspec.Meta(max_length=20)] | None = None


def _view(r: referrals_db.Referral) -> dict[str, Any]:
    return {"id": str(r.id), "escalation_id": str(r.escalation_id), "to_facility_id": r.to_facility_id,
            "status": r.status, "urgency": r.urgency, "reason": r.reason, "created_at": r.created_at.isoformat(),
            "acknowledged_at": r.acknowledged_at.isoformat() if r.acknowledged_at else None,
            "arrived_at": r.arrived_at.isoformat() if r.arrived_at else None}


async def refer(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), ReferBody)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.ask_opinion)
        try:
            created = await referrals_db.create_from_opinion(
                con, e.id, session.staff.id, to_facility_id=body.to_facility_id, reason=body.reason,
                urgency=body.urgency, now=request.app[clock_key].now())
        except DbError as exc:
            raise from_db(exc) from None
    return web.json_response(_view(created), status=201)


async def referral_of(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        found = await referrals_db.for_escalation(con, e.id)
    return web.json_response({"referral": _view(found) if found else None})


async def incoming(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    require_role(request, session.staff, Action.receive_referral)
    async with request.app[pool_key].acquire() as con:
        rows = await referrals_db.incoming(con, session.staff.facility_id)
    return web.json_response({"referrals": [
        {k: (str(v) if isinstance(v, uuid.UUID) else v.isoformat() if hasattr(v, "isoformat") else v)
         for k, v in dict(r).items()} for r in rows]})


async def _step(request: web.Request, kind: str) -> web.Response:
    session = await require_api_session(request, write=True)
    try:
        referral_id = uuid.UUID(request.match_info["rid"])
    except ValueError:
        raise ApiError("not_found", "no such referral") from None
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as con:
        found = await referrals_db.get(con, referral_id)
        if found is None:
            raise ApiError("not_found", "no such referral")
        await require(request, con, session.staff, Action.receive_referral, found.to_facility_id, hide=True)
        try:
            step = referrals_db.acknowledge if kind == "acknowledged" else referrals_db.arrived
            changed = await step(con, referral_id, session.staff.id, now)
        except DbError as exc:
            raise from_db(exc) from None
    push(request.app, [Notice(found.created_by, "escalation_update", found.escalation_id,
                              {"event": f"referral_{kind}"})])
    return web.json_response(_view(changed))


async def acknowledge(request: web.Request) -> web.Response:
    return await _step(request, "acknowledged")


async def arrived(request: web.Request) -> web.Response:
    return await _step(request, "arrived")


async def incoming_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.receive_referral)
    async with request.app[pool_key].acquire() as con:
        rows = await referrals_db.incoming(con, session.staff.facility_id)
    t = request[t_rkey]
    return render(request, "referrals.html", {"me": session.staff, "referrals": rows,
                                              "statuses": escalation_texts.REFERRAL_STATUSES,
                                              "js_strings": t.json([])})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/escalations/{eid}/referral", refer)
    app.router.add_get("/api/escalations/{eid}/referral", referral_of)
    app.router.add_get("/api/referrals/incoming", incoming)
    app.router.add_post("/api/referrals/{rid}/acknowledge", acknowledge)
    app.router.add_post("/api/referrals/{rid}/arrived", arrived)
    app.router.add_get("/staff/referrals", incoming_page)
