"""Staff pages for invitations: invite a patient (now or an appointment), the invitation with its link,
QR code and SMS, the outbox, and the doctor's day. The message scheduler starts here too."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import segno
from aiohttp import web

from care import access
from care.access import Action
from care.appointments import FACILITY_TZ, attendance
from care.phone import PhoneError, national, parse_mobile
from care.phone import mask as mask_phone
from care.sms import MessageKind, compose
from db import audit, scope, usecases
from db import invitations as invitations_db
from db import messages as messages_db
from db import patients as patients_db
from db import queue as queue_db
from db.errors import DbError
from db.invitations import Booking, Invitation, InvitationKind, InvitationStatus, Policy
from db.messages import MessageStatus
from db.staff import Session
from web import invitation_texts as labels
from web import params
from web.access import require, require_role
from web.auth import check_csrf, join_url
from web.errors import ApiError
from web.keys import clock_key, hub_key, pool_key, settings_key, signer_key
from web.render import render
from web.rkeys import t_rkey
from web.scheduler import scheduler_ctx
from web.settings import Settings
from web.staff_routes import require_page_session

FormValues = dict[str, str]
FieldErrors = dict[str, str]


# ---- helpers -------------------------------------------------------------------------------------------

def policy(settings: Settings) -> Policy:
    return Policy(link_ttl=timedelta(seconds=settings.link_ttl_s), late=timedelta(seconds=settings.appointment_late_s))


def link_url(app: web.Application) -> invitations_db.LinkUrl:
    return join_url(app[signer_key], app[settings_key].base_url)


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise web.HTTPNotFound() from None


async def _require_csrf(request: web.Request) -> None:
    if not await check_csrf(request):
        raise ApiError("csrf", "missing or wrong CSRF token; reload the page")


async def _form(request: web.Request) -> FormValues:
    form = await params.form(request)
    return {key: str(value)[:200].strip() for key, value in form.items() if isinstance(value, str)}


async def _patient_in_scope(request: web.Request, session: Session, patient_id: int) -> patients_db.Patient:
    """The patient, if the policy lets this staff member invite them."""
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, patient_id)
        if patient is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, Action.invite, patient.facility_id)
    return patient


async def _invitation_in_scope(request: web.Request, session: Session,
                               action: Action = Action.read_invitations) -> Invitation:
    """The invitation of the path, if the policy lets this staff member do `action` to it."""
    async with request.app[pool_key].acquire() as con:
        invitation = await invitations_db.get(con, _uuid(request.match_info["iid"]))
        if invitation is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, action, invitation.facility_id)
    return invitation


def parse_slot(day_text: str, time_text: str) -> datetime | None:
    """"2026-11-25" + "14:30" in the facility's zone → an aware UTC time; None if either is malformed."""
    day = params.parse_day(day_text)
    try:
        at = time.fromisoformat(time_text)
    except ValueError:
        return None
    if day is None:
        return None
    return datetime.combine(day, at.replace(second=0, microsecond=0), FACILITY_TZ).astimezone(UTC)


def parse_booking(values: Mapping[str, str], *, doctors: set[int], now: datetime,
                  force_appointment: bool = False) -> tuple[Booking | None, FieldErrors]:
    """The form → a Booking, or the errors by field (codes from invitation_texts.ERRORS)."""
    errors: FieldErrors = {}
    kind = InvitationKind.appointment if force_appointment or values.get("kind") == "appointment" else (
        InvitationKind.walk_in)
    lang = "en" if values.get("lang") == "en" else "vi"
    phone: str | None = None
    if "phone" in values and values["phone"]:
        try:
            phone = parse_mobile(values["phone"])
        except PhoneError:
            errors["phone"] = "bad_phone"
    slot_at = doctor_id = service = None
    if kind is InvitationKind.appointment:
        slot_at = parse_slot(values.get("date", ""), values.get("time", ""))
        if slot_at is None:
            errors["date"] = "bad_date"
        elif slot_at <= now:
            errors["date"] = "slot_in_past"
        if values.get("doctor"):
            doctor_id = params.parse_id(values["doctor"]) or -1
            if doctor_id not in doctors:
                errors["doctor"] = "bad_doctor"
        if values.get("service"):
            service = values["service"]
            if service not in labels.SERVICES:
                errors["service"] = "bad_service"
        if doctor_id is None and service is None:
            errors["doctor"] = "need_doctor_or_service"
    if errors:
        return None, errors
    return Booking(kind, slot_at, doctor_id, service, lang, phone), errors


def _db_field(code: str) -> str:
    return {"slot_in_past": "date", "slot_taken": "time", "no_phone": "phone"}.get(code, "form")


