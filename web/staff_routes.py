"""Staff pages and API: sign-in, the live queue, the call view with the consult note, patient history."""

from __future__ import annotations

import math
import secrets
import uuid
from datetime import date
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from care import access, icd10
from care.access import Action
from care.appointments import FACILITY_TZ
from care.phone import mask as mask_phone
from care.summary import MAX_MEDICINES, Medicine, SummaryChoice, SummaryError, WarningSign, warning_sign_label
from care.triage import TriageLevel
from care.vitals import RANGES as VITALS_RANGES
from care.vitals import Vitals, VitalsError
from db import audit, visit_summaries
from db import consultations as consultations_db
from db import escalations as escalations_db
from db import hypertension as htn_db
from db import notes as notes_db
from db import patients as patients_db
from db import queue as queue_db
from db import staff as staff_db
from db import threads as threads_db
from db.staff import Session
from signaling import queue as queue_view
from web import day_texts, live_texts, params, patient_view, signin, summaries, texts, thread_texts
from web.access import check, require, require_role
from web.auth import CSRF_FIELD, SESSION_COOKIE, LinkUrl, check_csrf, join_url, request_session
from web.client import client_address
from web.errors import ApiError
from web.i18n import N_, Translator
from web.keys import clock_key, hub_key, pool_key, settings_key, signer_key, signin_key
from web.localtime import facility_today, localtime
from web.patient_routes import decode_body
from web.render import render
from web.rkeys import csrf_rkey, lang_rkey, t_rkey

TEXT = Annotated[str, msgspec.Meta(max_length=10_000)]
VERSION = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]  # note versions are PostgreSQL `int`


class VitalsBody(msgspec.Struct, forbid_unknown_fields=True):
    systolic: params.Int64 | None = None
    diastolic: params.Int64 | None = None
    pulse: params.Int64 | None = None
    temperature: float | None = None
    spo2: params.Int64 | None = None
    weight: float | None = None


SHORT = Annotated[str, msgspec.Meta(max_length=120)]


class MedicineBody(msgspec.Struct, forbid_unknown_fields=True):
    """One prescription line: the drug, the dose, how to take it."""

    drug: SHORT
    dose: SHORT = ""
    how: SHORT = ""


class SummaryBody(msgspec.Struct, forbid_unknown_fields=True):
    """What the doctor shares with the patient (page and SMS)."""

    advice: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    medicines: bool = True
    follow_up: bool = True
    warning_signs: Annotated[list[WarningSign], msgspec.Meta(max_length=20)] = []
    other_warning: SHORT = ""
    sms: bool = True


class NoteBody(msgspec.Struct, forbid_unknown_fields=True):
    subjective: TEXT = ""
    objective: TEXT = ""
    assessment: TEXT = ""
    plan: TEXT = ""
    vitals: VitalsBody = msgspec.field(default_factory=VitalsBody)
    diagnoses: Annotated[list[Annotated[str, msgspec.Meta(max_length=10)]], msgspec.Meta(max_length=20)] = []
    follow_up_on: date | None = None
    medicines: Annotated[list[MedicineBody], msgspec.Meta(max_length=MAX_MEDICINES)] = []
    summary: SummaryBody | None = None


class DraftBody(msgspec.Struct, forbid_unknown_fields=True):
    base_version: VERSION
    note: NoteBody


class SignBody(msgspec.Struct, forbid_unknown_fields=True):
    expected_version: VERSION
    note: NoteBody


class LevelBody(msgspec.Struct, forbid_unknown_fields=True):
    level: TriageLevel


def link_url(app: web.Application) -> LinkUrl:
    return join_url(app[signer_key], app[settings_key].base_url)


# ---- session helpers ---------------------------------------------------------------------------------

async def _session(request: web.Request) -> Session | None:
    return await request_session(request)


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
    outcome = await request.app[signin_key].attempt(signin.Attempt(
        username, password, client_address(request, settings.trusted_proxies),
        request.cookies.get(signin.DEVICE_COOKIE)))
    if isinstance(outcome, signin.Throttled):
        response = refuse(throttled_message(t, outcome), 429)
        wait_s = (outcome.retry_at - request.app[clock_key].now()).total_seconds()
        response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return response
    if not isinstance(outcome, signin.SignedIn):
        return refuse(t("Wrong username or password."), 401)
    request[csrf_rkey] = outcome.csrf_token  # rotated: the pre-login token no longer works (middleware sets it)
    response = web.HTTPSeeOther(next_url)
    response.set_cookie(SESSION_COOKIE, outcome.session_token, httponly=True, samesite="Lax",
                        secure=settings.cookies_secure, max_age=settings.session_ttl_s, path="/")
    response.set_cookie(signin.DEVICE_COOKIE, outcome.device_cookie, httponly=True, samesite="Strict",
                        secure=settings.cookies_secure, max_age=signin.DEVICE_COOKIE_MAX_AGE_S, path="/staff/login")
    raise response


