"""Specialist escalation over HTTP: ask, the inboxes, accept, decline, the thread, the written opinion,
cancel and close, the on-duty switch; live pushes (`escalation_*`) to the staff sockets concerned.

Handlers are thin: parse → authorise (care/access.py through web/access.py) → one db/escalations.py use
case → push what changed → render. The escalation loop (offer windows, deadlines) runs in this module's
cleanup_ctx. Joining a live call (issue 9 point 4) is esc-live's part: an accepted request asked from a
live call sends the requester `escalation_accepted` with `live: true` and the consultation id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from care import escalation as machine
from care.access import Action
from db import audit
from db import escalation_sms as sms_db
from db import escalation_summary as summary_db
from db import escalations as esc
from db import patients as patients_db
from db.errors import DbError
from db.escalations import Escalation, Notice, Policies
from db.staff import StaffMember
from web import coordination_view, escalation_texts, params
from web.access import require, require_role
from web.errors import ApiError, from_db
from web.escalation_loop import EscalationLoop
from web.keys import clock_key, hub_key, pool_key, settings_key
from web.localtime import localtime
from web.patient_routes import decode_body
from web.render import render
from web.rkeys import lang_rkey, t_rkey
from web.staff_routes import require_api_session, require_page_session

log = logging.getLogger(__name__)

escalation_loop_key = web.AppKey("escalation_loop_key", EscalationLoop)
policies_key: web.AppKey[Policies] = web.AppKey("escalation_policies_key")
# The offer SMS being queued (tasks started by push); awaited on shutdown, and by tests.
offer_texts_key: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("escalation_offer_texts_key")
# The nav bar badges being recounted and pushed (tasks started by push); awaited on shutdown, and by tests.
badge_tasks_key: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("escalation_badge_tasks_key")
# Notices after which their addressee's badge count changes (an offer came or went, an opinion landed).
BADGE_KINDS = frozenset({"escalation_offer", "escalation_withdrawn", "escalation_answered"})

LONG = Annotated[str, msgspec.Meta(max_length=4000)]


class AskBody(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: int
    specialty: Annotated[str, msgspec.Meta(max_length=40)]
    urgency: Annotated[str, msgspec.Meta(max_length=20)]
    question: Annotated[str, msgspec.Meta(max_length=10_000)]
    consent: bool
    summary: dict[str, Any] = {}
    consultation_id: uuid.UUID | None = None


class DeclineBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=2000)]


class MessageBody(msgspec.Struct, forbid_unknown_fields=True):
    body: Annotated[str, msgspec.Meta(max_length=10_000)]


class OpinionBody(msgspec.Struct, forbid_unknown_fields=True):
    assessment: LONG
    recommendation: LONG
    transfer: bool
    avoided_visit: bool
    follow_up: LONG = ""
    transfer_facility_id: int | None = None
    transfer_urgency: Annotated[str, msgspec.Meta(max_length=20)] | None = None


class DutyBody(msgspec.Struct, forbid_unknown_fields=True):
    on_duty: bool


# ---- pushing ----------------------------------------------------------------------------------------

def push(app: web.Application, notices: list[Notice], actor: int | None = None) -> None:
    """Send each notice to its staff member's open pages (never waits on a socket). An urgent offer to a
    specialist with no page open in this process is also texted to their phone: a task queues the SMS
    (once per offer, db/escalation_sms.py), so nothing here waits on the database either. Whoever's badge
    count changed (the notices' addressees, and `actor`, who just accepted, declined or answered) gets
    `escalation_badge` with their new counts, from a task too."""
    hub = app[hub_key]
    recount = {actor} if actor is not None else set()
    for n in notices:
        pages = hub.to_staff(n.staff_id, {"type": n.kind, "escalation": str(n.escalation_id), **n.details})
        if n.kind in BADGE_KINDS:
            recount.add(n.staff_id)
        if pages == 0 and n.kind == "escalation_offer" and n.details.get("urgency") == machine.Urgency.urgent.value:
            task = asyncio.get_running_loop().create_task(_text_offer(app, n))
            app[offer_texts_key].add(task)
            task.add_done_callback(app[offer_texts_key].discard)
    if recount:
        push_badges(app, recount)


def push_badges(app: web.Application, staff_ids: set[int]) -> None:
    """Recount these staff members' badges and push them to their open pages (a task: never waits)."""
    task = asyncio.get_running_loop().create_task(_push_badges(app, sorted(staff_ids)))
    app[badge_tasks_key].add(task)
    task.add_done_callback(app[badge_tasks_key].discard)


async def _push_badges(app: web.Application, staff_ids: list[int]) -> None:
    try:
        async with app[pool_key].acquire() as con:
            counts = [(s, await esc.badge(con, s)) for s in staff_ids]
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # A lost badge update heals at the page's next (re)connect, which reads the counts again.
        log.warning("escalation badge not recounted", extra={"staff": staff_ids, "error": type(exc).__name__})
        return
    hub = app[hub_key]
    for staff_id, badge in counts:
        hub.to_staff(staff_id, {"type": "escalation_badge", "offers": badge.offers, "unread": badge.unread})


async def _text_offer(app: web.Application, n: Notice) -> None:
    settings = app[settings_key]
    ids = {"escalation": str(n.escalation_id), "staff": n.staff_id}
    try:
        async with app[pool_key].acquire() as con:
            result = await sms_db.text_offer(con, n.escalation_id, n.staff_id, base_url=settings.base_url,
                                             lang=settings.default_lang, now=app[clock_key].now())
    except Exception as exc:  # a lost SMS must not break the loop or a handler; the offer stands anyway
        log.error("escalation offer SMS not queued", extra={**ids, "error": type(exc).__name__})
        return
    if result.outcome is sms_db.OfferText.no_phone:
        log.warning("urgent escalation offer with no page open and no phone on file", extra=ids)
    elif result.outcome is sms_db.OfferText.queued:
        log.info("escalation offer SMS queued", extra={**ids, "message": result.message_id})


async def offer_texts_done(app: web.Application) -> None:
    """Wait for the offer SMS being queued now (shutdown; tests)."""
    tasks: set[asyncio.Task[None]] = app[offer_texts_key]
    pending = list(tasks)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def badges_done(app: web.Application) -> None:
    """Wait for the badge counts being pushed now (shutdown; tests)."""
    tasks: set[asyncio.Task[None]] = app[badge_tasks_key]
    pending = list(tasks)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def escalation_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the escalation loop, started after the pool and the hub and stopped before them."""
    windows = app[settings_key].escalation_windows
    configured = machine.policies({u: (timedelta(seconds=d), timedelta(seconds=w)) for u, d, w in windows})
    app[policies_key] = configured
    loop = EscalationLoop(app[pool_key], app[clock_key], configured,
                          notify=lambda notices: push(app, notices),
                          interval_s=app[settings_key].scheduler_interval_s)
    app[escalation_loop_key] = loop
    loop.start()
    yield
    await loop.stop()
    await offer_texts_done(app)
    await badges_done(app)


# ---- helpers ----------------------------------------------------------------------------------------

def _eid(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["eid"])
    except ValueError:
        raise ApiError("not_found", "no such escalation") from None


async def _load(request: web.Request, con: asyncpg.Connection, staff: StaffMember, action: Action) -> Escalation:
    """The escalation of the URL, if `staff` may do `action` to it: the requesting facility's clinicians
    read it, the specialist offered it (or who accepted it) reads and answers it. Otherwise 404/403."""
    found = await esc.get(con, _eid(request))
    if found is None:
        raise ApiError("not_found", "no such escalation") if request.path.startswith("/api/") else web.HTTPNotFound()
    participant = await esc.is_participant(con, found, staff.id)
    if action is Action.read_escalation and participant and staff.role == "specialist":
        action = Action.answer_escalation
    await require(request, con, staff, action, found.requester_facility_id, assignee=participant, hide=True)
    return found


def _view(e: Escalation) -> dict[str, Any]:
    return {"id": str(e.id), "patient_id": e.patient_id, "specialty": e.specialty, "urgency": e.urgency.value,
            "status": e.status.value, "question": e.question, "summary": e.summary, "hops": e.hops,
            "offered_to": e.offered_to, "accepted_by": e.accepted_by, "requester_id": e.requester_id,
            "consultation_id": str(e.consultation_id) if e.consultation_id else None,
            "created_at": e.created_at.isoformat(), "deadline_at": e.deadline_at.isoformat(),
            "deadline_for": e.deadline_for.value}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _row(r: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v.isoformat() if isinstance(v, datetime) else v)
            for k, v in dict(r).items()}


def _shown(r: asyncpg.Record, names: dict[str, str]) -> dict[str, Any]:
    """An inbox row with what the page prints: the specialty's name and the due time in the facility's zone."""
    return {**_row(r), "specialty_text": names.get(r["specialty"], r["specialty"]),
            "due_text": localtime(r.get("due_at") or r["deadline_at"])}


async def _run(request: web.Request, use_case: Any, actor: int | None = None) -> esc.Outcome:
    try:
        outcome: esc.Outcome = await use_case
    except DbError as exc:
        raise from_db(exc) from None
    push(request.app, outcome.notices, actor)
    return outcome


# ---- API ----------------------------------------------------------------------------------------------

async def ask(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    require_role(request, session.staff, Action.ask_opinion)
    body = decode_body(await request.read(), AskBody)
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, body.patient_id)
        if patient is None:
            raise ApiError("not_found", "no such patient")
        await require(request, con, session.staff, Action.ask_opinion, patient.facility_id, hide=True)
        if body.consultation_id is not None:
            owner = await esc.consultation_patient(con, body.consultation_id, session.staff.id)
            if owner != body.patient_id:
                raise ApiError("invalid", "the consultation is not yours or not this patient's",
                               field="consultation_id")
        request_ = esc.Request(body.patient_id, body.specialty, body.urgency, body.question, body.summary,
                               body.consent, body.consultation_id)
        outcome = await _run(request, esc.ask(con, request_, session.staff.id, session.staff.facility_id, now,
                                              request.app[policies_key]))
    return web.json_response(_view(outcome.escalation), status=201)


async def inbox(request: web.Request) -> web.Response:
    """Mine: as a specialist, what is offered to or accepted by me (soonest deadline first); as a doctor,
    my facility's requests (newest first)."""
    session = await require_api_session(request)
    require_role(request, session.staff, Action.read_escalation)
    async with request.app[pool_key].acquire() as con:
        names = await coordination_view.specialty_names(con, request[lang_rkey])
        offered = [_shown(r, names) for r in await esc.specialist_inbox(con, session.staff.id)]
        asked = [_shown(r, names) for r in await esc.requester_inbox(con, session.staff.facility_id)]
    unread = sum(1 for r in asked if r["status"] in ("answered", "overdue"))
    return web.json_response({"offered": offered, "asked": asked, "badge": len(offered) + unread,
                              "on_duty": session.staff.on_duty})


async def detail(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        events = [{**_row(r), "at_text": localtime(r["at"])} for r in await esc.timeline(con, e.id)]
        thread = [_row(r) for r in await esc.messages(con, e.id)]
        signed = await esc.opinion(con, e.id)
        names = await coordination_view.specialty_names(con, request[lang_rkey])
        await audit.record(con, audit.Actor.staff(session.staff.id), "escalation.read", "escalation", e.id)
        seen = await esc.mark_seen(con, e.id, session.staff.id, request.app[clock_key].now())
    if seen:  # the opinion is read: the requester's badge (on every page of theirs) counts one fewer
        push_badges(request.app, {session.staff.id})
    return web.json_response({**_view(e), "specialty_text": names.get(e.specialty, e.specialty),
                              "timeline": events, "messages": thread,
                              "opinion": {**_row(signed), "signed_at_text": localtime(signed["signed_at"])}
                              if signed else None})


async def accept(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.answer_escalation)
        outcome = await _run(request, esc.accept(con, e.id, session.staff.id, request.app[clock_key].now()),
                             session.staff.id)
    accepted = outcome.escalation
    live = await _join_live_call(request, accepted, session.staff.id)
    return web.json_response({**_view(accepted), "join_call": str(accepted.consultation_id) if live else None})


async def _join_live_call(request: web.Request, e: Escalation, staff_id: int) -> bool:
    """Issue 9.4: an urgent or priority request asked from a live call is answered in it: the specialist who
    accepted becomes a member of that call (hub.add_participant tells the room and their own pages). A call
    that ended meanwhile, or is full, leaves the written answer: the accept itself stands either way."""
    if e.consultation_id is None or e.urgency not in (machine.Urgency.urgent, machine.Urgency.priority):
        return False
    try:
        await request.app[hub_key].add_participant(e.consultation_id, staff_id, actor=audit.Actor.staff(staff_id))
    except DbError as exc:
        log.info("accepted escalation not joined to its call", extra={"escalation": str(e.id), "code": exc.code})
        return False
    return True


async def decline(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), DeclineBody)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.answer_escalation)
        outcome = await _run(request, esc.decline(con, e.id, session.staff.id, body.reason,
                                                  request.app[clock_key].now(), request.app[policies_key]),
                             session.staff.id)
    return web.json_response(_view(outcome.escalation))