def _default_slot(now: datetime) -> tuple[str, str]:
    """Tomorrow's date and the next whole half-hour, as the form's starting values."""
    at = now.astimezone(FACILITY_TZ) + timedelta(minutes=30)
    at = at.replace(minute=0 if at.minute < 30 else 30, second=0, microsecond=0)
    return (at.date() + timedelta(days=1)).isoformat(), at.strftime("%H:%M")


def _page_context(me: Session) -> dict[str, Any]:
    return {"me": me.staff, "labels": labels, "mask_phone": mask_phone}


# ---- invite --------------------------------------------------------------------------------------------

async def _render_invite(request: web.Request, session: Session, patient: patients_db.Patient,
                         values: FormValues, errors: FieldErrors, status: int = 200) -> web.Response:
    async with request.app[pool_key].acquire() as con:
        doctors = await invitations_db.bookable_doctors(con, patient.facility_id)
        recent = await invitations_db.for_patient(con, patient.id, limit=10)
    t = request[t_rkey]
    return render(request, "invite.html", {
        **_page_context(session), "patient": patient, "doctors": doctors, "values": values,
        "errors": {field: t(labels.ERRORS.get(code, code)) for field, code in errors.items()},
        "recent": recent}, status=status)


async def invite_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    patient = await _patient_in_scope(request, session, params.path_id(request, "pid"))
    day, at = _default_slot(request.app[clock_key].now())
    values = {"kind": request.query.get("kind", "walk_in"), "date": day, "time": at, "doctor": "", "service": "",
              "lang": request.app[settings_key].default_lang, "phone": national(patient.phone) if patient.phone else "",
              "send": "1"}
    return await _render_invite(request, session, patient, values, {})


