"""The patient's TB page from their link (`/tb/<token>`): record today's dose on video, see the calendar of
the last 28 days and the review of each clip. The recording and the resumable upload are `tb_record.js`."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from care import tb
from db import tb as tb_db
from web.auth import LinkError, resolve_link
from web.i18n import N_
from web.keys import pool_key, signer_key
from web.localtime import facility_today
from web.render import render
from web.rkeys import t_rkey
from web.tb_clips import MAX_CHUNK

DAY_STATUS: dict[str, str] = {
    "in_person": N_("Observed at the station"),
    "video": N_("Observed by video"),
    "video_pending": N_("Video received, waiting for review"),
    "self_reported": N_("Taken (you told us)"),
    "missed": N_("Missed"),
    "rejected": N_("Video not accepted"),
    "none": N_("Nothing recorded"),
}
JS_STRINGS: list[str] = [
    N_("Recording… {seconds} s"), N_("Sending your video… {percent}%"),
    N_("Connection lost. Trying again…"),
    N_("Your video has arrived. A nurse will check it."),
    N_("This camera cannot record here. Take your dose at the station."),
    N_("The video could not be sent: {message}"),
]


async def page(request: web.Request) -> web.Response:
    """`/tb/<token>`: today's dose and the last 28 days."""
    token = request.match_info["token"]
    t = request[t_rkey]
    async with request.app[pool_key].acquire() as con:
        try:
            link = await resolve_link(con, request.app[signer_key], token)
        except LinkError:
            raise web.HTTPNotFound() from None
        record = await tb_db.case_for_patient(con, link.patient_id)
        reviews = await tb_db.clip_reviews(con, record.id) if record else {}
    if record is None or record.case.started_on is None:
        raise web.HTTPNotFound()
    today = facility_today(request)
    days = []
    for back in range(27, -1, -1):
        day = today - timedelta(days=back)
        if day < record.case.started_on:
            continue
        status = str(record.doses[day]) if day in record.doses else "none"
        review = reviews.get(day)
        if review and review[0] == "rejected":
            status = "rejected"
        days.append({"day": day, "status": status, "label": t(DAY_STATUS[status]),
                     "reason": review[1] if review and review[0] == "rejected" else None})
    share = tb.adherence(record.case.started_on, tb.planned_end(record.case.started_on,
                                                                 tb.REGIMENS[record.case.regimen]),
                         record.doses, today)
    return render(request, "tb_patient.html", {
        "token": token, "days": days, "today": days[-1] if days else None, "adherence": share,
        "chunk": MAX_CHUNK // 2, "js_strings": t.json(JS_STRINGS)})


def setup(app: web.Application) -> None:
    app.router.add_get("/tb/{token}", page)