SIGN_IN_WAIT = N_("Too many failed sign-ins. Please wait until {time} before trying again.")
SIGN_IN_LOCKED = N_("Too many failed sign-ins: signing in is locked until {time}.")


def throttled_message(t: Translator, outcome: signin.Throttled) -> str:
    """When to try again, in the facility's time: a short wait to the second, a lock to the minute."""
    local = outcome.retry_at.astimezone(FACILITY_TZ)
    if outcome.locked:
        return t(SIGN_IN_LOCKED, time=local.strftime("%H:%M"))
    return t(SIGN_IN_WAIT, time=local.strftime("%H:%M:%S"))


async def logout(request: web.Request) -> web.Response:
    if not await check_csrf(request):
        raise ApiError("csrf", "missing or wrong CSRF token; reload the page")
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with request.app[pool_key].acquire() as con:
            await staff_db.close_session(con, token)
        request.app[hub_key].end_staff_session(staff_db.token_hash(token))  # its open pages are closed (4401)
    request[csrf_rkey] = secrets.token_urlsafe(24)  # a fresh pre-login token for whoever signs in next
    response = web.HTTPSeeOther("/staff/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# ---- pages -------------------------------------------------------------------------------------------

def _labels(t: Any) -> dict[str, dict[str, str]]:
    return {"key_groups": {k.value: t(v) for k, v in texts.KEY_GROUPS.items()},
            "danger_signs": {k: t(v) for k, v in texts.DANGER_SIGNS.items()},
            "symptoms": {k.value: t(v) for k, v in texts.SYMPTOMS.items()},
            "reasons": {k: t(v) for k, v in day_texts.REASONS.items()},
            "verdicts": {k: t(v) for k, v in day_texts.CONNECTION_VERDICTS.items()},
            "no_show_reasons": {k.value: t(v) for k, v in texts.NO_SHOW_REASONS.items()}}


async def queue_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_counts)
    async with request.app[pool_key].acquire() as con:
        active = await consultations_db.active_for_doctor(con, session.staff.id)
    t = request[t_rkey]
    return render(request, "staff_queue.html", {
        "me": session.staff, "active": active, "js_strings": t.json(texts.STAFF_JS + day_texts.QUEUE_JS),
        "labels": _labels(t)})


async def _consultation_for(con: asyncpg.Connection, session: Session, consultation_id: uuid.UUID,
                            action: Action = Action.conduct_consultation) -> consultations_db.Consultation:
    """The consultation, if the policy lets this staff member do `action` to it (its own doctor only)."""
    c = await consultations_db.get(con, consultation_id)
    if c is None:
        raise ApiError("not_found", "no such consultation")
    decision, _ = await check(con, session.staff, action, c.patient_facility_id,
                              assignee=c.doctor_id == session.staff.id)
    if not decision:
        raise ApiError("forbidden", decision.message)
    return c


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError("not_found", "no such consultation") from None


async def _invited_to(con: asyncpg.Connection, session: Session,
                      consultation_id: uuid.UUID) -> consultations_db.Consultation | None:
    """The consultation, if this staff member was invited into its call (join_call) rather than its doctor."""
    c = await consultations_db.get(con, consultation_id)
    if c is None or c.doctor_id == session.staff.id:
        return None
    invited = await consultations_db.participant(con, consultation_id, session.staff.id) is not None
    decision, _ = await check(con, session.staff, Action.join_call, c.patient_facility_id, assignee=invited)
    return c if decision else None