async def answer(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), OpinionBody)
    opinion = esc.Opinion(body.assessment, body.recommendation, body.transfer, body.avoided_visit, body.follow_up,
                          body.transfer_facility_id, body.transfer_urgency)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.answer_escalation)
        outcome = await _run(request, esc.answer(con, e.id, session.staff.id, opinion, request.app[clock_key].now()),
                             session.staff.id)
    return web.json_response(_view(outcome.escalation), status=201)


async def message(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), MessageBody)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        await _run(request, esc.add_message(con, e.id, session.staff.id, body.body, request.app[clock_key].now()))
    return web.json_response({"ok": True}, status=201)


async def cancel(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.ask_opinion)
        outcome = await _run(request, esc.cancel(con, e.id, session.staff.id, request.app[clock_key].now()))
    return web.json_response(_view(outcome.escalation))


async def close(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.ask_opinion)
        outcome = await _run(request, esc.close(con, e.id, session.staff.id, request.app[clock_key].now()),
                             session.staff.id)
    return web.json_response(_view(outcome.escalation))


async def badge(request: web.Request) -> web.Response:
    """The signed-in staff member's nav bar badge: open offers to them, unread opinions they asked for.
    Pages read it on every (re)connect of their socket; `escalation_badge` pushes keep it live."""
    session = await require_api_session(request)
    require_role(request, session.staff, Action.read_counts)
    async with request.app[pool_key].acquire() as con:
        counts = await esc.badge(con, session.staff.id)
    return web.json_response({"offers": counts.offers, "unread": counts.unread})


