"""The TB specialist's review over real HTTP: signed as a note version of the patient (the same code path as
the hypertension review, db/reviews.py), in the patient's notes history, audited, and unalterable."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from db import notes
from db import tb as tb_db
from db.audit import SYSTEM, events_for
from db.errors import Conflict, DbError
from tests.conftest import RunningApp
from tests.integration.conftest import STAFF_PASSWORD, Factory
from tests.integration.test_http import csrf_cookie, jar_session, sign_in
from tests.integration.test_tb_clips import today

REVIEW = "Tuần 8: chuyển giai đoạn duy trì 4HR khi có kết quả đờm tháng 2; trạm nhắc uống thuốc hằng ngày."


async def _signed_in(app: RunningApp, staff_id: int) -> tuple[aiohttp.ClientSession, str]:
    async with app.pool.acquire() as con:
        username = await con.fetchval("SELECT username FROM staff WHERE id = $1", staff_id)
    http = jar_session()
    assert (await sign_in(http, app, username, STAFF_PASSWORD)).status == 303
    return http, csrf_cookie(http, app)


async def _case(app: RunningApp, patient: int, facility: int, *, confirmed: bool = True) -> int:
    async with app.pool.acquire() as con:
        return await tb_db.register(con, SYSTEM, patient, facility,
                                    tb_db.NewCase(today() - timedelta(days=60), "2HRZE/4HR", confirmed,
                                                  started_on=today() - timedelta(days=56)))


async def test_specialist_review_is_a_signed_note_version_in_the_history(running_app: RunningApp,
                                                                         make: Factory) -> None:
    patient = await make.patient()
    case_id = await _case(running_app, patient, make.network.commune)
    specialist_id = await make.staff(make.network.district, role="specialist")
    specialist, csrf = await _signed_in(running_app, specialist_id)
    nurse, nurse_csrf = await _signed_in(running_app, await make.staff(make.network.commune, role="nurse"))
    url = f"{running_app.url}/staff/tb/cases/{case_id}"
    try:
        async with specialist.post(f"{url}/review", data={"_csrf": csrf, "review": "   "}) as r:
            assert r.status == 400 and "Hãy viết nhận xét: từ 1 đến 4000 ký tự." in await r.text()
        async with nurse.post(f"{url}/review", data={"_csrf": nurse_csrf, "review": "x"}) as r:
            assert r.status == 403  # a nurse records doses; a clinician reviews
        async with specialist.post(f"{url}/review", data={"_csrf": "wrong", "review": REVIEW}) as r:
            assert r.status == 403
        async with specialist.post(f"{url}/review", allow_redirects=False,
                                   data={"_csrf": csrf, "review": REVIEW}) as r:
            assert r.status == 303 and r.headers["Location"] == f"/staff/tb/cases/{case_id}?done=review"
        async with specialist.get(f"{url}?done=review") as r:
            assert 'id="done"' in await r.text()
        async with specialist.get(f"{running_app.url}/staff/patients/{patient}") as r:
            history = await r.text()
        assert REVIEW in history and "A15.0" in history
        async with running_app.pool.acquire() as con:
            row = await con.fetchrow(
                "SELECT nv.*, c.outcome, q.service FROM note_version nv "
                "JOIN consultation c ON c.id = nv.consultation_id JOIN queue_entry q ON q.id = c.queue_entry_id "
                "WHERE c.patient_id = $1", patient)
            assert (row["outcome"], row["service"], row["version"], row["author_id"]) == (
                "tb_review", "tb_review", 1, specialist_id)
            assert row["assessment"] == REVIEW and row["diagnoses"] == ["A15.0"]
            signed = (await notes.versions(con, row["consultation_id"]))[0]
            expected = hashlib.sha256(f"{row['consultation_id']}|1|{specialist_id}|"
                                      f"{signed.content.canonical()}".encode()).hexdigest()
            assert row["content_sha256"] == expected
            events = await events_for(con, "tb_case", case_id)
            assert [e["details"]["sha256"] for e in events if e["action"] == "tb.review"] == [expected]
            assert await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'note.sign' "
                                      "AND object_id = $1", str(row["consultation_id"])) == 1
            # Append-only: the signed version cannot be changed or removed, nor signed over as version 1.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await con.execute("UPDATE note_version SET assessment = 'sửa' WHERE consultation_id = $1",
                                  row["consultation_id"])
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await con.execute("DELETE FROM note_version WHERE consultation_id = $1", row["consultation_id"])
            with pytest.raises(Conflict):
                await notes.sign(con, row["consultation_id"], specialist_id, 0, notes.NoteContent(assessment="sửa"))
            assert (await notes.versions(con, row["consultation_id"]))[-1].content.assessment == REVIEW
    finally:
        await specialist.close()
        await nurse.close()


async def test_review_of_an_unconfirmed_case_carries_a16_and_bad_text_writes_nothing(
        running_app: RunningApp, make: Factory) -> None:
    patient = await make.patient()
    case_id = await _case(running_app, patient, make.network.commune, confirmed=False)
    doctor = await make.staff(make.network.commune, role="doctor")
    async with running_app.pool.acquire() as con:
        for bad in ("", " \n ", "x" * 4001):
            with pytest.raises(DbError) as refused:
                await tb_db.write_review(con, doctor, case_id, bad, datetime.now(UTC))
            assert refused.value.code == "bad_review"
        assert await con.fetchval("SELECT count(*) FROM consultation WHERE patient_id = $1", patient) == 0
        consultation = await tb_db.write_review(con, doctor, case_id, "Ổn định.", datetime.now(UTC))
        signed = await notes.versions(con, consultation)
    assert signed[0].content.diagnoses == ("A16.2",) and len(signed) == 1