async def invite(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    await _require_csrf(request)
    patient = await _patient_in_scope(request, session, params.path_id(request, "pid"))
    values = await _form(request)
    values.setdefault("send", "")
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as con:
        doctors = {r["id"] for r in await invitations_db.bookable_doctors(con, patient.facility_id)}
    booking, errors = parse_booking(values, doctors=doctors, now=now)
    if booking is None:
        return await _render_invite(request, session, patient, values, errors, status=400)
    try:
        async with request.app[pool_key].acquire() as con:
            invitation = await invitations_db.create(
                con, booking, patient_id=patient.id, created_by=session.staff.id, now=now,
                policy=policy(request.app[settings_key]), link_url=link_url(request.app),
                send=values.get("send") == "1" and booking.phone is not None)
    except DbError as exc:
        return await _render_invite(request, session, patient, values, {_db_field(exc.code): exc.code},
                                    status=409 if exc.code == "slot_taken" else 400)
    raise web.HTTPSeeOther(f"/staff/invitations/{invitation.id}")


# ---- one invitation ------------------------------------------------------------------------------------

def qr_svg(url: str, title: str) -> str:
    """The link as an inline SVG QR code (medium error correction survives a smudged print-out)."""
    return str(segno.make(url, error="m").svg_inline(scale=3, title=title, omitsize=False))


def sms_previews(invitation: Invitation, url: str) -> list[dict[str, Any]]:
    """The ready invitation SMS in both languages, with its segment count."""
    out = []
    for lang in ("vi", "en"):
        sms = compose(MessageKind.invitation, lang, facility=invitation.facility_name, url=url,
                      slot_at=invitation.slot_at, phone=invitation.facility_phone)
        out.append({"lang": lang, "text": sms.text, "segments": sms.segments, "encoding": sms.encoding.value,
                    "chars": len(sms.text)})
    return out


async def _render_invitation(request: web.Request, session: Session, invitation: Invitation, *,
                             values: FormValues | None = None, errors: FieldErrors | None = None,
                             status: int = 200) -> web.Response:
    usable = invitation.status in (InvitationStatus.active, InvitationStatus.used)
    async with request.app[pool_key].acquire() as con:
        messages = await messages_db.for_invitation(con, invitation.id)
        doctors = await invitations_db.bookable_doctors(con, invitation.facility_id)
        # A usable link is the patient's key: shown only to those who may send it, and every showing is
        # audited (care/access.py, see_live_link).
        usable = usable and access.allows(session.staff.role, Action.see_live_link, await scope.relation(
            con, session.staff.facility_id, invitation.facility_id))
        if usable:
            await audit.record(con, audit.Actor.staff(session.staff.id), "invitation.view_link", "invitation",
                               invitation.id)
        # The short link (as in the SMS): easier to copy into another messenger, a smaller QR code.
        url = await invitations_db.short_url(con, link_url(request.app), invitation.link_jti,
                                             invitation.link_expires_at)
    t = request[t_rkey]
    if values is None:
        day, at = _default_slot(request.app[clock_key].now())
        values = {"date": day, "time": at, "doctor": str(invitation.doctor_id or ""),
                  "service": invitation.service or ""}
    return render(request, "invitation.html", {
        **_page_context(session), "inv": invitation, "url": url if usable else None,
        "qr": qr_svg(url, t("QR code of the patient's link")) if usable else None,
        "previews": sms_previews(invitation, url if usable else mask_links(url)), "messages": messages,
        "doctors": doctors, "values": values,
        "errors": {field: t(labels.ERRORS.get(code, code)) for field, code in (errors or {}).items()},
        "sent_before": any(m.kind == "invitation" for m in messages)}, status=status)


async def invitation_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    return await _render_invitation(request, session,
                                    await _invitation_in_scope(request, session, Action.read_invitations))


async def _act(request: web.Request, allowed: Action,
               action: Callable[[asyncpg.Connection, Invitation, int, datetime], Awaitable[object]]) -> web.Response:
    """The shape of every button on the invitation page: check, act in one transaction, back to the page."""
    session = await require_page_session(request)
    await _require_csrf(request)
    invitation = await _invitation_in_scope(request, session, allowed)
    try:
        async with request.app[pool_key].acquire() as con:
            await action(con, invitation, session.staff.id, request.app[clock_key].now())
    except DbError as exc:
        return await _render_invitation(request, session, invitation, errors={"form": exc.code}, status=409)
    raise web.HTTPSeeOther(f"/staff/invitations/{invitation.id}")


async def send(request: web.Request) -> web.Response:
    """Send the invitation SMS, or send it again (same link)."""
    url = link_url(request.app)
    return await _act(request, Action.send_message, lambda con, inv, staff_id, now: invitations_db.resend(
        con, inv.id, staff_id=staff_id, now=now, link_url=url))


async def revoke(request: web.Request) -> web.Response:
    """Cancel the invitation, also after check-in: its link stops working, the patient is told, and their
    open pages are closed; a wait or call in progress ends (the record stays)."""
    hub = request.app[hub_key]

    async def action(con: asyncpg.Connection, inv: Invitation, staff_id: int, now: datetime) -> None:
        revoked, cancelled = await invitations_db.revoke_access(con, inv.id, staff_id=staff_id, now=now)
        await hub.link_revoked(revoked.link_jti, cancelled)

    return await _act(request, Action.invite, action)


async def reschedule(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    await _require_csrf(request)
    invitation = await _invitation_in_scope(request, session, Action.invite)
    values = await _form(request)
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as con:
        doctors = {r["id"] for r in await invitations_db.bookable_doctors(con, invitation.facility_id)}
    values_with_patient = {**values, "lang": invitation.lang}
    booking, errors = parse_booking(values_with_patient, doctors=doctors, now=now, force_appointment=True)
    if booking is None:
        return await _render_invitation(request, session, invitation, values=values, errors=errors, status=400)
    booking = Booking(booking.kind, booking.slot_at, booking.doctor_id, booking.service, invitation.lang,
                      invitation.phone)
    try:
        async with request.app[pool_key].acquire() as con:
            new = await invitations_db.reschedule(con, invitation.id, booking, staff_id=session.staff.id, now=now,
                                                  policy=policy(request.app[settings_key]),
                                                  link_url=link_url(request.app))
    except DbError as exc:
        return await _render_invitation(request, session, invitation, values=values,
                                        errors={_db_field(exc.code): exc.code},
                                        status=409 if exc.code in ("slot_taken", "not_active") else 400)
    raise web.HTTPSeeOther(f"/staff/invitations/{new.id}")


# ---- outbox --------------------------------------------------------------------------------------------

_LINK = re.compile(r"(https?://[^/\s]+)/\S+")


def mask_links(text: str) -> str:
    """A message's text with every link cut after its host: a join link is the patient's key, and the
    outbox is read by more people than may send it."""
    return _LINK.sub(r"\1/…", text)


async def outbox_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_outbox)
    status = request.query.get("status") or None
    if status not in {s.value for s in MessageStatus}:
        status = None
    async with request.app[pool_key].acquire() as con:
        messages = await messages_db.outbox(con, session.staff.facility_id, status)
    return render(request, "outbox.html", {
        **_page_context(session), "messages": messages, "status": status, "statuses": list(MessageStatus),
        "gateway": request.app[settings_key].sms_gateway, "revealed": None, "mask_links": mask_links,
        "may_see_links": access.may_ever(session.staff.role, Action.see_live_link)})


async def outbox_message(request: web.Request) -> web.Response:
    """One message with its link shown: for those who may send links, and audited (`message.view_link`)."""
    session = await require_page_session(request)
    async with request.app[pool_key].acquire() as con:
        message = await messages_db.get(con, params.path_id(request, "mid"))
        patient = await patients_db.get(con, message.patient_id) if message else None
        if message is None or patient is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, Action.see_live_link, patient.facility_id)
        await audit.record(con, audit.Actor.staff(session.staff.id), "message.view_link", "outbound_message",
                           message.id, {"invitation": str(message.invitation_id or "")})
    return render(request, "outbox.html", {
        **_page_context(session), "messages": [message], "status": None, "statuses": list(MessageStatus),
        "gateway": request.app[settings_key].sms_gateway, "revealed": message.id, "mask_links": mask_links,
        "may_see_links": True})