async def duty(request: web.Request) -> web.Response:
    """The on-duty/away switch of the signed-in specialist."""
    session = await require_api_session(request, write=True)
    require_role(request, session.staff, Action.set_on_duty)
    body = decode_body(await request.read(), DutyBody)
    async with request.app[pool_key].acquire() as con:
        cut = await esc.set_on_duty(con, session.staff.id, body.on_duty, request.app[clock_key].now())
    if cut:
        request.app[escalation_loop_key].wake()  # re-route the offers cut short now
    return web.json_response({"on_duty": body.on_duty, "offers_rerouted": cut})


async def summary_prefill(request: web.Request) -> web.Response:
    """The summary a request starts from, filled in from the patient's record (the form lets it be edited)."""
    session = await require_api_session(request)
    patient_id = params.parse_id(request.match_info["pid"])
    if patient_id is None:
        raise ApiError("not_found", "no such patient")
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, patient_id)
        if patient is None:
            raise ApiError("not_found", "no such patient")
        await require(request, con, session.staff, Action.ask_opinion, patient.facility_id, hide=True)
        filled = await summary_db.prefill(con, patient_id)
        await audit.record(con, audit.Actor.staff(session.staff.id), "escalation.summary_read", "patient",
                           patient_id)
    return web.json_response(filled)


