"""One TB case over real HTTP: registered from the patient's record, treatment start, doses and sputum
recorded by a nurse; the regimen changed for failure and the outcome set by a doctor (audited)."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from care.tb import DoseStatus, Outcome, who_outcome
from db import tb as tb_db
from db.audit import events_for
from tests.conftest import RunningApp
from tests.integration.conftest import STAFF_PASSWORD, Factory
from tests.integration.test_http import csrf_cookie, jar_session, sign_in
from tests.integration.test_tb_clips import today


async def _signed_in(running_app: RunningApp, make: Factory, role: str) -> tuple[aiohttp.ClientSession, str]:
    staff_id = await make.staff(make.network.commune, role=role)
    async with running_app.pool.acquire() as con:
        username = await con.fetchval("SELECT username FROM staff WHERE id = $1", staff_id)
    http = jar_session()
    assert (await sign_in(http, running_app, username, STAFF_PASSWORD)).status == 303
    return http, csrf_cookie(http, running_app)


async def test_register_record_change_regimen_and_set_outcome(running_app: RunningApp, make: Factory) -> None:
    patient = await make.patient()
    url = running_app.url
    nurse, n_csrf = await _signed_in(running_app, make, "nurse")
    doctor, d_csrf = await _signed_in(running_app, make, "doctor")
    start = today() - timedelta(days=70)
    try:
        async with nurse.post(f"{url}/staff/patients/{patient}/tb", allow_redirects=False, data={
                "_csrf": n_csrf, "registered_on": (start - timedelta(days=2)).isoformat(), "regimen": "2HRZE/4HR",
                "confirmed": "yes", "site": "pulmonary", "registration_type": "new", "register_ref": "L-01"}) as r:
            assert r.status == 303
            case_page = r.headers["Location"]
        case_id = int(case_page.rsplit("/", 1)[1])
        async with nurse.post(f"{url}{case_page}/record/start", allow_redirects=False,
                              data={"_csrf": n_csrf, "on": start.isoformat()}) as r:
            assert r.status == 303
        for on, status in ((today(), "in_person"), (today() - timedelta(days=1), "missed")):
            async with nurse.post(f"{url}{case_page}/record/dose", allow_redirects=False,
                                  data={"_csrf": n_csrf, "on": on.isoformat(), "status": status}) as r:
                assert r.status == 303
        async with nurse.post(f"{url}{case_page}/record/dose", data={
                "_csrf": n_csrf, "on": (start - timedelta(days=1)).isoformat(), "status": "in_person"}) as r:
            assert r.status == 400 and "Ngày này trước ngày bắt đầu điều trị." in await r.text()
        async with nurse.post(f"{url}{case_page}/record/sputum", allow_redirects=False, data={
                "_csrf": n_csrf, "on": (start + timedelta(days=60)).isoformat(), "result": "positive"}) as r:
            assert r.status == 303
        async with nurse.get(f"{url}{case_page}") as r:
            page = await r.text()
        assert r.status == 200 and "2HRZE/4HR" in page and 'data-month="3"' in page  # month 2 positive → month 3
        assert f'data-day="{today().isoformat()}" data-status="in_person"' in page
        async with nurse.post(f"{url}{case_page}/treatment/regimen", data={
                "_csrf": n_csrf, "regimen": "2HPZM/2HPM", "reason": "x"}) as r:
            assert r.status == 403  # a nurse records; a clinician changes the treatment
        async with doctor.post(f"{url}{case_page}/treatment/regimen", data={
                "_csrf": d_csrf, "regimen": "2HRZE/4HR", "for_failure": "yes", "reason": " "}) as r:
            assert r.status == 400 and "Hãy ghi lý do." in await r.text()
        async with doctor.post(f"{url}{case_page}/treatment/regimen", allow_redirects=False, data={
                "_csrf": d_csrf, "regimen": "2HRZE/4HR", "for_failure": "yes",
                "reason": "smear still positive at month 3, culture sent"}) as r:
            assert r.status == 303
        async with running_app.pool.acquire() as con:
            record = await tb_db.get(con, case_id)
            assert record is not None and record.doses[today()] == DoseStatus.in_person
            assert who_outcome(record.case, today()) == Outcome.failed
        async with doctor.post(f"{url}{case_page}/treatment/outcome", allow_redirects=False, data={
                "_csrf": d_csrf, "outcome": "not_evaluated", "reason": "moved to another province"}) as r:
            assert r.status == 303
        async with doctor.get(f"{url}{case_page}") as r:
            assert "Không đánh giá" in await r.text()
        async with running_app.pool.acquire() as con:
            actions = [e["action"] for e in await events_for(con, "tb_case", case_id)]
        assert {"tb.register", "tb.start", "tb.dose", "tb.sputum", "tb.regimen_change", "tb.outcome"} <= set(actions)
    finally:
        await nurse.close()
        await doctor.close()
