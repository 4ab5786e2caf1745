"""The doctor of an empty call: reveal the patient's phone number (audited) or mark them a no-show."""

from __future__ import annotations

import msgspec
from aiohttp import web

from care.phone import national
from db import no_show as no_show_db
from db.errors import DbError
from db.no_show import NoShowReason
from web.errors import from_db
from web.invitation_routes import link_url, policy
from web.keys import clock_key, hub_key, pool_key, settings_key
from web.patient_routes import decode_body
from web.staff_routes import _consultation_for, _uuid, require_api_session


class NoShowBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: NoShowReason


async def patient_phone(request: web.Request) -> web.Response:
    """`POST /api/c/{cid}/patient-phone`: the number of the doctor's own patient, to call them; audited."""
    session = await require_api_session(request, write=True)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]))
        try:
            phone = await no_show_db.reveal_phone(con, c.id, session.staff.id)
        except DbError as exc:
            raise from_db(exc) from None
    return web.json_response({"phone": phone, "display": national(phone) if phone else None})


async def mark_no_show(request: web.Request) -> web.Response:
    """`POST /api/c/{cid}/no-show`: close the call as a no-show; the patient is texted a new link."""
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), NoShowBody)
    app = request.app
    async with app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]))
        try:
            result = await no_show_db.mark(con, c.id, doctor_id=session.staff.id, reason=body.reason.value,
                                           now=app[clock_key].now(), policy=policy(app[settings_key]),
                                           link_url=link_url(app))
        except DbError as exc:
            raise from_db(exc) from None
    await app[hub_key].notify_ended(c.id, c.patient_id, by="doctor", outcome="no_show")
    return web.json_response({"consultation": str(c.id), "entry": str(result.entry_id), "outcome": "no_show",
                              "reason": body.reason.value, "invitation": str(result.invitation_id),
                              "sms": result.message_id is not None})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/c/{cid}/patient-phone", patient_phone)
    app.router.add_post("/api/c/{cid}/no-show", mark_no_show)