async def call_page(request: web.Request) -> web.Response:
    """The doctor's call view; for staff invited into the call (a specialist), their view of it: the call
    and the chat, without the note."""
    session = await require_page_session(request)
    cid = _uuid(request.match_info["cid"])
    async with request.app[pool_key].acquire() as con:
        invited = await _invited_to(con, session, cid)
        c = invited or await _consultation_for(con, session, cid, Action.conduct_consultation)
        patient = await patients_db.get(con, c.patient_id)
        entry = await queue_db.get_entry(con, c.queue_entry_id)
        htn_state = await htn_db.register_state(con, c.patient_id)
    assert patient is not None and entry is not None
    t = request[t_rkey]
    if invited is not None:
        return render(request, "staff_live.html", {
            "me": session.staff, "c": c, "patient": patient, "entry": entry,
            "age": patient.age(facility_today(request)), "level": TriageLevel(f"NC{c.triage_level}"),
            "js_strings": t.json(texts.STAFF_JS + live_texts.CALL_JS + live_texts.SPECIALIST_JS),
            "labels": _labels(t), "sexes": texts.SEXES, "answers": queue_view.answers_view(entry.checkin),
            "suggested": None if entry.suggested_level is None else TriageLevel(f"NC{entry.suggested_level}")})
    return render(request, "staff_call.html", {
        "me": session.staff, "c": c, "patient": patient, "entry": entry, "age": patient.age(facility_today(request)),
        "level": TriageLevel(f"NC{c.triage_level}"),
        "js_strings": t.json(texts.STAFF_JS + day_texts.CALL_JS + live_texts.CALL_JS),
        "labels": _labels(t), "sexes": texts.SEXES, "answers": queue_view.answers_view(entry.checkin),
        "suggested": None if entry.suggested_level is None else TriageLevel(f"NC{entry.suggested_level}"),
        "warning_signs": [(w.value, warning_sign_label(w, request[lang_rkey])) for w in WarningSign],
        "htn_state": htn_state})


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
        relation = await require(request, con, session.staff, Action.read_demographics, patient.facility_id)
        if patient.merged_into is not None:  # a merged record's history now lives with the one kept
            raise web.HTTPSeeOther(f"/staff/patients/{patient.merged_into}")
        # Signed notes and past visits are clinical content: clinicians in scope only (care/access.py).
        clinical = access.allows(session.staff.role, Action.read_clinical, relation)
        rows = [_history_row(r) for r in await patients_db.consultations(con, patient_id)] if clinical else []
        opinions = await escalations_db.for_patient(con, patient_id) if clinical else []
        t = request[t_rkey]
        extras = await patient_view.page_extras(con, session.staff, patient, t, facility_today(request))
        htn_state = await htn_db.register_state(con, patient_id)
        # Staff messages about the patient (issues 10/11 point 5): to those who may read them in this relation.
        threads = await threads_db.for_patient(con, patient_id) \
            if access.allows(session.staff.role, Action.read_care_messages, relation) else None
        await audit.record(con, audit.Actor.staff(session.staff.id), "patient.read_history", "patient",
                           patient_id, {"clinical": clinical})
    merged = params.parse_id(request.query.get("merged", ""))
    return render(request, "patient_history.html", {
        "me": session.staff, "patient": patient, "age": patient.age(facility_today(request)), "rows": rows,
        "opinions": opinions, "htn_state": htn_state, "threads": threads, "thread_contexts": thread_texts.CONTEXTS,
        "clinical": clinical, "labels": _labels(t), "icd": icd10.lookup, **extras,
        "notice": "created" if "created" in request.query else "saved" if "saved" in request.query
        else "merged" if merged else None, "merged_id": merged or ""})


# ---- JSON API ----------------------------------------------------------------------------------------

