"""The hypertension register's pages: a patient's chart (enrol, visit, medicines, review, calls), the
station's overdue list, the specialist's worklist, the cohort dashboard with its CSV exports, the paper
register import, and the patient's "send my blood pressure" from their link. Thin handlers: the rules are
care/hypertension.py's, the rows db/hypertension.py's, the access decisions care/access.py's."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web
from multidict import MultiDictProxy

from care import htn_import
from care import hypertension as htn
from care.access import Action
from care.appointments import FACILITY_TZ
from care.htn_chart import Point, TrendPoint, bp_chart, trend_chart
from care.hypertension import HypertensionError, Month
from db import hypertension as htn_db
from db import patients as patients_db
from db import scope
from db.errors import DbError
from db.staff import StaffMember
from web import htn_texts
from web.access import require, require_role
from web.auth import check_csrf
from web.errors import ApiError
from web.htn_cli import REPORT_COLUMNS, report_rows
from web.keys import clock_key, pool_key
from web.patient_routes import bearer_link, decode_body
from web.render import render
from web.rkeys import lang_rkey, t_rkey
from web.staff_routes import require_page_session

FIELD_MAX = 200
UPLOAD_MAX = 5_000_000


def _today() -> date:
    """The facility's today (never the server's: its time zone may differ)."""
    return datetime.now(FACILITY_TZ).date()


BIGINT_MAX = 2**63 - 1


def _pid(request: web.Request) -> int:
    text = request.match_info["pid"]
    if not text.isdigit() or not 0 < int(text) <= BIGINT_MAX:
        raise web.HTTPNotFound()
    return int(text)


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    if not await check_csrf(request):
        raise ApiError("csrf", request[t_rkey]("Your session form expired. Please try again."))
    return await request.post()


def _field(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip()[:FIELD_MAX] if isinstance(value, str) else ""


def _date(text: str, field: str, default: date | None = None) -> date:
    if not text and default is not None:
        return default
    try:
        return htn_import.parse_date(text)
    except ValueError:
        raise ApiError("invalid", f"{field}: {text[:20]!r} is not a date (YYYY-MM-DD)", field=field) from None


def _int(text: str, field: str) -> int:
    if not text.isdigit() or len(text) > 4:
        raise ApiError("invalid", f"{field} must be a whole number", field=field)
    return int(text)


async def _patient_facility(request: web.Request, staff: StaffMember, action: Action) -> tuple[int, int]:
    """(patient id, the patient's facility) after the policy allowed `action` on them."""
    pid = _pid(request)
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, pid)
        if patient is None:
            raise web.HTTPNotFound()
        await require(request, con, staff, action, patient.facility_id, hide=True)
    return pid, patient.facility_id


def _medicines(form: MultiDictProxy[Any]) -> tuple[htn_db.MedicineLine, ...]:
    codes, doses, freqs = form.getall("drug", []), form.getall("dose", []), form.getall("frequency", [])
    lines = []
    for code, dose, freq in zip(codes[:10], doses[:10], freqs[:10], strict=False):
        if isinstance(code, str) and code.strip():
            try:
                lines.append(htn_db.MedicineLine(code.strip()[:40], str(dose).strip()[:40], str(freq).strip()[:40]))
            except DbError as e:
                raise ApiError(e.code, e.message, field="medicines") from None
    return tuple(lines)


def _back(pid: int, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/staff/htn/p/{pid}?done={done}")


# ---- the chart -----------------------------------------------------------------------------------------

async def chart_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    pid, _ = await _patient_facility(request, session.staff, Action.read_register)
    t, today = request[t_rkey], _today()
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, pid)
        chart = await htn_db.chart(con, pid)
        drugs = await htn_db.drugs(con)
        history = (await htn_db.histories(con, [pid])).get(pid)
    assert patient is not None
    context: dict[str, Any] = {"me": session.staff, "patient": patient, "chart": chart, "drugs": drugs,
                               "today": today, "done": request.query.get("done", "")[:20],
                               "risk_factors": [(f, t(htn_texts.RISK_FACTORS[f])) for f in htn_db.RISK_FACTORS],
                               "call_results": [(r, t(htn_texts.CALL_RESULTS[r])) for r in htn_db.CALL_RESULTS]}
    if chart is not None and history is not None:
        context["svg"] = bp_chart([Point(r.taken_on, r.systolic, r.diastolic) for r in chart.readings], today,
                                  t("Blood pressure, last 12 months"), {"empty": t("No readings yet")})
        context["reasons"] = [t(htn_texts.REASONS[r]) for r in htn.worklist_reasons(history, today)]
        context["current_medicines"] = [m for m in chart.medicines if m.stopped_on is None]
        context["target_130"] = bool({"diabetes", "cvd", "ckd"} & set(chart.risk_factors))
    return render(request, "htn_chart.html", context)


