"""Staff messages about a patient over HTTP: write to the patient's station, the inbox with unread counts,
a thread with its replies, mark as read; live `thread_message` pushes to the staff concerned.

Handlers are thin: parse → authorise (care/access.py `write_care_message` / `read_care_messages`, the
object's facility being the patient's station) → one db/threads.py use case → push → answer. The socket
carries no text: pages re-read the thread over HTTP (docs/protocol.md).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from care import threads as rules
from care.access import Action
from db import audit
from db import patients as patients_db
from db import threads as threads_db
from db.errors import DbError
from db.staff import StaffMember
from db.threads import Posted, Thread
from web import params, thread_texts
from web.access import require, require_role
from web.errors import ApiError, from_db
from web.keys import clock_key, hub_key, pool_key
from web.localtime import localtime
from web.patient_routes import decode_body
from web.render import render
from web.rkeys import t_rkey
from web.staff_routes import require_api_session, require_page_session

Short = Annotated[str, msgspec.Meta(max_length=40)]


class StartBody(msgspec.Struct, forbid_unknown_fields=True):
    text: str  # its limits are care/threads.py's (message_required, message_too_long), not a decode error
    context: Short | None = None
    reason: Short | None = None


class ReplyBody(msgspec.Struct, forbid_unknown_fields=True):
    text: str


def _refused(exc: rules.ThreadError, request: web.Request) -> ApiError:
    return ApiError(exc.code, request[t_rkey](thread_texts.ERRORS.get(exc.code, exc.message)), field=exc.field)


def push(request: web.Request, posted: Posted) -> int:
    """Tell every recipient's open pages (this process and the others, through the hub); never waits."""
    hub = request.app[hub_key]
    message = {"type": "thread_message", "thread": str(posted.thread.id), "patient_id": posted.thread.patient_id,
               "message": posted.message_id, "context": posted.thread.context}
    return sum(hub.to_staff(staff_id, message) for staff_id in posted.recipients)


def _tid(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["tid"])
    except ValueError:
        raise ApiError("not_found", "no such thread") if request.path.startswith("/api/") \
            else web.HTTPNotFound() from None


async def _load(request: web.Request, con: asyncpg.Connection, staff: StaffMember, action: Action) -> Thread:
    """The thread of the URL if `staff` may do `action` on its patient; otherwise 404 (as if it did not
    exist, outside one's scope) or 403 (a role that never may)."""
    thread = await threads_db.get(con, _tid(request))
    if thread is None:
        raise ApiError("not_found", "no such thread") if request.path.startswith("/api/") else web.HTTPNotFound()
    await require(request, con, staff, action, thread.facility_id, hide=True)
    return thread


def _topic_text(request: web.Request, thread: Thread) -> dict[str, str]:
    t = request[t_rkey]
    context = t(thread_texts.CONTEXTS[thread.context]) if thread.context else ""
    known = thread_texts.reasons()
    key = (thread.context or "", thread.reason or "")
    reason = t(known[key]) if key in known else ""
    return {"context_text": context, "reason_text": reason}


def _thread_view(request: web.Request, thread: Thread) -> dict[str, Any]:
    return {"id": str(thread.id), "patient_id": thread.patient_id, "context": thread.context,
            "reason": thread.reason, "started_at": thread.started_at.isoformat(),
            "last_at": thread.last_at.isoformat(), "last_at_text": localtime(thread.last_at),
            **_topic_text(request, thread)}


def _message_view(m: threads_db.Message, me: int) -> dict[str, Any]:
    return {"id": m.id, "author_id": m.author_id, "author": m.author_name, "author_facility": m.author_facility,
            "body": m.body, "at": m.at.isoformat(), "at_text": localtime(m.at), "mine": m.author_id == me}


# ---- API ----------------------------------------------------------------------------------------------

async def start(request: web.Request) -> web.Response:
    """`POST /api/patients/{pid}/threads` `{text, context?, reason?}`: write to the patient's station."""
    session = await require_api_session(request, write=True)
    require_role(request, session.staff, Action.write_care_message)
    patient_id = params.parse_id(request.match_info["pid"])
    if patient_id is None:
        raise ApiError("not_found", "no such patient")
    body = decode_body(await request.read(), StartBody)
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, patient_id)
        if patient is None or patient.merged_into is not None:
            raise ApiError("not_found", "no such patient")
        # Outside one's scope is said plainly here (403 naming the relation): the writer chose the patient.
        await require(request, con, session.staff, Action.write_care_message, patient.facility_id)
        try:
            topic = rules.topic(body.context, body.reason)
            rules.message_body(body.text)
        except rules.ThreadError as exc:
            raise _refused(exc, request) from None
        try:
            posted = await threads_db.start(con, patient_id=patient_id, author_id=session.staff.id, text=body.text,
                                            topic=topic, now=request.app[clock_key].now())
        except DbError as exc:
            raise from_db(exc) from None
    pages = push(request, posted)
    return web.json_response({"thread": _thread_view(request, posted.thread), "message": posted.message_id,
                              "recipients": len(posted.recipients), "pages": pages}, status=201)


