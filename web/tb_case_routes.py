"""Staff pages of one TB case: register it for a patient, see its schedule, calendar, flags and outcome,
record doses and sputum results, change the regimen or set the outcome (clinicians, with a reason, audited)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aiohttp import web

from care import tb
from care.access import Action
from db import patients as patients_db
from db import tb as tb_db
from db.audit import Actor
from db.errors import DbError
from db.staff import Session
from web.access import require
from web.auth import check_csrf
from web.errors import ApiError
from web.i18n import N_
from web.keys import clock_key, pool_key
from web.localtime import facility_today
from web.render import render
from web.rkeys import t_rkey
from web.staff_routes import require_page_session
from web.tb_patient import DAY_STATUS
from web.tb_routes import FLAG_REASONS, OUTCOMES

DOSE_CHOICES = ("in_person", "self_reported", "missed")
ERRORS: dict[str, str] = {
    "date": N_("Give dates as YYYY-MM-DD."),
    "in_future": N_("That date is after today."),
    "before_start": N_("That date is before the treatment start."),
    "not_started": N_("Record the treatment start first."),
    "case_ended": N_("The case has ended; nothing more can be recorded."),
    "reason_required": N_("Give a reason."),
    "unknown_regimen": N_("Choose a regimen from the list."),
    "already_started": N_("The treatment start is already recorded."),
    "bad_review": N_("Write the review: 1 to 4000 characters."),
    "choice": N_("Choose from the list."),
    "invalid": N_("Choose how the dose was taken."),
    "not_found": N_("This TB case does not exist."),
}
PHASES: dict[str, str] = {"intensive": N_("Intensive phase"), "continuation": N_("Continuation phase")}
SITES: dict[str, str] = {"pulmonary": N_("Pulmonary"), "extrapulmonary": N_("Extrapulmonary")}
REGISTRATION_TYPES: dict[str, str] = {
    "new": N_("New"), "relapse": N_("Relapse"), "after_failure": N_("Treatment after failure"),
    "after_loss_to_follow_up": N_("Treatment after loss to follow-up"),
    "other_previously_treated": N_("Other previously treated"), "transferred_in": N_("Transferred in"),
}


async def _csrf(request: web.Request) -> None:
    if not await check_csrf(request):
        raise ApiError("csrf", request[t_rkey]("Your session form expired. Please try again."))


def _date(text: object, *, default: date | None = None) -> date:
    value = str(text or "").strip()[:10]
    if not value and default is not None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DbError("date", "give dates as YYYY-MM-DD") from None


def _int(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise web.HTTPNotFound()
    return int(text)


async def register_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    """`/staff/patients/{pid}/tb`: the registration form (regimens from the data)."""
    session = await require_page_session(request)
    patient = await _patient(request, session)
    return render(request, "tb_register.html", {
        "me": session.staff, "patient": patient, "regimens": list(tb.REGIMENS.values()),
        "default": tb.DEFAULT_REGIMEN, "today": facility_today(request), "error": error,
        "sites": SITES, "types": REGISTRATION_TYPES}, status=status)


async def _patient(request: web.Request, session: Session) -> patients_db.Patient:
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, _int(request.match_info["pid"]))
        if patient is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, Action.record_tb, patient.facility_id, hide=True)
    return patient


async def register(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    await _csrf(request)
    patient = await _patient(request, session)
    form = await request.post()
    today = facility_today(request)
    try:
        if form.get("site", "pulmonary") not in SITES or form.get("registration_type", "new") not in REGISTRATION_TYPES:
            raise DbError("choice", "site or registration type not in the list")
        started = str(form.get("started_on", "")).strip()
        new = tb_db.NewCase(
            registered_on=_date(form.get("registered_on"), default=today), regimen=str(form.get("regimen", "")),
            bacteriologically_confirmed=form.get("confirmed") == "yes",
            site=tb.Site(str(form.get("site", "pulmonary"))),
            registration_type=tb.RegistrationType(str(form.get("registration_type", "new"))),
            diagnosed_on=_date(form.get("diagnosed_on")) if form.get("diagnosed_on") else None,
            started_on=_date(started) if started else None,
            register_ref=str(form.get("register_ref", "")).strip()[:64] or None)
        if new.registered_on > today or (new.started_on and new.started_on > today):
            raise DbError("in_future", "a date is after today")
        async with request.app[pool_key].acquire() as con:
            case_id = await tb_db.register(con, Actor.staff(session.staff.id), patient.id, patient.facility_id, new)
    except ValueError:
        return await register_form(request, request[t_rkey](ERRORS["date"]), 400)
    except DbError as exc:
        return await register_form(request, request[t_rkey](ERRORS.get(exc.code, exc.message)), 400)
    raise web.HTTPSeeOther(f"/staff/tb/cases/{case_id}")


async def _case(request: web.Request, session: Session, action: Action) -> tb_db.CaseRecord:
    async with request.app[pool_key].acquire() as con:
        record = await tb_db.get(con, _int(request.match_info["case"]))
        if record is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, action, record.facility_id, hide=True)
    return record


def _context(record: tb_db.CaseRecord, today: date, t: Any) -> dict[str, Any]:
    case = record.case
    out: dict[str, Any] = {"record": record, "outcome": OUTCOMES[str(tb.who_outcome(case, today))],
                           "regimen": tb.REGIMENS[case.regimen], "phases": [], "tests": [], "flags": [],
                           "calendar": [], "adherence": None, "planned_end": None}
    if case.started_on is not None:
        regimen = tb.REGIMENS[case.regimen]
        out["phases"] = tb.phase_dates(case.started_on, regimen)
        out["planned_end"] = tb.planned_end(case.started_on, regimen)
        out["tests"] = [{"month": s.month, "due_on": s.due_on, "result": s.result, "overdue": s.overdue(today)}
                        for s in tb.sputum_tests_due(case.started_on, regimen, case.sputum)]
        out["flags"] = [FLAG_REASONS[str(f)] for f in tb.flags(case.started_on, regimen, record.doses,
                                                               case.sputum, today)]
        out["adherence"] = tb.adherence(case.started_on, out["planned_end"], record.doses, today)
        first = max(case.started_on, today - timedelta(days=27))
        out["calendar"] = [{"day": first + timedelta(days=i),
                            "status": str(record.doses.get(first + timedelta(days=i), "none"))}
                           for i in range((today - first).days + 1)]
    return out


async def case_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    """`/staff/tb/cases/{case}`: schedule, calendar, flags, outcome and the forms that change them."""
    session = await require_page_session(request)
    record = await _case(request, session, Action.read_tb)
    today = facility_today(request)
    return render(request, "tb_case.html", {
        "me": session.staff, **_context(record, today, request[t_rkey]), "today": today, "error": error,
        "done": request.query.get("done", "")[:20] if error is None else "",
        "day_status": DAY_STATUS, "dose_choices": DOSE_CHOICES, "regimens": list(tb.REGIMENS),
        "outcomes": OUTCOMES, "phase_names": PHASES}, status=status)


async def _change(request: web.Request, action: Action) -> web.Response:
    session = await require_page_session(request)
    await _csrf(request)
    record = await _case(request, session, action)
    form = await request.post()
    today = facility_today(request)
    actor = Actor.staff(session.staff.id)
    what = request.match_info["what"]
    try:
        async with request.app[pool_key].acquire() as con:
            if what == "start":
                await tb_db.start_treatment(con, actor, record.id, _date(form.get("on"), default=today), today)
            elif what == "dose":
                status = str(form.get("status", ""))
                if status not in DOSE_CHOICES:
                    raise DbError("invalid", "choose how the dose was taken")
                await tb_db.record_dose(con, actor, record.id, _date(form.get("on"), default=today),
                                        tb.DoseStatus(status), today)
            elif what == "sputum":
                await tb_db.record_sputum(con, actor, record.id, _date(form.get("on"), default=today),
                                          form.get("result") == "positive", today)
            elif what == "regimen":
                await tb_db.change_regimen(con, actor, record.id, str(form.get("regimen", "")),
                                           _date(form.get("on"), default=today),
                                           for_failure=form.get("for_failure") == "yes",
                                           reason=str(form.get("reason", ""))[:500], staff_id=session.staff.id)
            else:
                chosen = str(form.get("outcome", ""))
                await tb_db.set_outcome(con, actor, record.id, tb.Outcome(chosen) if chosen in OUTCOMES else None,
                                        str(form.get("reason", ""))[:500])
    except DbError as exc:
        return await case_page(request, request[t_rkey](ERRORS.get(exc.code, exc.message)), 400)
    raise web.HTTPSeeOther(f"/staff/tb/cases/{record.id}")


async def record(request: web.Request) -> web.Response:
    """POST start | dose | sputum: record on the case (nurses and clinicians in scope)."""
    if request.match_info["what"] not in ("start", "dose", "sputum"):
        raise web.HTTPNotFound()
    return await _change(request, Action.record_tb)


async def treatment(request: web.Request) -> web.Response:
    """POST regimen | outcome: a clinician's change, with a reason (audited)."""
    if request.match_info["what"] not in ("regimen", "outcome"):
        raise web.HTTPNotFound()
    return await _change(request, Action.change_tb_treatment)


async def review(request: web.Request) -> web.Response:
    """POST: the TB specialist's review, signed as a note version of the patient (db/reviews.py)."""
    session = await require_page_session(request)
    await _csrf(request)
    record = await _case(request, session, Action.review_tb_case)
    form = await request.post()
    text = form.get("review", "")
    try:
        async with request.app[pool_key].acquire() as con:
            await tb_db.write_review(con, session.staff.id, record.id, text[:4001] if isinstance(text, str) else "",
                                     request.app[clock_key].now())
    except DbError as exc:
        return await case_page(request, request[t_rkey](ERRORS.get(exc.code, exc.message)), 400)
    raise web.HTTPSeeOther(f"/staff/tb/cases/{record.id}?done=review")


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/patients/{pid}/tb", register_form)
    app.router.add_post("/staff/patients/{pid}/tb", register)
    app.router.add_get("/staff/tb/cases/{case}", case_page)
    app.router.add_post("/staff/tb/cases/{case}/record/{what}", record)
    app.router.add_post("/staff/tb/cases/{case}/treatment/{what}", treatment)
    app.router.add_post("/staff/tb/cases/{case}/review", review)