# ---- the doctor's day ----------------------------------------------------------------------------------

async def _render_schedule(request: web.Request, session: Session, error: str | None = None,
                           status: int = 200) -> web.Response:
    now = request.app[clock_key].now()
    day = params.query_day(request, "day", default=now.astimezone(FACILITY_TZ).date())
    view = request.query.get("view") or ("mine" if session.staff.sees_patients else "facility")
    if view not in ("mine", "facility"):
        view = "facility"
    start = datetime.combine(day, time(0), FACILITY_TZ)
    async with request.app[pool_key].acquire() as con:
        rows = await invitations_db.day(con, session.staff.facility_id, start, start + timedelta(days=1),
                                        doctor_id=session.staff.id if view == "mine" else None)
    items = [{**dict(r), "mark": attendance(slot_at=r["slot_at"], closes_at=r["closes_at"], now=now,
                                            queue_status=r["entry_status"], revoked=r["status"] == "revoked").value}
             for r in rows]
    t = request[t_rkey]
    return render(request, "schedule.html", {
        **_page_context(session), "day": day, "view": view, "items": items,
        "appointments": [i for i in items if i["kind"] == "appointment"],
        "walk_ins": [i for i in items if i["kind"] == "walk_in"],
        "prev_day": (day - timedelta(days=1)).isoformat(), "next_day": (day + timedelta(days=1)).isoformat(),
        "error": t(labels.ERRORS.get(error, error)) if error else None}, status=status)


async def schedule_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_invitations)
    return await _render_schedule(request, session)


async def start_call(request: web.Request) -> web.Response:
    """"Start call" on the day's schedule: claim that patient's queue entry, tell the hub, open the call."""
    session = await require_page_session(request)
    await _require_csrf(request)
    require_role(request, session.staff, Action.claim)
    values = await _form(request)
    try:
        entry_id = uuid.UUID(values.get("entry", ""))
    except ValueError:
        return await _render_schedule(request, session, "not_found", status=404)
    try:
        async with request.app[pool_key].acquire() as con:
            entry = await queue_db.get_entry(con, entry_id)
            if entry is None:
                return await _render_schedule(request, session, "not_found", status=404)
            await require(request, con, session.staff, Action.claim, entry.facility_id, hide=True)
            consultation = await usecases.take_patient(con, session.staff.id, session.staff.facility_id, entry_id)
    except DbError as exc:
        return await _render_schedule(request, session, exc.code, status=404 if exc.code == "not_found" else 409)
    assert consultation is not None
    await request.app[hub_key].claimed(consultation)
    raise web.HTTPSeeOther(f"/staff/c/{consultation.id}")


def setup(app: web.Application) -> None:
    """Register this area's routes (and background tasks, via app.cleanup_ctx) on the app."""
    app.cleanup_ctx.append(scheduler_ctx)
    app.router.add_get("/staff/patients/{pid}/invite", invite_page, name="invite")
    app.router.add_post("/staff/patients/{pid}/invite", invite)
    app.router.add_get("/staff/invitations/{iid}", invitation_page, name="invitation")
    app.router.add_post("/staff/invitations/{iid}/send", send)
    app.router.add_post("/staff/invitations/{iid}/revoke", revoke)
    app.router.add_post("/staff/invitations/{iid}/reschedule", reschedule)
    app.router.add_get("/staff/outbox", outbox_page, name="outbox")
    app.router.add_get(r"/staff/outbox/{mid:\d{1,18}}", outbox_message, name="outbox_message")
    app.router.add_get("/staff/schedule", schedule_page, name="schedule")
    app.router.add_post("/staff/schedule/start", start_call)