# ---- pages --------------------------------------------------------------------------------------------

async def inbox_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_escalation)
    t = request[t_rkey]
    return render(request, "escalations.html", {
        "me": session.staff, "js_strings": t.json(escalation_texts.INBOX_JS),
        "specialist": session.staff.role == "specialist"})


async def detail_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    t = request[t_rkey]
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        patient = await patients_db.get(con, e.patient_id)
        names = await coordination_view.specialty_names(con, request[lang_rkey])
    assert patient is not None
    return render(request, "escalation.html", {
        "me": session.staff, "e": _view(e), "patient_name": patient.name,
        "specialty_text": names.get(e.specialty, e.specialty),
        "deadline_text": localtime(e.deadline_at, "datetime"),
        "js_strings": t.json(escalation_texts.DETAIL_JS), "urgencies": escalation_texts.URGENCIES,
        "statuses": escalation_texts.STATUSES, "requester": e.requester_id == session.staff.id,
        "specialist": session.staff.role == "specialist"})


async def ask_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    t = request[t_rkey]
    patient_id = params.path_id(request)
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, patient_id)
        if patient is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, Action.ask_opinion, patient.facility_id, hide=True)
        specialties = await esc.specialties(con)
    consultation = request.query.get("c", "")
    return render(request, "escalation_ask.html", {
        "me": session.staff, "patient": patient, "consultation": consultation,
        "specialties": [(r["code"], r["name_en"] if request[lang_rkey] == "en" else r["name_vi"])
                        for r in specialties],
        "urgencies": escalation_texts.URGENCIES, "js_strings": t.json(escalation_texts.ASK_JS)})


def setup(app: web.Application) -> None:
    app[offer_texts_key] = set()
    app[badge_tasks_key] = set()
    app.cleanup_ctx.append(escalation_ctx)
    app.router.add_get("/staff/escalations", inbox_page, name="escalations")
    app.router.add_get("/staff/escalations/{eid}", detail_page)
    app.router.add_get(r"/staff/patients/{pid:\d+}/ask", ask_page)
    app.router.add_get(r"/api/patients/{pid:\d+}/escalation-summary", summary_prefill)
    app.router.add_get("/api/escalations", inbox)
    app.router.add_post("/api/escalations", ask)
    app.router.add_get("/api/escalations/{eid}", detail)
    app.router.add_post("/api/escalations/{eid}/accept", accept)
    app.router.add_post("/api/escalations/{eid}/decline", decline)
    app.router.add_post("/api/escalations/{eid}/opinion", answer)
    app.router.add_post("/api/escalations/{eid}/messages", message)
    app.router.add_post("/api/escalations/{eid}/cancel", cancel)
    app.router.add_post("/api/escalations/{eid}/close", close)
    app.router.add_post("/api/staff/duty", duty)
    app.router.add_get("/api/staff/badge", badge)
