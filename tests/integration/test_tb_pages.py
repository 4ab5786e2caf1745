"""The TB staff pages over real HTTP: worklist with reasons, review of a clip (sheet, ranged video, confirm),
and the cohort report's CSV export; a nurse of another station cannot see the clip."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from care.tb import DoseStatus
from db import tb as tb_db
from media.clip import sheet_tiles
from tests.conftest import RunningApp
from tests.integration.conftest import STAFF_PASSWORD, Factory
from tests.integration.test_http import csrf_cookie, jar_session, sign_in
from tests.integration.test_tb_clips import _open, _patch, _patient_case, clip_bytes, today  # noqa: F401


async def _nurse(running_app: RunningApp, make: Factory, facility: int) -> tuple[aiohttp.ClientSession, str]:
    staff_id = await make.staff(facility, role="nurse")
    async with running_app.pool.acquire() as con:
        username = await con.fetchval("SELECT username FROM staff WHERE id = $1", staff_id)
    http = jar_session()
    r = await sign_in(http, running_app, username, STAFF_PASSWORD)
    assert r.status == 303
    return http, csrf_cookie(http, running_app)


async def test_nurse_reviews_a_clip_and_the_calendar_shows_video(running_app: RunningApp, make: Factory,
                                                                 clip_bytes: bytes) -> None:  # noqa: F811
    case_id, token = await _patient_case(running_app, make, started=today() - timedelta(days=40))
    url = running_app.url
    async with aiohttp.ClientSession() as session:
        _, opened = await _open(session, url, token, size=len(clip_bytes))
        _, done = await _patch(session, url, token, opened["upload"], 0, clip_bytes)
    clip = done["clip"]
    nurse, csrf = await _nurse(running_app, make, make.network.commune)
    other, _ = await _nurse(running_app, make, make.network.sibling)
    try:
        async with nurse.get(f"{url}/staff/tb") as r:
            page = await r.text()
        assert r.status == 200 and f'data-case="{case_id}"' in page
        assert 'data-flag="low_adherence"' in page and "Tuân thủ dưới 90% trong 28 ngày qua" in page
        async with nurse.get(f"{url}/staff/tb/review") as r:
            assert f"/staff/tb/clips/{clip}/sheet" in await r.text()
        async with nurse.get(f"{url}/staff/tb/clips/{clip}/sheet") as r:
            assert r.status == 200 and r.content_type == "image/jpeg"
            assert sheet_tiles(await r.read())[0] == 6
        async with nurse.get(f"{url}/staff/tb/clips/{clip}/video", headers={"Range": "bytes=100-199"}) as r:
            assert r.status == 206 and await r.read() == clip_bytes[100:200]
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(clip_bytes)}"
        async with other.get(f"{url}/staff/tb/clips/{clip}/video") as r:
            assert r.status == 404  # another station's patient: as if it did not exist
        review = f"{url}/staff/tb/clips/{clip}/review"
        async with nurse.post(review, data={"_csrf": csrf, "decision": "reject", "reason": " "},
                              allow_redirects=False) as r:
            assert r.status == 400 and "Hãy ghi lý do" in await r.text()
        async with nurse.post(review, data={"_csrf": csrf, "decision": "confirm"}, allow_redirects=False) as r:
            assert r.status == 303
        async with running_app.pool.acquire() as con:
            record = await tb_db.get(con, case_id)
        assert record is not None and record.doses[today()] == DoseStatus.video
        async with nurse.get(f"{url}/staff/tb/review") as r:
            assert f"/staff/tb/clips/{clip}/sheet" not in await r.text()
        quarter = f"{record.case.registered_on.year}-Q{(record.case.registered_on.month - 1) // 3 + 1}"
        async with nurse.get(f"{url}/staff/tb/report?quarter={quarter}&format=csv") as r:
            lines = (await r.text()).splitlines()
        assert r.content_type == "text/csv" and lines[0] == ",".join(tb_db.REPORT_COLUMNS)
        assert lines[1].startswith(f"{make.network.commune},Trạm Y tế xã A,{quarter},1,")
        async with nurse.get(f"{url}/staff/tb/report?quarter={quarter}") as r:
            page = await r.text()
        assert r.status == 200 and '<li data-band="under_80">Dưới 80%: 1</li>' in page
        assert "0 trên 0 ca có bằng chứng vi khuẩn học" in page
        async with nurse.get(f"{url}/staff/tb/report?quarter=2026-Q9") as r:
            assert r.status == 400
    finally:
        await nurse.close()
        await other.close()
