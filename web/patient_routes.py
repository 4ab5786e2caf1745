"""Patient pages and API: from a link to the waiting room. No account; the link token is the key."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from care.appointments import WindowState
from care.phone import national
from care.triage import CheckIn, CheckInError, KeyGroup, Symptom, assess
from db import alerts as alerts_db
from db import consultations as consultations_db
from db import facilities as facilities_db
from db import hypertension as htn_db
from db import invitations as invitations_db
from db import links as links_db
from db import patients as patients_db
from db import queue as queue_db
from db import usecases
from db.errors import DbError
from db.invitations import Invitation, InvitationKind
from db.links import JoinLink
from signaling import safety
from web import day_texts, htn_texts, live_texts, params, summaries, texts
from web.auth import LinkError, ice_servers, inspect_link, resolve_link
from web.errors import ApiError
from web.invitation_texts import SERVICES
from web.keys import clock_key, hub_key, pool_key, settings_key, signer_key
from web.localtime import facility_today, localtime
from web.render import render
from web.rkeys import lang_rkey, t_rkey

# Bump when the consent text changes: consent is recorded against the version the patient read.
CONSENT_VERSION = "2026-11-v1"


class ConsentBody(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(max_length=40)]


class ConnectionTestResult(msgspec.Struct, forbid_unknown_fields=True):
    """What the device check's connection test showed the patient (the numbers are the server's own
    measurement, read back by the page): kept with the check-in for the doctor."""

    verdict: Literal["good", "weak", "failed"]
    rtt_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] | None = None
    loss_pct: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    kbps_up: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None


class CheckInBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""
    symptoms: Annotated[list[str], msgspec.Meta(max_length=30)] = []
    spo2: params.Int64 | None = None
    systolic: params.Int64 | None = None
    diastolic: params.Int64 | None = None
    days_ill: params.Int64 | None = None
    audio_only: bool = False
    connection_test: ConnectionTestResult | None = None


T = TypeVar("T")


def decode_body(raw: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON request body, or ApiError("invalid") naming what is wrong."""
    try:
        body = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError("invalid", str(exc), field=params.json_field(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise ApiError("bad_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # "[[[[…" thousands deep fits in the size limit
        raise ApiError("bad_json", "the request body is not valid JSON: nested too deeply") from None
    params.reject_nul(raw)
    return body


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or len(header) > 2100:
        raise ApiError("not_authenticated", "this request needs the join-link token")
    return header.removeprefix("Bearer ").strip()


async def _link(request: web.Request, token: str) -> JoinLink:
    async with request.app[pool_key].acquire() as con:
        try:
            return await resolve_link(con, request.app[signer_key], token)
        except LinkError as exc:
            raise ApiError(exc.code, exc.message) from None


async def bearer_link(request: web.Request) -> JoinLink:
    """The usable join link whose token came as `Authorization: Bearer …`; ApiError otherwise."""
    return await _link(request, _bearer(request))


def _window_context(request: web.Request, invitation: Invitation) -> dict[str, Any]:
    """Times of an appointment in the facility's zone, and with whom, for the too-early/too-late pages."""
    t = request[t_rkey]
    assert invitation.slot_at is not None
    who = invitation.doctor_name or t(SERVICES.get(invitation.service or "", "General consultation"))
    return {"slot_time": localtime(invitation.slot_at, "time"), "slot_date": localtime(invitation.slot_at, "date"),
            "who": who, "opens_time": localtime(invitation.opens_at, "time"),
            "opens_date": localtime(invitation.opens_at, "date"),
            "closes_time": localtime(invitation.closes_at, "time"),
            "facility_name": invitation.facility_name, "facility_phone": invitation.facility_phone}


async def _window(con: asyncpg.Connection, request: web.Request,
                  link: JoinLink) -> tuple[WindowState, Invitation | None]:
    """Where the link's appointment window stands now. Only an invitation not yet used is held to its window:
    once the patient has checked in, a late doctor must not lock them out of the waiting room."""
    invitation = await invitations_db.for_link(con, link.jti)
    if invitation is None or not invitation.active or invitation.kind is not InvitationKind.appointment:
        return WindowState.open, invitation
    return invitation.window.state(request.app[clock_key].now()), invitation


async def join_page(request: web.Request) -> web.Response:
    """`/j/<token>`: the patient's whole journey on one small page, starting at the right step."""
    return await join_response(request, request.match_info["token"])


async def join_response(request: web.Request, token: str) -> web.Response:
    """The patient's page for a join token (from `/j/<token>`, or a short link's code)."""
    t = request[t_rkey]
    pool = request.app[pool_key]
    async with pool.acquire() as con:
        try:
            link = await resolve_link(con, request.app[signer_key], token)
        except LinkError as exc:
            return await _unusable_link(request, con, token, exc)
        state, invitation = await _window(con, request, link)
        if invitation is not None and state is not WindowState.open:
            template = "too_early.html" if state is WindowState.too_early else "too_late.html"
            return render(request, template, {"code": state.value, **_window_context(request, invitation)},
                          status=200 if state is WindowState.too_early else 410)
        patient = await patients_db.get(con, link.patient_id)
        assert patient is not None
        consented = await links_db.consent_given(con, link.jti, CONSENT_VERSION)
        entry = await queue_db.open_entry(con, link.patient_id)
        active = await consultations_db.active_for_patient(con, link.patient_id)
        summary = await summaries.for_consultation(con, active.id, request[lang_rkey]) if active else None
        in_register = await htn_db.enrolled_facility(con, link.patient_id) is not None
    step = "call" if active else "waiting" if entry else "device"
    emergency = bool(entry and entry.danger_signs)
    truth = await _emergency_state(request, entry) if entry is not None and emergency else {
        "clinicians_online": 0, "on_call_texted": False, "facility_phone": None}
    context: dict[str, Any] = {
        "token": token,
        "step": step,
        "consented": consented,
        "consent_version": CONSENT_VERSION,
        "patient_name": patient.name,
        "symptoms": [(s.value, t(texts.SYMPTOMS[s])) for s in Symptom],
        "js_strings": t.json(texts.PATIENT_JS + day_texts.PATIENT_JS + live_texts.CALL_JS + htn_texts.PATIENT_JS),
        "ice_servers": ice_servers(request.app[settings_key]),
        "emergency": emergency,
        **truth,
        "facility_phone_text": national(str(truth["facility_phone"])) if truth["facility_phone"] else "",
        "summary": summary,
        "htn": in_register,
        "today": facility_today(request).isoformat(),
    }
    return render(request, "patient.html", context)


async def _unusable_link(request: web.Request, con: asyncpg.Connection, token: str,
                         exc: LinkError) -> web.Response:
    """Why the link cannot be used, the station's phone number when we know the station, and — for a
    finished visit — the summary the doctor shared."""
    t = request[t_rkey]
    link = await inspect_link(con, request.app[signer_key], token)
    facility = await facilities_db.contact(con, link.facility_id) if link is not None else None
    summary = None
    if link is not None and exc.code == "link_finished":
        summary = await summaries.for_link(con, link.jti, request[lang_rkey])
    context = {"code": exc.code, "message": t(texts.LINK_ERRORS[exc.code]),
               "facility_name": facility.name if facility else None,
               "facility_phone": facility.phone if facility else None, "summary": summary}
    status = 200 if summary is not None else (
        410 if exc.code in ("link_expired", "link_revoked", "link_finished") else 404)
    return render(request, "link_error.html", context, status=status)


async def consent(request: web.Request) -> web.Response:
    link = await _link(request, _bearer(request))
    body = decode_body(await request.read(), ConsentBody)
    if body.version != CONSENT_VERSION:
        raise ApiError("invalid", f"consent text version {body.version!r} is not the current one; reload",
                       field="version")
    async with request.app[pool_key].acquire() as con:
        given_at = await links_db.give_consent(con, link, CONSENT_VERSION, request[lang_rkey])
    return web.json_response({"consented": True, "version": CONSENT_VERSION, "given_at": given_at.isoformat()})


def _checkin(body: CheckInBody, age: int | None, key_groups: tuple[str, ...]) -> CheckIn:
    try:
        symptoms = frozenset(Symptom(s) for s in body.symptoms)
    except ValueError:
        unknown = [s for s in body.symptoms if s not in Symptom.__members__]
        raise ApiError("invalid", f"unknown symptom {unknown[0][:40]!r}", field="symptoms") from None
    groups = frozenset(KeyGroup(g) for g in key_groups if g in KeyGroup.__members__)
    try:
        return CheckIn(symptoms=symptoms, spo2=body.spo2, systolic=body.systolic, diastolic=body.diastolic,
                       days_ill=body.days_ill, age=age, key_groups=groups)
    except CheckInError as exc:
        raise ApiError("invalid", f"{exc.field}: {exc}", field=exc.field) from None


async def checkin(request: web.Request) -> web.Response:
    """Check-in → suggested triage level → the queue. Danger signs come back at once (call 115)."""
    link = await _link(request, _bearer(request))
    body = decode_body(await request.read(), CheckInBody)
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, link.patient_id)
        assert patient is not None
        check = _checkin(body, patient.age(facility_today(request)), patient.key_groups)
        result = assess(check)
        triaged = usecases.Triaged(
            level=result.level.rank, danger_signs=result.danger_signs, reason=body.reason.strip(),
            answers={"symptoms": sorted(s.value for s in check.symptoms), "spo2": check.spo2,
                     "systolic": check.systolic, "diastolic": check.diastolic, "days_ill": check.days_ill,
                     "reasons": list(result.reasons),
                     "connection_test": msgspec.to_builtins(body.connection_test)},
            audio_only=body.audio_only)
        try:
            done = await usecases.check_in(con, link, triaged, consent_version=CONSENT_VERSION,
                                           now=request.app[clock_key].now())
        except DbError as exc:
            raise ApiError(exc.code, exc.message) from None
    entry, created = done.entry, done.created
    hub = request.app[hub_key]
    truth: dict[str, Any] = {}
    if result.emergency:
        # Tell the patient the truth: whether a doctor was shown the alert, or nobody is online (call 115).
        if created:
            outcome = await safety.raise_danger_alert(hub, entry, now=request.app[clock_key].now(),
                                                      staff_url=request.app[settings_key].base_url + "/staff")
            truth = {"clinicians_online": outcome.clinicians_online, "on_call_texted": outcome.on_call_texted,
                     "facility_phone": outcome.facility_phone}
        else:
            truth = await _emergency_state(request, entry)
    hub.queue_changed()
    return web.json_response({
        "entry": str(entry.id), "created": created, "level": f"NC{entry.triage_level}",
        "colour": result.level.colour, "emergency": result.emergency,
        "danger_signs": list(entry.danger_signs), "reasons": list(result.reasons), **truth,
    })


async def _emergency_state(request: web.Request, entry: queue_db.QueueEntry) -> dict[str, Any]:
    """Who can help a patient with danger signs now: clinicians online, whether the on-call clinician was
    texted, and the station's phone number."""
    async with request.app[pool_key].acquire() as con:
        contact = await alerts_db.on_call(con, entry.facility_id)
        alert = await alerts_db.for_entry(con, entry.id)
    return {"clinicians_online": await safety.clinicians_online(request.app[hub_key], entry.facility_id),
            "on_call_texted": alert is not None and alert.on_call_message_id is not None,
            "facility_phone": contact.facility_phone}


def setup(app: web.Application) -> None:
    app.router.add_get("/j/{token}", join_page, name="join")
    app.router.add_post("/api/p/consent", consent)
    app.router.add_post("/api/p/checkin", checkin)