async def icd10_search(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    require_role(request, session.staff, Action.lookup_reference)
    query = params.query_text(request, "q", 80)
    lang = request[lang_rkey]
    results = [{"code": c.code, "name": c.name(lang), "name_en": c.name_en} for c in icd10.search(query, 15)]
    return web.json_response({"query": query, "results": results})


def _note_content(body: NoteBody, today: date) -> notes_db.NoteContent:
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
    if body.follow_up_on is not None and body.follow_up_on < today:
        raise ApiError("invalid", "the follow-up date is in the past", field="follow_up_on")
    if body.follow_up_on is not None and body.follow_up_on > params.LATEST_DAY:
        raise ApiError("invalid", "the follow-up date is too far ahead", field="follow_up_on")
    try:
        medicines = tuple(Medicine(m.drug.strip(), m.dose.strip(), m.how.strip()) for m in body.medicines)
        s = body.summary
        summary = None if s is None else SummaryChoice(
            advice=s.advice.strip(), medicines=s.medicines, follow_up=s.follow_up,
            warning_signs=tuple(dict.fromkeys(s.warning_signs)), other_warning=s.other_warning.strip(), sms=s.sms)
    except SummaryError as exc:
        raise ApiError("invalid", str(exc), field=exc.field) from None
    return notes_db.NoteContent(body.subjective.strip(), body.objective.strip(), body.assessment.strip(),
                                body.plan.strip(), vitals.as_dict(), tuple(codes), body.follow_up_on, medicines,
                                summary)


def _version_view(v: notes_db.NoteVersion) -> dict[str, Any]:
    c = v.content
    return {"version": v.version, "author": v.author_name, "signed_at": v.signed_at.isoformat(),
            "signed_at_text": localtime(v.signed_at),
            "sha256": v.content_sha256,
            "note": {"subjective": c.subjective, "objective": c.objective, "assessment": c.assessment,
                     "plan": c.plan, "vitals": c.vitals or {}, "diagnoses": list(c.diagnoses),
                     "follow_up_on": c.follow_up_on.isoformat() if c.follow_up_on else None,
                     "medicines": c.medicines_json(),
                     "summary": c.summary.as_dict() if c.summary is not None else None}}


async def note_get(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]), Action.write_note)
        versions = await notes_db.versions(con, c.id)
        draft = await notes_db.draft(con, c.id, session.staff.id)
    return web.json_response({
        "versions": [_version_view(v) for v in versions],
        "draft": None if draft is None else {"base_version": draft["base_version"], "note": draft["content"],
                                             "saved_at": draft["saved_at"].isoformat(),
                                             "saved_at_text": localtime(draft["saved_at"], "time")}})


async def note_draft(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), DraftBody)
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]), Action.write_note)
        saved_at = await notes_db.save_draft(con, c.id, session.staff.id, body.base_version,
                                             msgspec.to_builtins(body.note))
    return web.json_response({"saved_at": saved_at.isoformat(), "saved_at_text": localtime(saved_at, "time")})


async def note_sign(request: web.Request) -> web.Response:
    """Sign the note; a shared summary goes to the patient's open pages at once and by SMS."""
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), SignBody)
    content = _note_content(body.note, facility_today(request))
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]), Action.write_note)
        signed = await visit_summaries.sign(con, c.id, session.staff.id, body.expected_version, content,
                                            now=request.app[clock_key].now(), link_url=link_url(request.app))
        # A signed I10–I15 diagnosis for a patient not in the register: the page offers enrolment.
        htn_offer = await htn_db.register_state(con, c.patient_id) == "offer"
    message = summaries.message(signed.version, signed.recipient)
    if message is not None:
        await request.app[hub_key].to_patient(c.patient_id, message)
    return web.json_response({**_version_view(signed.version), "summary_sms": signed.message_id is not None,
                              "htn_offer": htn_offer}, status=201)


async def summary_preview(request: web.Request) -> web.Response:
    """Exactly what the patient would get if the note were signed as it stands: the page and the SMS."""
    session = await require_api_session(request, write=True)
    body = decode_body(await request.read(), NoteBody)
    content = _note_content(body, facility_today(request))
    async with request.app[pool_key].acquire() as con:
        c = await _consultation_for(con, session, _uuid(request.match_info["cid"]), Action.write_note)
        to = await visit_summaries.recipient(con, c.id)
        assert to is not None
        summary = visit_summaries.summary_of(content, to.lang, to)
        sms = await visit_summaries.sms_of(con, content, to, link_url(request.app))
    return web.json_response({
        "lang": to.lang, "summary": summary.as_dict() if summary else None,
        "sms": None if sms is None else {"text": sms.text, "segments": sms.segments,
                                         "encoding": sms.encoding.value, "chars": len(sms.text)},
        "sms_to": mask_phone(to.phone) if to.phone else None})


async def change_level(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    require_role(request, session.staff, Action.change_level)
    body = decode_body(await request.read(), LevelBody)
    try:
        entry_id = uuid.UUID(request.match_info["entry"])
    except ValueError:
        raise ApiError("not_found", "no such queue entry") from None
    async with request.app[pool_key].acquire() as con:
        entry = await queue_db.get_entry(con, entry_id)
        if entry is None:
            raise ApiError("not_found", "no such queue entry")
        await require(request, con, session.staff, Action.change_level, entry.facility_id, hide=True)
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
    app.router.add_post("/api/c/{cid}/summary/preview", summary_preview)
    app.router.add_post("/api/queue/{entry}/level", change_level)
    app.router.add_get("/", index)


async def index(request: web.Request) -> web.Response:
    return render(request, "index.html", {"csrf_field": CSRF_FIELD})