async def reply(request: web.Request) -> web.Response:
    """`POST /api/threads/{tid}/messages` `{text}`: answer in the thread."""
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), ReplyBody)
    async with request.app[pool_key].acquire() as con:
        thread = await _load(request, con, session.staff, Action.write_care_message)
        try:
            posted = await threads_db.reply(con, thread_id=thread.id, author_id=session.staff.id, text=body.text,
                                            now=request.app[clock_key].now())
        except rules.ThreadError as exc:
            raise _refused(exc, request) from None
        except DbError as exc:
            raise from_db(exc) from None
    pages = push(request, posted)
    return web.json_response({"thread": str(thread.id), "message": posted.message_id,
                              "recipients": len(posted.recipients), "pages": pages}, status=201)


async def inbox(request: web.Request) -> web.Response:
    """`GET /api/threads`: the threads I follow (my station's patients, those I wrote in), with unread counts."""
    session = await require_api_session(request)
    require_role(request, session.staff, Action.read_care_messages)
    me = session.staff
    async with request.app[pool_key].acquire() as con:
        rows = await threads_db.inbox(con, me.id, me.facility_id)
        total = await threads_db.unread_total(con, me.id, me.facility_id)
    return web.json_response({"unread": total, "threads": [
        {**_thread_view(request, r.thread), "patient_name": r.patient_name, "facility": r.facility_name,
         "unread": r.unread, "last_author": r.last_author, "last_body": r.last_body[:140]} for r in rows]})


async def detail(request: web.Request) -> web.Response:
    """`GET /api/threads/{tid}`: the thread and its messages (audited `thread.read`)."""
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        thread = await _load(request, con, session.staff, Action.read_care_messages)
        patient = await patients_db.get(con, thread.patient_id)
        found = await threads_db.messages(con, thread.id)
        await audit.record(con, audit.Actor.staff(session.staff.id), "thread.read", "staff_thread", thread.id)
    assert patient is not None
    return web.json_response({**_thread_view(request, thread), "patient_name": patient.name,
                              "messages": [_message_view(m, session.staff.id) for m in found]})


async def mark_read(request: web.Request) -> web.Response:
    """`POST /api/threads/{tid}/read`: everything in it so far is read; answers my unread total."""
    session = await require_api_session(request, write=True)
    async with request.app[pool_key].acquire() as con:
        thread = await _load(request, con, session.staff, Action.read_care_messages)
        unread = await threads_db.mark_read(con, thread.id, session.staff.id)
    return web.json_response({"thread": str(thread.id), "unread": unread})


# ---- pages --------------------------------------------------------------------------------------------

async def inbox_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_care_messages)
    return render(request, "threads.html", {"me": session.staff,
                                            "js_strings": request[t_rkey].json(thread_texts.JS)})


async def thread_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    async with request.app[pool_key].acquire() as con:
        thread = await _load(request, con, session.staff, Action.read_care_messages)
        patient = await patients_db.get(con, thread.patient_id)
        found = await threads_db.messages(con, thread.id)
        await threads_db.mark_read(con, thread.id, session.staff.id)
        await audit.record(con, audit.Actor.staff(session.staff.id), "thread.read", "staff_thread", thread.id)
    assert patient is not None
    return render(request, "thread.html", {
        "me": session.staff, "thread": thread, "patient": patient, **_topic_text(request, thread),
        "messages": [_message_view(m, session.staff.id) for m in found],
        "js_strings": request[t_rkey].json(thread_texts.JS)})


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/threads", inbox_page, name="threads")
    app.router.add_get("/staff/threads/{tid}", thread_page)
    app.router.add_get("/api/threads", inbox)
    app.router.add_get("/api/threads/{tid}", detail)
    app.router.add_post("/api/threads/{tid}/messages", reply)
    app.router.add_post("/api/threads/{tid}/read", mark_read)
    app.router.add_post(r"/api/patients/{pid:\d+}/threads", start)
