"""The register's pages over real HTTP against the demo app: enrol, visit, the patient's own reading, the
worklist with its reason, a specialist's review as a signed note, the dashboard's counts and CSV exports."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import aiohttp

from care.appointments import FACILITY_TZ
from care.hypertension import Month
from db import patients as patients_db
from tests.conftest import RunningApp
from tests.integration.test_http import PATIENT, jar_session, new_link, signed_in
from web.keys import clock_key


async def _form(who: aiohttp.ClientSession, url: str, csrf: str, data: dict[str, str]) -> aiohttp.ClientResponse:
    return await who.post(url, data={"_csrf": csrf, **data}, allow_redirects=False)


async def test_the_register_from_enrolment_to_the_dashboard(running_app: RunningApp) -> None:
    app = running_app
    nurse = await signed_in(app, "yta.hoa")
    specialist = await signed_in(app, "bs.timmach")  # district: the commune is below
    today = app.app[clock_key].now().astimezone(FACILITY_TZ).date()
    registered = today - timedelta(days=200)
    async with app.pool.acquire() as con:
        pid = await patients_db.create(con, facility_id=nurse.facility_id, name="Sùng Thị Mỷ", phone="0912000111")
    try:
        page = await (await nurse.http.get(f"{app.url}/staff/htn/p/{pid}")).text()
        assert 'id="enrol-form"' in page
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/enrol", nurse.csrf, {
            "registered_on": registered.isoformat(), "risk_factors": "diabetes",
            "drug": "amlodipine", "dose": "5 mg", "frequency": "1 lần/ngày"})
        assert r.status == 303, await r.text()
        # Refused reading names the field; nothing stored.
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/visit", nurse.csrf,
                        {"visited_on": today.isoformat(), "systolic": "300", "diastolic": "90"})
        assert r.status == 400 and "systolic must be between 60 and 260" in await r.text()
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/visit", nurse.csrf,
                        {"visited_on": (today - timedelta(days=20)).isoformat()})  # a visit without BP
        assert r.status == 303

        month = str(Month.of(today))
        dash = f"{app.url}/staff/htn?month={month}&format=csv"
        before = list(csv.DictReader(io.StringIO(await (await specialist.http.get(dash)).text())))

        # The patient sends a home reading; a resend with the same key is stored once.
        token = await new_link(app, pid)
        async with jar_session() as patient:
            join = await (await patient.get(f"{app.url}/j/{token}")).text()
            assert 'id="home-bp-form"' in join
            body = {"systolic": 185, "diastolic": 100, "taken_on": today.isoformat(), "key": uuid.uuid4().hex}
            headers = {"Authorization": f"Bearer {token}"}
            first = await patient.post(f"{app.url}/api/p/bp", json=body, headers=headers)
            again = await patient.post(f"{app.url}/api/p/bp", json=body, headers=headers)
            assert (first.status, again.status) == (201, 200)
            assert (await first.json())["urgent"] is True and (await again.json())["created"] is False
            bad = await patient.post(f"{app.url}/api/p/bp", headers=headers,
                                     json={**body, "diastolic": 30, "key": uuid.uuid4().hex})
            assert bad.status == 400 and (await bad.json())["error"]["field"] == "diastolic"

        worklist = await (await specialist.http.get(f"{app.url}/staff/htn/worklist")).text()
        assert f'data-patient="{pid}"' in worklist and 'data-reason="urgent"' in worklist
        chart = await (await specialist.http.get(f"{app.url}/staff/htn/p/{pid}")).text()
        assert 'data-threshold="140"' in chart and 'data-threshold="90"' in chart and "185/100" in chart
        assert 'data-value="185"' in chart

        r = await _form(specialist.http, f"{app.url}/staff/htn/p/{pid}/review", specialist.csrf,
                        {"review": "Tăng amlodipin 10 mg, tái khám 2 tuần."})
        assert r.status == 303
        r = await _form(specialist.http, f"{app.url}/staff/htn/p/{pid}/medicines", specialist.csrf,
                        {"drug": "amlodipine", "dose": "10 mg", "frequency": "1 lần/ngày"})
        assert r.status == 303
        async with app.pool.acquire() as con:
            note = await con.fetchrow("SELECT nv.assessment, nv.author_id FROM note_version nv JOIN consultation c "
                                      "ON c.id = nv.consultation_id WHERE c.patient_id = $1 AND c.outcome = "
                                      "'htn_review'", pid)
            audited = await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'htn.medicines'")
        assert note["assessment"].startswith("Tăng amlodipin") and note["author_id"] == specialist.id
        assert audited == 1

        after = list(csv.DictReader(io.StringIO(await (await specialist.http.get(dash)).text())))
        district_before, district_after = before[0], after[0]
        assert int(district_after["uncontrolled"]) == int(district_before["uncontrolled"]) + 1
        assert int(district_after["visited_no_bp"]) == int(district_before["visited_no_bp"]) - 1
        assert district_after["denominator"] == district_before["denominator"]
        header = (await (await specialist.http.get(dash)).text()).splitlines()[0]
        assert header == ("facility_id,facility,month,registered,under_care,lost_to_follow_up,dead,denominator,"
                          "controlled,uncontrolled,missed_visit,visited_no_bp")
        for table, first in (("trend", "month,registered"), ("cohort", "quarter,missed_visit")):
            text = await (await specialist.http.get(f"{app.url}/staff/htn?format=csv&table={table}")).text()
            assert text.startswith(first)
        page = await specialist.http.get(f"{app.url}/staff/htn?month={month}")
        assert page.status == 200 and 'class="trend-chart"' in await page.text()
        csv_list = await (await specialist.http.get(f"{app.url}/staff/htn/worklist?format=csv")).text()
        assert csv_list.splitlines()[0] == "patient_id,name,facility,reasons,systolic,diastolic,taken_on,next_visit_on"
    finally:
        await nurse.http.close()
        await specialist.http.close()


async def test_overdue_list_call_results_and_sms(running_app: RunningApp) -> None:
    app = running_app
    nurse = await signed_in(app, "yta.hoa")
    clock = app.app[clock_key]
    today = clock.now().astimezone(FACILITY_TZ).date()
    async with app.pool.acquire() as con:  # not a demo patient: those are in the register already
        pid = await patients_db.create(con, facility_id=nurse.facility_id, name="Thào A Lử", phone="0912000333")
    try:
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/enrol", nurse.csrf, {
            "registered_on": (today - timedelta(days=100)).isoformat(),
            "next_visit_on": (today - timedelta(days=3)).isoformat()})
        assert r.status == 303
        overdue = await (await nurse.http.get(f"{app.url}/staff/htn/overdue")).text()
        assert f'data-patient="{pid}"' in overdue
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/call", nurse.csrf,
                        {"result": "agreed", "next": "/staff/htn/overdue"})
        assert r.status == 303 and r.headers["Location"] == "/staff/htn/overdue"
        assert f'data-patient="{pid}"' in await (await nurse.http.get(f"{app.url}/staff/htn/overdue")).text()
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/call", nurse.csrf, {"result": "sms"})
        assert r.status == 303
        async with app.pool.acquire() as con:
            assert await con.fetchval("SELECT count(*) FROM outbound_message WHERE kind = 'htn_reminder' "
                                      "AND patient_id = $1", pid) == 1
        # Returning to care (a visit) is what takes the patient off the list.
        r = await _form(nurse.http, f"{app.url}/staff/htn/p/{pid}/visit", nurse.csrf,
                        {"visited_on": today.isoformat(), "systolic": "130", "diastolic": "80"})
        assert r.status == 303
        assert f'data-patient="{pid}"' not in await (await nurse.http.get(f"{app.url}/staff/htn/overdue")).text()
    finally:
        await nurse.http.close()


async def test_web_import_previews_errors_then_imports_on_confirm(running_app: RunningApp) -> None:
    app = running_app
    nurse = await signed_in(app, "yta.hoa")
    header = "patient_ref,name,sex,birth_year,phone,registered_on,visit_on,systolic,diastolic"
    try:
        bad = aiohttp.FormData({"_csrf": nurse.csrf})
        bad.add_field("file", (header + "\nB1,An,M,1960,,2025-01-05,2025-01-05,95,150\n").encode(),
                      filename="so.csv", content_type="text/csv")
        r = await nurse.http.post(f"{app.url}/staff/htn/import", data=bad)
        assert r.status == 400 and "row 2:" in await r.text()
        good = aiohttp.FormData({"_csrf": nurse.csrf})
        text = header + "\nB1,An,M,1960,,2025-01-05,2025-01-05,150,95\n"
        good.add_field("file", text.encode(), filename="so.csv", content_type="text/csv")
        r = await nurse.http.post(f"{app.url}/staff/htn/import", data=good)
        assert r.status == 200 and 'id="preview"' in await r.text()
        async with app.pool.acquire() as con:
            assert await con.fetchval("SELECT count(*) FROM htn_enrolment WHERE patient_ref = 'B1'") == 0
        r = await _form(nurse.http, f"{app.url}/staff/htn/import", nurse.csrf, {"confirm": "1", "text": text})
        assert r.status == 200 and 'id="imported"' in await r.text()
        async with app.pool.acquire() as con:
            assert await con.fetchval("SELECT count(*) FROM htn_enrolment WHERE patient_ref = 'B1'") == 1
    finally:
        await nurse.http.close()


async def test_bad_input_is_refused_precisely(running_app: RunningApp) -> None:
    app = running_app
    nurse = await signed_in(app, "yta.hoa")
    try:
        for path, status in ((f"/staff/htn/p/{2**63}", 404), ("/staff/htn/p/abc", 404),
                             (f"/staff/htn?facility={10**30}", 400), ("/staff/htn?month=2026-13", 400),
                             ("/staff/htn?month=x", 400)):
            r = await nurse.http.get(f"{app.url}{path}", allow_redirects=False)
            assert r.status == status, path
        token = await new_link(app, PATIENT)
        async with jar_session() as patient:
            headers = {"Authorization": f"Bearer {token}"}
            for body, field in (({"systolic": 150, "diastolic": 90, "taken_on": "0001-01-01", "key": "abcdefgh1"},
                                 "taken_on"),
                                ({"systolic": 150, "diastolic": 90, "taken_on": "x", "key": "abcdefgh2"}, "taken_on")):
                r = await patient.post(f"{app.url}/api/p/bp", json=body, headers=headers)
                assert r.status == 400 and (await r.json())["error"]["field"] == field
            r = await patient.post(f"{app.url}/api/p/bp", json={"systolic": 150}, headers=headers)
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"
    finally:
        await nurse.http.close()


async def test_a_provinces_dashboard_draws_the_trend_at_once_when_its_months_are_few_to_compute(
        running_app: RunningApp) -> None:
    province = await signed_in(running_app, "bs.lao")
    try:
        page = await (await province.http.get(f"{running_app.url}/staff/htn")).text()
        assert "trend-chart" in page and 'id="trend"' in page and 'id="show-trend"' not in page
        page = await (await province.http.get(f"{running_app.url}/staff/htn?trend=1")).text()
        assert "trend-chart" in page and 'id="trend"' in page
    finally:
        await province.http.close()


async def test_signing_a_note_with_an_i10_to_i15_diagnosis_offers_enrolment_on_the_call_page(
        running_app: RunningApp) -> None:
    from tests.integration.test_visit_summary import note, visit

    lan = await signed_in(running_app, "bacsi.lan")
    try:
        async with jar_session() as http:
            async with running_app.pool.acquire() as con:
                patient_id = await patients_db.create(con, facility_id=lan.facility_id, name="Hà Văn Tằng",
                                                      phone="0912000222")
            _, patient, room = await visit(running_app, http, lan, end=False, patient_id=patient_id)
            await patient.close()
            page = await (await lan.http.get(f"{running_app.url}/staff/c/{room}")).text()
            assert 'id="htn-offer" hidden' in page  # there, hidden until a signature carries the diagnosis
            r = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                               {"expected_version": 0, "note": note(running_app, diagnoses=["J06.9"])})
            assert r.status == 201 and (await r.json())["htn_offer"] is False
            r = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                               {"expected_version": 1, "note": note(running_app, diagnoses=["J06.9", "I11.9"])})
            assert r.status == 201 and (await r.json())["htn_offer"] is True
            page = await (await lan.http.get(f"{running_app.url}/staff/c/{room}")).text()
            assert 'id="htn-offer">' in page and f'href="/staff/htn/p/{patient_id}"' in page
            async with running_app.pool.acquire() as con:
                await con.execute("INSERT INTO htn_enrolment (patient_id, facility_id, registered_on) "
                                  "SELECT id, facility_id, current_date FROM patient WHERE id = $1", patient_id)
            r = await lan.post(f"{running_app.url}/api/c/{room}/note/sign",
                               {"expected_version": 2, "note": note(running_app, diagnoses=["I10"])})
            assert r.status == 201 and (await r.json())["htn_offer"] is False
            page = await (await lan.http.get(f"{running_app.url}/staff/c/{room}")).text()
            assert 'id="htn-offer"' not in page
    finally:
        await lan.http.close()