async def enrol(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    pid, facility = await _patient_facility(request, session.staff, Action.record_visit)
    form = await _form(request)
    today = _today()
    factors = tuple(str(f) for f in form.getall("risk_factors", [])[:4])
    enrolment = htn_db.Enrolment(
        registered_on=_date(_field(form, "registered_on"), "registered_on", today),
        diagnosed_on=_date(_field(form, "diagnosed_on"), "diagnosed_on") if _field(form, "diagnosed_on") else None,
        risk_factors=factors, medicines=_medicines(form),
        next_visit_on=_date(_field(form, "next_visit_on"), "next_visit_on") if _field(form, "next_visit_on") else None)
    async with request.app[pool_key].acquire() as con:
        try:
            await htn_db.enrol(con, patient_id=pid, facility_id=facility, enrolment=enrolment,
                               staff_id=session.staff.id, today=today)
        except DbError as e:
            raise ApiError(e.code, e.message) from None
    raise _back(pid, "enrolled")


async def visit(request: web.Request) -> web.Response:
    """A station visit: with a reading, or without (it still counts as a visit)."""
    session = await require_page_session(request)
    pid, _ = await _patient_facility(request, session.staff, Action.record_visit)
    form = await _form(request)
    today = _today()
    visited_on = _date(_field(form, "visited_on"), "visited_on", today)
    systolic, diastolic = _field(form, "systolic"), _field(form, "diastolic")
    async with request.app[pool_key].acquire() as con:
        try:
            if systolic or diastolic:
                await htn_db.add_reading(con, patient_id=pid, taken_on=visited_on,
                                         systolic=_int(systolic, "systolic"), diastolic=_int(diastolic, "diastolic"),
                                         source=htn_db.Source.station, staff_id=session.staff.id, today=today,
                                         reschedule=True)
            else:
                await htn_db.add_visit(con, patient_id=pid, visited_on=visited_on, staff_id=session.staff.id,
                                       today=today)
        except HypertensionError as e:
            raise ApiError(e.code, str(e), field=e.field) from None
        except DbError as e:
            raise ApiError(e.code, e.message) from None
    raise _back(pid, "visit")


async def medicines(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    pid, _ = await _patient_facility(request, session.staff, Action.review_register)
    form = await _form(request)
    async with request.app[pool_key].acquire() as con:
        try:
            await htn_db.change_medicines(con, patient_id=pid, lines=_medicines(form), staff_id=session.staff.id,
                                          today=_today())
        except DbError as e:
            raise ApiError(e.code, e.message) from None
    raise _back(pid, "medicines")


async def review(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    pid, _ = await _patient_facility(request, session.staff, Action.review_register)
    form = await _form(request)
    text = form.get("review", "")
    follow_up = _field(form, "follow_up_on")
    async with request.app[pool_key].acquire() as con:
        try:
            await htn_db.write_review(con, patient_id=pid, staff_id=session.staff.id,
                                      text=text[:4001] if isinstance(text, str) else "",
                                      follow_up_on=_date(follow_up, "follow_up_on") if follow_up else None,
                                      now=request.app[clock_key].now())
        except DbError as e:
            raise ApiError(e.code, e.message) from None
    raise _back(pid, "review")


async def call(request: web.Request) -> web.Response:
    """A call result on the overdue list, or an SMS reminder through the outbox."""
    session = await require_page_session(request)
    pid, _ = await _patient_facility(request, session.staff, Action.record_visit)
    form = await _form(request)
    result = _field(form, "result")
    t = request[t_rkey]
    async with request.app[pool_key].acquire() as con:
        try:
            if result == "sms":
                await htn_db.send_reminder(con, patient_id=pid, body=t(htn_texts.REMINDER_SMS), lang=request[lang_rkey],
                                           staff_id=session.staff.id, today=_today(),
                                           now=request.app[clock_key].now())
            else:
                await htn_db.record_call(con, patient_id=pid, result=result, staff_id=session.staff.id,
                                         today=_today())
        except DbError as e:
            raise ApiError(e.code, e.message) from None
    raise web.HTTPSeeOther(str(form.get("next", "")) if str(form.get("next", "")) == "/staff/htn/overdue"
                           else f"/staff/htn/p/{pid}?done=call")


# ---- lists ---------------------------------------------------------------------------------------------

def _csv(name: str, header: list[str], rows: list[list[Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


async def worklist_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_register)
    t, today = request[t_rkey], _today()
    async with request.app[pool_key].acquire() as con:
        entries = await htn_db.worklist(con, session.staff.facility_id, today)
    if request.query.get("format") == "csv":
        return _csv("worklist", ["patient_id", "name", "facility", "reasons", "systolic", "diastolic", "taken_on",
                                 "next_visit_on"],
                    [[e.patient_id, e.name, e.facility, " ".join(r.code for r in e.reasons), e.systolic, e.diastolic,
                      e.taken_on, e.next_visit_on] for e in entries])
    rows = [{"entry": e, "reasons": [(r.code, t(htn_texts.REASONS[r])) for r in e.reasons]} for e in entries]
    return render(request, "htn_worklist.html", {"me": session.staff, "rows": rows, "today": today})


async def overdue_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_register)
    t, today = request[t_rkey], _today()
    async with request.app[pool_key].acquire() as con:
        entries = await htn_db.overdue_list(con, session.staff.facility_id, today)
    if request.query.get("format") == "csv":
        return _csv("overdue", ["patient_id", "name", "facility", "next_visit_on", "last_visit_on", "last_call"],
                    [[e.patient_id, e.name, e.facility, e.next_visit_on, e.last_visit_on, e.last_call or ""]
                     for e in entries])
    return render(request, "htn_overdue.html", {
        "me": session.staff, "entries": entries, "today": today,
        "call_results": [(r, t(htn_texts.CALL_RESULTS[r])) for r in htn_db.CALL_RESULTS],
        "last_calls": {k: t(v) for k, v in htn_texts.CALL_RESULTS.items()}})


# ---- the cohort dashboard ------------------------------------------------------------------------------

# Station months a page visit may compute to draw the trend at once: about one past month of 100 stations.
TREND_AT_ONCE_MISSING = 100


async def dashboard(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_cohort)
    t, today = request[t_rkey], _today()
    try:
        month = Month.parse(request.query["month"]) if request.query.get("month") else Month.of(today)
        root = int(request.query.get("facility", session.staff.facility_id))
        if not 0 < root <= BIGINT_MAX:
            raise ValueError("facility out of range")
    except (HypertensionError, ValueError):
        raise ApiError("invalid", "month must be YYYY-MM and facility a facility id") from None
    quarter = (month.plus(-3).year, (month.plus(-3).month - 1) // 3 + 1)
    async with request.app[pool_key].acquire() as con:
        if not await scope.in_scope(con, session.staff.facility_id, root):
            raise web.HTTPNotFound()
        rows = await htn_db.monthly_report(con, root, month)
        table = request.query.get("table", "report")
        # The trend sums stored station months (db/htn_indicators.py); a month not stored yet is computed,
        # which for a past month probes each patient's readings. Drawn at once unless many are missing (a
        # province's first visit after a deploy): then it is asked for, and stored for every visit after.
        show_trend = (request.query.get("trend") == "1" or table == "trend"
                      or rows[0].level in ("commune", "district")
                      or await htn_db.missing_station_months(con, root, month) <= TREND_AT_ONCE_MISSING)
        trend = await htn_db.trend(con, root, month) if show_trend else []
        cohort = await htn_db.quarterly_cohort(con, root, *quarter)
    if request.query.get("format") == "csv":
        if table == "trend":
            return _csv("trend", ["month", *htn.COLUMNS],
                        [[str(m), *(getattr(i, c) for c in htn.COLUMNS)] for m, i in trend])
        if table == "cohort":
            return _csv("cohort", ["quarter", *(b.value for b in htn.Bucket)],
                        [[f"{quarter[0]}-Q{quarter[1]}", *(cohort[b] for b in htn.Bucket)]])
        data = report_rows(rows, month)
        return _csv("report", list(REPORT_COLUMNS), [[r[c] for c in REPORT_COLUMNS] for r in data])
    svg = "" if not trend else trend_chart([TrendPoint(f"{m.month:02d}", i.rate(i.controlled), i.rate(i.uncontrolled),
                                  i.rate(i.missed_visit)) for m, i in trend],
                      t("Control over the last 12 months (share of the denominator)"))
    return render(request, "htn_dashboard.html", {
        "me": session.staff, "rows": rows, "root": rows[0], "month": str(month), "svg": svg,
        "show_trend": show_trend,
        "trend": trend, "cohort": cohort, "quarter": quarter, "buckets": list(htn.Bucket),
        "columns": htn.COLUMNS, "labels": {k: t(v) for k, v in htn_texts.COLUMNS.items()}})


# ---- import --------------------------------------------------------------------------------------------

async def import_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.record_visit)
    return render(request, "htn_import.html", {"me": session.staff, "header": ",".join(htn_import.HEADER),
                                               "parsed": None, "imported": None})


async def import_post(request: web.Request) -> web.Response:
    """Upload → preview (first rows and every error); confirm → import all or nothing."""
    session = await require_page_session(request)
    require_role(request, session.staff, Action.record_visit)
    if request.content_length is not None and request.content_length > UPLOAD_MAX:
        raise ApiError("too_large", "the file is larger than 5 MB; split it", status=413)
    form = await _form(request)
    upload = form.get("file")
    if upload is not None and not isinstance(upload, str):
        raw = upload.file.read(UPLOAD_MAX + 1)
    else:
        raw = str(form.get("text", "")).encode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("not_utf8", request[t_rkey]("The file is not UTF-8 text. Save it as CSV UTF-8."),
                       field="file") from None
    today = _today()
    parsed = htn_import.parse_register(text, today=today)
    confirmed = form.get("confirm") == "1"
    imported = None
    if confirmed and not parsed.errors:
        async with request.app[pool_key].acquire() as con:
            try:
                imported = await htn_db.import_register(con, facility_id=session.staff.facility_id,
                                                        patients=parsed.patients, staff_id=session.staff.id,
                                                        today=today)
            except DbError as e:
                raise ApiError(e.code, e.message) from None
    return render(request, "htn_import.html", {
        "me": session.staff, "header": ",".join(htn_import.HEADER), "parsed": parsed, "text": text,
        "preview": parsed.patients[:10], "imported": imported}, status=400 if parsed.errors else 200)


# ---- the patient's own reading -------------------------------------------------------------------------

class HomeReading(msgspec.Struct, forbid_unknown_fields=True):
    systolic: int
    diastolic: int
    taken_on: Annotated[str, msgspec.Meta(max_length=10)]
    key: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{8,64}$")]


async def home_reading(request: web.Request) -> web.Response:
    """`POST /api/p/bp`: the patient sends their home cuff's reading; a resend with the same key is stored once."""
    link = await bearer_link(request)
    body = decode_body(await request.read(), HomeReading)
    try:
        taken_on = date.fromisoformat(body.taken_on)
    except ValueError:
        raise ApiError("invalid", "taken_on must be a date (YYYY-MM-DD)", field="taken_on") from None
    async with request.app[pool_key].acquire() as con:
        try:
            added = await htn_db.add_reading(con, patient_id=link.patient_id, taken_on=taken_on,
                                             systolic=body.systolic, diastolic=body.diastolic,
                                             source=htn_db.Source.home, staff_id=None, today=_today(),
                                             idempotency_key=body.key)
        except HypertensionError as e:
            raise ApiError("invalid", str(e), field=e.field) from None
    urgent = htn.urgent(body.systolic, body.diastolic)
    return web.json_response({"reading": added.reading_id, "created": added.created, "urgent": urgent},
                             status=201 if added.created else 200)


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/htn", dashboard)
    app.router.add_get("/staff/htn/worklist", worklist_page)
    app.router.add_get("/staff/htn/overdue", overdue_page)
    app.router.add_get("/staff/htn/import", import_page)
    app.router.add_post("/staff/htn/import", import_post)
    app.router.add_get("/staff/htn/p/{pid}", chart_page)
    app.router.add_post("/staff/htn/p/{pid}/enrol", enrol)
    app.router.add_post("/staff/htn/p/{pid}/visit", visit)
    app.router.add_post("/staff/htn/p/{pid}/medicines", medicines)
    app.router.add_post("/staff/htn/p/{pid}/review", review)
    app.router.add_post("/staff/htn/p/{pid}/call", call)
    app.router.add_post("/api/p/bp", home_reading)

