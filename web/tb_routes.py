"""Staff pages of the TB register: the specialist's worklist, the review of video-observed doses (contact
sheets, the clip with HTTP range requests, confirm or reject), and the quarterly cohort report with CSV export.

Handlers are thin: the rules are care/tb.py, the data db/tb.py, the policy care/access.py (`read_tb`,
`review_tb_dose`, over the staff member's facility and those below it).
"""

from __future__ import annotations

import csv
import io
from datetime import date

from aiohttp import web

from care import tb
from care.access import Action
from db import tb as tb_db
from db.errors import DbError
from web.access import require, require_role
from web.auth import check_csrf
from web.errors import ApiError
from web.i18n import N_
from web.keys import pool_key, settings_key
from web.localtime import facility_today
from web.render import render
from web.rkeys import t_rkey
from web.staff_routes import require_page_session

FLAG_REASONS: dict[str, str] = {
    "missed_doses": N_("3 or more doses missed in a row"),
    "low_adherence": N_("Adherence under 90% over the last 28 days"),
    "positive_smear": N_("Positive smear at month 2 or later"),
    "sputum_overdue": N_("Sputum test overdue"),
    "phase_ending": N_("A treatment phase ends within 7 days"),
}
OUTCOMES: dict[str, str] = {
    "cured": N_("Cured"), "completed": N_("Treatment completed"), "failed": N_("Treatment failed"),
    "died": N_("Died"), "lost_to_follow_up": N_("Lost to follow-up"), "not_evaluated": N_("Not evaluated"),
    "still_on_treatment": N_("Still on treatment"),
}


async def worklist(request: web.Request) -> web.Response:
    """`/staff/tb`: cases on treatment in scope with at least one flag, each with its reasons."""
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_tb)
    today = facility_today(request)
    async with request.app[pool_key].acquire() as con:
        records = await tb_db.cases_on_treatment(con, session.staff.facility_id, today)
        pending = len(await tb_db.pending_clips(con, session.staff.facility_id))
    flagged = []
    for r in records:
        start = r.case.started_on
        if start is None:
            continue
        regimen = tb.REGIMENS[r.case.regimen]
        flags = tb.flags(start, regimen, r.doses, r.case.sputum, today)
        if flags:
            flagged.append((r, flags, tb.adherence(start, tb.planned_end(start, regimen), r.doses, today)))
    labels: dict[int, tuple[str, str]] = {}
    if flagged:
        async with request.app[pool_key].acquire() as con:
            labels = await tb_db.worklist_labels(con, [r.id for r, _, _ in flagged])
    rows = [{"record": r, "flags": [str(f) for f in flags], "adherence": share,
             "name": labels[r.id][0], "facility": labels[r.id][1]} for r, flags, share in flagged]
    return render(request, "tb_worklist.html", {"me": session.staff, "rows": rows, "pending": pending,
                                                "reasons": FLAG_REASONS})


async def review_page(request: web.Request) -> web.Response:
    """`/staff/tb/review`: clips waiting for review in scope, as contact sheets."""
    session = await require_page_session(request)
    require_role(request, session.staff, Action.review_tb_dose)
    async with request.app[pool_key].acquire() as con:
        clips = await tb_db.pending_clips(con, session.staff.facility_id)
    return render(request, "tb_review.html", {"me": session.staff, "clips": clips})


async def _clip(request: web.Request) -> tb_db.Clip:
    session = await require_page_session(request)
    text = request.match_info["clip"]
    if not text.isdigit() or len(text) > 18:
        raise web.HTTPNotFound()
    async with request.app[pool_key].acquire() as con:
        clip = await tb_db.get_clip(con, int(text))
        if clip is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, Action.review_tb_dose, clip.facility_id, hide=True)
    if clip.deleted:
        t = request[t_rkey]
        raise ApiError("clip_deleted", t("This clip was deleted after the retention period."), status=410)
    return clip


async def clip_sheet(request: web.Request) -> web.StreamResponse:
    """The clip's contact sheet (JPEG)."""
    clip = await _clip(request)
    return web.FileResponse(request.app[settings_key].data_dir / clip.sheet_path,
                            headers={"Content-Type": "image/jpeg", "Cache-Control": "private, no-store"})


