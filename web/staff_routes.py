"""Staff pages and API: sign-in, the live queue, the call view with the consult note, patient history."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from care import icd10
from care.triage import TriageLevel
from care.vitals import RANGES as VITALS_RANGES
from care.vitals import Vitals, VitalsError
from db import audit
from db import consultations as consultations_db
from db import notes as notes_db
from db import patients as patients_db
from db import queue as queue_db
from db import staff as staff_db
from db.staff import Session
from web import params, patient_view, texts
from web.auth import CSRF_FIELD, SESSION_COOKIE, check_csrf, staff_session
from web.errors import ApiError
from web.keys import hub_key, pool_key, settings_key
from web.patient_routes import decode_body
from web.render import render
from web.rkeys import lang_rkey, t_rkey

TEXT = Annotated[str, msgspec.Meta(max_length=10_000)]
VERSION = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]  # note versions are PostgreSQL `int`


class VitalsBody(msgspec.Struct, forbid_unknown_fields=True):
    systolic: params.Int64 | None = None
    diastolic: params.Int64 | None = None
    pulse: params.Int64 | None = None
    temperature: float | None = None
    spo2: params.Int64 | None = None
    weight: float | None = None


class NoteBody(msgspec.Struct, forbid_unknown_fields=True):
    subjective: TEXT = ""
    objective: TEXT = ""
    assessment: TEXT = ""
    plan: TEXT = ""
    vitals: VitalsBody = msgspec.field(default_factory=VitalsBody)
    diagnoses: Annotated[list[Annotated[str, msgspec.Meta(max_length=10)]], msgspec.Meta(max_length=20)] = []
    follow_up_on: date | None = None


class DraftBody(msgspec.Struct, forbid_unknown_fields=True):
    base_version: VERSION
    note: NoteBody


class SignBody(msgspec.Struct, forbid_unknown_fields=True):
    expected_version: VERSION
    note: NoteBody


class LevelBody(msgspec.Struct, forbid_unknown_fields=True):
    level: TriageLevel


# ---- session helpers ---------------------------------------------------------------------------------

async def _session(request: web.Request) -> Session | None:
    async with request.app[pool_key].acquire() as con:
        return await staff_session(con, request)


async def require_page_session(request: web.Request) -> Session:
    session = await _session(request)
    if session is None:
        raise web.HTTPSeeOther(f"/staff/login?next={request.rel_url.path}")
    return session


async def require_api_session(request: web.Request, *, write: bool = False) -> Session:
    session = await _session(request)
    if session is None:
        raise ApiError("not_authenticated", "sign in first")
    if write and not await check_csrf(request):
        raise ApiError("csrf", "missing or wrong CSRF token; reload the page")
    return session


# ---- sign-in -----------------------------------------------------------------------------------------

def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/staff") and "//" not in value else "/staff"


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", {"error": None, "username": "", "next": _safe_next(request.query.get("next"))})


async def login(request: web.Request) -> web.Response:
    t = request[t_rkey]
    form = await params.form(request)
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:256]
    next_url = _safe_next(str(form.get("next", "")))

    def refuse(message: str, status: int) -> web.Response:
        response = render(request, "login.html", {"error": message, "username": username, "next": next_url})
        response.set_status(status)
        return response

    if not await check_csrf(request):
        return refuse(t("Your session form expired. Please try again."), 403)
    settings = request.app[settings_key]
    async with request.app[pool_key].acquire() as con:
        member = await staff_db.authenticate(con, username, password)
        if member is None:
            return refuse(t("Wrong username or password."), 401)
        token, _ = await staff_db.open_session(con, member.id, timedelta(seconds=settings.session_ttl_s))
        await audit.record(con, audit.Actor.staff(member.id), "staff.sign_in", "staff", member.id)
    response = web.HTTPSeeOther(next_url)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=settings.cookies_secure,
                        max_age=settings.session_ttl_s, path="/")
    raise response


async def logout(request: web.Request) -> web.Response:
    if not await check_csrf(request):
        raise ApiError("csrf", "missing or wrong CSRF token; reload the page")
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with request.app[pool_key].acquire() as con:
            await staff_db.close_session(con, token)
    response = web.HTTPSeeOther("/staff/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# ---- pages -------------------------------------------------------------------------------------------

def _labels(t: Any) -> dict[str, dict[str, str]]:
    return {"key_groups": {k.value: t(v) for k, v in texts.KEY_GROUPS.items()},
            "danger_signs": {k: t(v) for k, v in texts.DANGER_SIGNS.items()}}


async def queue_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    async with request.app[pool_key].acquire() as con:
        active = await consultations_db.active_for_doctor(con, session.staff.id)
    t = request[t_rkey]
    return render(request, "staff_queue.html", {
        "me": session.staff, "active": active, "js_strings": t.json(texts.STAFF_JS),
        "labels": _labels(t)})


async def _consultation_for(con: asyncpg.Connection, session: Session,
                            consultation_id: uuid.UUID) -> consultations_db.Consultation:
    c = await consultations_db.get(con, consultation_id)
    if c is None:
        raise ApiError("not_found", "no such consultation")
    if c.doctor_id != session.staff.id:
        raise ApiError("forbidden", "this consultation belongs to another doctor")
    return c


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError("not_found", "no such consultation") from None


async def call_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]))
        patient = await patients_db.get(con, c.patient_id)
        entry = await queue_db.get_entry(con, c.queue_entry_id)
    assert patient is not None and entry is not None
    t = request[t_rkey]
    return render(request, "staff_call.html", {
        "me": session.staff, "c": c, "patient": patient, "entry": entry, "age": patient.age(date.today()),
        "level": TriageLevel(f"NC{c.triage_level}"), "js_strings": t.json(texts.STAFF_JS),
        "labels": _labels(t), "sexes": texts.SEXES})


def _history_row(row: asyncpg.Record) -> dict[str, Any]:
    """A row for the history page: every vital sign present (None when not measured), so the template's
    `r.vitals.temperature` reads as empty instead of failing under StrictUndefined."""
    out = dict(row)
    if out["vitals"]:
        out["vitals"] = {**dict.fromkeys(VITALS_RANGES), **out["vitals"]}
    return out


async def history_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    patient_id = params.path_id(request, "pid")
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, patient_id)
        if patient is None:
            raise web.HTTPNotFound()
        if not await consultations_db.is_doctor_in_scope(con, session.staff.facility_id, patient.facility_id):
            raise web.HTTPForbidden()
        if patient.merged_into is not None:  # a merged record's history now lives with the one kept
            raise web.HTTPSeeOther(f"/staff/patients/{patient.merged_into}")
        rows = [_history_row(r) for r in await patients_db.consultations(con, patient_id)]
        t = request[t_rkey]
        extras = await patient_view.page_extras(con, session.staff, patient, t, date.today())
        await audit.record(con, audit.Actor.staff(session.staff.id), "patient.read_history", "patient",
                           patient_id)
    merged = params.parse_id(request.query.get("merged", ""))
    return render(request, "patient_history.html", {
        "me": session.staff, "patient": patient, "age": patient.age(date.today()), "rows": rows,
        "labels": _labels(t), "icd": icd10.lookup, **extras,
        "notice": "created" if "created" in request.query else "saved" if "saved" in request.query
        else "merged" if merged else None, "merged_id": merged or ""})


# ---- JSON API ----------------------------------------------------------------------------------------

async def icd10_search(request: web.Request) -> web.Response:
    await require_api_session(request)
    query = params.query_text(request, "q", 80)
    lang = request[lang_rkey]
    results = [{"code": c.code, "name": c.name(lang), "name_en": c.name_en} for c in icd10.search(query, 15)]
    return web.json_response({"query": query, "results": results})


def _note_content(body: NoteBody) -> notes_db.NoteContent:
    v = body.vitals
    try:
        vitals = Vitals(v.systolic, v.diastolic, v.pulse, v.temperature, v.spo2, v.weight)
    except VitalsError as exc:
        raise ApiError("invalid", str(exc), field=f"vitals.{exc.field}") from None
    codes: list[str] = []
    for raw in body.diagnoses:
        code = icd10.lookup(raw)
        if code is None:
            raise ApiError("invalid", f"{raw!r} is not an ICD-10 code", field="diagnoses")
        if code.code not in codes:
            codes.append(code.code)
    if body.follow_up_on is not None and body.follow_up_on < date.today():
        raise ApiError("invalid", "the follow-up date is in the past", field="follow_up_on")
    if body.follow_up_on is not None and body.follow_up_on > params.LATEST_DAY:
        raise ApiError("invalid", "the follow-up date is too far ahead", field="follow_up_on")
    return notes_db.NoteContent(body.subjective.strip(), body.objective.strip(), body.assessment.strip(),
                                body.plan.strip(), vitals.as_dict(), tuple(codes), body.follow_up_on)


def _version_view(v: notes_db.NoteVersion) -> dict[str, Any]:
    c = v.content
    return {"version": v.version, "author": v.author_name, "signed_at": v.signed_at.isoformat(),
            "sha256": v.content_sha256,
            "note": {"subjective": c.subjective, "objective": c.objective, "assessment": c.assessment,
                     "plan": c.plan, "vitals": c.vitals or {}, "diagnoses": list(c.diagnoses),
                     "follow_up_on": c.follow_up_on.isoformat() if c.follow_up_on else None}}


async def note_get(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]))
        versions = await notes_db.versions(con, c.id)
        draft = await notes_db.draft(con, c.id, session.staff.id)
    return web.json_response({
        "versions": [_version_view(v) for v in versions],
        "draft": None if draft is None else {"base_version": draft["base_version"], "note": draft["content"],
                                             "saved_at": draft["saved_at"].isoformat()}})


async def note_draft(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), DraftBody)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]))
        saved_at = await notes_db.save_draft(con, c.id, session.staff.id, body.base_version,
                                             msgspec.to_builtins(body.note))
    return web.json_response({"saved_at": saved_at.isoformat()})


async def note_sign(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), SignBody)
    content = _note_content(body.note)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]))
        signed = await notes_db.sign(con, c.id, session.staff.id, body.expected_version, content)
    return web.json_response(_version_view(signed), status=201)


async def change_level(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    if not session.staff.sees_patients:
        raise ApiError("forbidden", "only doctors can change a triage level")
    body = decode_body(await request.read(), LevelBody)
    try:
        entry_id = uuid.UUID(request.match_info["entry"])
    except ValueError:
        raise ApiError("not_found", "no such queue entry") from None
    async with request.app[pool_key].acquire() as con:
        entry = await queue_db.get_entry(con, entry_id)
        if entry is None or not await consultations_db.is_doctor_in_scope(
                con, session.staff.facility_id, entry.facility_id):
            raise ApiError("not_found", "no such queue entry")
        await queue_db.change_level(con, entry_id, body.level.rank, session.staff.id)
    request.app[hub_key].queue_changed()
    return web.json_response({"entry": str(entry_id), "level": body.level.value})


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/login", login_page, name="login")
    app.router.add_post("/staff/login", login)
    app.router.add_post("/staff/logout", logout)
    app.router.add_get("/staff", queue_page, name="staff_queue")
    app.router.add_get("/staff/c/{cid}", call_page, name="call")
    app.router.add_get(r"/staff/patients/{pid:\d+}", history_page, name="history")
    app.router.add_get("/api/icd10", icd10_search)
    app.router.add_get("/api/c/{cid}/note", note_get)
    app.router.add_put("/api/c/{cid}/note/draft", note_draft)
    app.router.add_post("/api/c/{cid}/note/sign", note_sign)
    app.router.add_post("/api/queue/{entry}/level", change_level)
    app.router.add_get("/", index)


async def index(request: web.Request) -> web.Response:
    return render(request, "index.html", {"csrf_field": CSRF_FIELD})
