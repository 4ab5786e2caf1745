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
# Every error code the clip upload can answer (web/tb_clips.py, media/clip.py, the link and the dose-day
# rules), in the patient's words: tb_record.js shows these by code, never the server's English message.
# tests/unit/test_tb_strings.py keeps this list complete.
CLIP_ERRORS: dict[str, str] = {
    "clip_empty": N_("The video is empty. Record it again."),
    "clip_too_large": N_("The video is too large. Record a shorter one (up to 60 seconds)."),
    "clip_too_long": N_("The video is longer than 60 seconds. Record a shorter one."),
    "clip_not_video": N_("This file is not a video. Record it again."),
    "clip_unreadable": N_("The video was damaged on the way. Record it again."),
    "chunk_too_large": N_("The video could not be sent in pieces. Reload the page and try again."),
    "chunk_cut_off": N_("Connection lost. Trying again…"),
    "offset_mismatch": N_("Connection lost. Trying again…"),
    "in_future": N_("That day has not come yet."),
    "before_start": N_("That day is before your treatment started."),
    "not_started": N_("Your treatment has not started yet. Ask your station."),
    "case_ended": N_("Your treatment has ended; no more videos are needed."),
    "no_tb_case": N_("There is no TB treatment on record for you. Ask your station."),
    "not_found": N_("The upload was not found. Record your video again."),
    "not_authenticated": N_("This link is not valid. Ask your station for a new one."),
    "link_invalid": N_("This link is not valid. Ask your station for a new one."),
    "link_expired": N_("This link has expired. Ask your station for a new one."),
    "link_revoked": N_("This link was cancelled. Ask your station for a new one."),
    "link_finished": N_("This link has been used up. Ask your station for a new one."),
    "invalid": N_("Something went wrong on our side. Try again later."),
    "bad_json": N_("Something went wrong on our side. Try again later."),
    "internal": N_("Something went wrong on our side. Try again later."),
}


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
        "chunk": MAX_CHUNK // 2, "js_strings": t.json(JS_STRINGS, keyed={f"error:{code}": message
                                                                         for code, message in CLIP_ERRORS.items()})})


def setup(app: web.Application) -> None:
    app.router.add_get("/tb/{token}", page)