async def clip_video(request: web.Request) -> web.StreamResponse:
    """The clip itself; `FileResponse` answers `Range` requests, so a reviewer on a slow link can seek."""
    clip = await _clip(request)
    return web.FileResponse(request.app[settings_key].data_dir / clip.path,
                            headers={"Content-Type": "video/webm", "Cache-Control": "private, no-store"})


async def clip_review(request: web.Request) -> web.Response:
    """Confirm or reject a clip (form: `decision` confirm|reject, `reason`); back to the review page."""
    session = await require_page_session(request)
    if not await check_csrf(request):
        raise ApiError("csrf", request[t_rkey]("Your session form expired. Please try again."))
    clip = await _clip(request)
    form = await request.post()
    decision = str(form.get("decision", ""))
    if decision not in ("confirm", "reject"):
        t = request[t_rkey]
        raise ApiError("invalid", t("Choose to confirm or reject the dose."), field="decision")
    async with request.app[pool_key].acquire() as con:
        try:
            await tb_db.review_clip(con, session.staff.id, clip.id, decision == "confirm",
                                    str(form.get("reason", ""))[:500])
        except DbError as exc:
            raise ApiError(exc.code, request[t_rkey](REVIEW_ERRORS.get(exc.code, exc.message)), status=409
                           if exc.code != "reason_required" else 400) from None
    raise web.HTTPSeeOther("/staff/tb/review")


REVIEW_ERRORS: dict[str, str] = {
    "reason_required": N_("Say why the clip is rejected."),
    "already_reviewed": N_("This clip was already reviewed."),
    "not_current": N_("This is a second clip for the day; the first one is reviewed."),
    "not_found": N_("This clip does not exist."),
}


def _quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


async def report_page(request: web.Request) -> web.StreamResponse:
    """`/staff/tb/report?quarter=YYYY-Qn&as_of=YYYY-MM-DD[&format=csv]`: the cohort report over the scope."""
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_tb)
    today = facility_today(request)
    quarter = request.query.get("quarter", "")[:10] or _quarter_of(today)
    t = request[t_rkey]
    error = None
    try:
        tb.parse_quarter(quarter)
        as_of = date.fromisoformat(request.query.get("as_of", "")[:10]) if request.query.get("as_of") else today
    except ValueError:
        error, quarter, as_of = t("Give the quarter as 2026-Q1 and the date as YYYY-MM-DD."), _quarter_of(today), today
    async with request.app[pool_key].acquire() as con:
        rows = await tb_db.cohort_report(con, session.staff.facility_id, quarter, as_of)
    if request.query.get("format") == "csv" and error is None:
        return _csv(rows, quarter)
    first, after = tb.parse_quarter(quarter)
    async with request.app[pool_key].acquire() as con:
        cohort = [r.case for r in await tb_db.cases_in_subtree(con, session.staff.facility_id,
                                                                 registered=(first, after), doses=False)]
        bands = await tb_db.adherence_distribution(con, session.staff.facility_id, quarter, as_of)
    converted, tested = tb.month_2_conversion(cohort)
    return render(request, "tb_report.html", {
        "me": session.staff, "rows": rows, "quarter": quarter, "as_of": as_of, "error": error,
        "outcomes": [(str(o), OUTCOMES[str(o)]) for o in tb.Outcome], "converted": converted, "tested": tested,
        "bands": bands}, status=400 if error else 200)


def _csv(rows: list[tb_db.ReportRow], quarter: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(tb_db.REPORT_COLUMNS)
    for r in rows:
        rate = r.success_rate
        writer.writerow([r.facility_id, r.facility, r.quarter, r.registered, *(r.counts[o] for o in tb.Outcome),
                         "" if rate is None else round(rate * 100, 1)])
    return web.Response(body=out.getvalue().encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="tb-{quarter}.csv"'})


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/tb", worklist)
    app.router.add_get("/staff/tb/review", review_page)
    app.router.add_get("/staff/tb/report", report_page)
    app.router.add_get("/staff/tb/clips/{clip}/sheet", clip_sheet)
    app.router.add_get("/staff/tb/clips/{clip}/video", clip_video)
    app.router.add_post("/staff/tb/clips/{clip}/review", clip_review)
