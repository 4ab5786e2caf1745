"""Patient pages and API: from a link to the waiting room. No account; the link token is the key."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from care.appointments import FACILITY_TZ, WindowState
from care.triage import CheckIn, CheckInError, KeyGroup, Symptom, assess
from db import audit
from db import consultations as consultations_db
from db import invitations as invitations_db
from db import links as links_db
from db import patients as patients_db
from db import queue as queue_db
from db.invitations import Invitation, InvitationKind
from db.links import JoinLink
from web import params, texts
from web.auth import LinkError, ice_servers, resolve_link
from web.errors import ApiError
from web.invitation_texts import SERVICES
from web.keys import clock_key, hub_key, pool_key, settings_key, signer_key
from web.render import render
from web.rkeys import lang_rkey, t_rkey

# Bump when the consent text changes: consent is recorded against the version the patient read.
CONSENT_VERSION = "2026-11-v1"


class ConsentBody(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(max_length=40)]


class CheckInBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""
    symptoms: Annotated[list[str], msgspec.Meta(max_length=30)] = []
    spo2: params.Int64 | None = None
    systolic: params.Int64 | None = None
    diastolic: params.Int64 | None = None
    days_ill: params.Int64 | None = None
    audio_only: bool = False


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

    def local(at: datetime) -> datetime:
        return at.astimezone(FACILITY_TZ)

    assert invitation.slot_at is not None
    slot = local(invitation.slot_at)
    who = invitation.doctor_name or t(SERVICES.get(invitation.service or "", "General consultation"))
    return {"slot_time": slot.strftime("%H:%M"), "slot_date": slot.strftime("%d/%m/%Y"), "who": who,
            "opens_time": local(invitation.opens_at).strftime("%H:%M"),
            "opens_date": local(invitation.opens_at).strftime("%d/%m/%Y"),
            "closes_time": local(invitation.closes_at).strftime("%H:%M"),
            "facility_name": invitation.facility_name}


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
    token = request.match_info["token"]
    t = request[t_rkey]
    pool = request.app[pool_key]
    async with pool.acquire() as con:
        try:
            link = await resolve_link(con, request.app[signer_key], token)
        except LinkError as exc:
            response = render(request, "link_error.html", {"code": exc.code, "message": t(texts.LINK_ERRORS[exc.code])})
            response.set_status(410 if exc.code in ("link_expired", "link_revoked", "link_finished") else 404)
            return response
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
    step = "call" if active else "waiting" if entry else "device"
    context: dict[str, Any] = {
        "token": token,
        "step": step,
        "consented": consented,
        "consent_version": CONSENT_VERSION,
        "patient_name": patient.name,
        "symptoms": [(s.value, t(texts.SYMPTOMS[s])) for s in Symptom],
        "js_strings": t.json(texts.PATIENT_JS),
        "ice_servers": ice_servers(request.app[settings_key]),
        "emergency": bool(entry and entry.danger_signs),
    }
    return render(request, "patient.html", context)


async def consent(request: web.Request) -> web.Response:
    link = await _link(request, _bearer(request))
    body = decode_body(await request.read(), ConsentBody)
    if body.version != CONSENT_VERSION:
        raise ApiError("invalid", f"consent text version {body.version!r} is not the current one; reload",
                       field="version")
    async with request.app[pool_key].acquire() as con, con.transaction():
        given_at = await links_db.record_consent(con, link, CONSENT_VERSION, request[lang_rkey])
        await audit.record(con, audit.Actor.patient(link.patient_id), "consent.give", "join_link", link.jti,
                           {"version": CONSENT_VERSION, "lang": request[lang_rkey]})
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
    pool = request.app[pool_key]
    async with pool.acquire() as con:
        state, invitation = await _window(con, request, link)
        if invitation is not None and state is WindowState.too_early:
            raise ApiError("too_early", f"the appointment's link opens at {invitation.opens_at.isoformat()}")
        if invitation is not None and state is WindowState.too_late:
            raise ApiError("too_late", f"the appointment's link closed at {invitation.closes_at.isoformat()}")
        if not await links_db.consent_given(con, link.jti, CONSENT_VERSION):
            raise ApiError("consent_required", "consent to a remote consultation is needed first")
        patient = await patients_db.get(con, link.patient_id)
        assert patient is not None
        check = _checkin(body, patient.age(date.today()), patient.key_groups)
        result = assess(check)
        entry, created = await queue_db.enqueue(
            con, patient_id=link.patient_id, link_jti=link.jti, facility_id=patient.facility_id,
            level=result.level.rank, danger_signs=result.danger_signs, reason=body.reason.strip(),
            checkin={"symptoms": sorted(s.value for s in check.symptoms), "spo2": check.spo2,
                     "systolic": check.systolic, "diastolic": check.diastolic, "days_ill": check.days_ill,
                     "reasons": list(result.reasons)},
            audio_only=body.audio_only)
        if invitation is not None:
            await invitations_db.mark_used(con, link.jti, request.app[clock_key].now())
    alert = None
    if created and result.emergency:
        alert = {"type": "alert", "entry": str(entry.id), "level": result.level.value,
                 "danger_signs": list(result.danger_signs), "patient_name": patient.name,
                 "facility_id": patient.facility_id}
    request.app[hub_key].queue_changed(alert)
    return web.json_response({
        "entry": str(entry.id), "created": created, "level": f"NC{entry.triage_level}",
        "colour": result.level.colour, "emergency": result.emergency,
        "danger_signs": list(entry.danger_signs), "reasons": list(result.reasons),
    })


def setup(app: web.Application) -> None:
    app.router.add_get("/j/{token}", join_page, name="join")
    app.router.add_post("/api/p/consent", consent)
    app.router.add_post("/api/p/checkin", checkin)
