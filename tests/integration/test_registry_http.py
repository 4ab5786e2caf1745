"""The registry pages and JSON over HTTP, on the real application with demo data: search, registration
with field errors and the duplicate warning, edit, merge, the commune picker, CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp
import pytest
from babel.messages.pofile import read_po

from db import audit
from tests.conftest import RunningApp
from tests.integration.test_http import Staff, jar_session, signed_in
from web import registry_texts

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

AN = 3  # demo patient "Nguyễn Văn An", born 1949, 0912345603, commune station
AN_PHONE = "0912345603"


def vietnamese(msgid: str) -> str:
    po = resources.files("web").joinpath("translations", "vi", "LC_MESSAGES", "registry.po")
    with po.open("rb") as fh:
        message = read_po(fh, locale="vi").get(msgid)
    assert message is not None and message.string, msgid
    return str(message.string)


@pytest.fixture
async def lan(running_app: RunningApp) -> AsyncIterator[Staff]:
    staff = await signed_in(running_app, "bacsi.lan")
    yield staff
    await staff.http.close()


@pytest.fixture
async def nurse(running_app: RunningApp) -> AsyncIterator[Staff]:
    staff = await signed_in(running_app, "yta.hoa")  # nurses work the registry (care/access.py)
    yield staff
    await staff.http.close()


async def counts(app: RunningApp) -> tuple[int, int]:
    """(patients, audit events)"""
    async with app.pool.acquire() as con:
        return (await con.fetchval("SELECT count(*) FROM patient"),
                await con.fetchval("SELECT count(*) FROM audit_event WHERE action LIKE 'patient.%' "
                                   "AND action <> 'patient.read_history'"))


def form(staff: Staff, **values: Any) -> dict[str, Any]:
    base = {"_csrf": staff.csrf, "name": "Thào Thị Dợ", "sex": "female", "birth_year": "1987",
            "phone": "0988 123 456", "province": "15", "commune_code": "04456", "address_detail": "Bản Mồ Dề"}
    return {**base, **values}


async def post(staff: Staff, app: RunningApp, path: str, data: dict[str, Any] | list[tuple[str, str]]
               ) -> aiohttp.ClientResponse:
    return await staff.http.post(f"{app.url}{path}", data=data, allow_redirects=False)


def field_error(page: str, field: str) -> str | None:
    """The text shown next to a field, if the field is marked invalid and points to it."""
    marked = re.search(rf'id="f-{field}"[^>]*aria-invalid="true" aria-describedby="e-{field}', page) or re.search(
        rf'aria-invalid="true" aria-describedby="e-{field}[^"]*"[^>]*id="f-{field}"', page)
    found = re.search(rf'<p class="error field-error" id="e-{field}">([^<]*)</p>', page)
    return found.group(1) if marked and found else None


# ---- search ------------------------------------------------------------------------------------------

async def test_search_page_finds_a_name_typed_without_diacritics_and_masks_the_phone(
        running_app: RunningApp, lan: Staff) -> None:
    r = await lan.http.get(f"{running_app.url}/staff/patients", params={"q": "nguyen van an"})
    page = await r.text()
    assert r.status == 200
    assert "Nguyễn Văn An" in page and f'href="/staff/patients/{AN}"' in page
    assert "0••• ••• 603" in page and AN_PHONE not in page and "345 603" not in page


async def test_empty_search_shows_recent_patients_and_the_register_button(running_app: RunningApp,
                                                                           lan: Staff) -> None:
    page = await (await lan.http.get(f"{running_app.url}/staff/patients")).text()
    assert 'href="/staff/patients/new"' in page and 'id="recent"' in page and "Mùa Thị Sua" in page
    page = await (await lan.http.get(f"{running_app.url}/staff/patients", params={"q": "zzzz"})).text()
    assert vietnamese("No patient matches. Check the spelling, try the phone number, or register a new patient."
                      ) in page


async def test_registry_needs_a_signed_in_staff_member(running_app: RunningApp) -> None:
    async with jar_session() as http:
        r = await http.get(f"{running_app.url}/staff/patients", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/staff/login")
        r = await http.get(f"{running_app.url}/api/patients?q=an")
        assert r.status == 401 and (await r.json())["error"]["code"] == "not_authenticated"


async def test_type_ahead_api_matches_phone_numbers_in_any_form(running_app: RunningApp, nurse: Staff) -> None:
    for q in (AN_PHONE, "+84 912 345 603", "0912.345.603"):
        r = await nurse.http.get(f"{running_app.url}/api/patients", params={"q": q})
        body = await r.json()
        assert r.status == 200
        assert [(p["id"], p["name"], p["phone"]) for p in body["results"]] == [(AN, "Nguyễn Văn An", "0••• ••• 603")]


async def test_commune_api_lists_a_provinces_communes_with_diacritics(running_app: RunningApp, lan: Staff) -> None:
    r = await lan.http.get(f"{running_app.url}/api/communes", params={"province": "15"})
    body = await r.json()
    assert body["province"] == {"code": "15", "name": "Lào Cai"}
    assert len(body["communes"]) == 99 and {"code": "04456", "name": "Xã Mù Cang Chải"} in body["communes"]
    r = await lan.http.get(f"{running_app.url}/api/communes", params={"province": "15", "q": "mu cang chai"})
    assert [c["code"] for c in (await r.json())["communes"]] == ["04456"]
    r = await lan.http.get(f"{running_app.url}/api/communes", params={"province": "99"})
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


# ---- register ----------------------------------------------------------------------------------------

async def test_new_patient_form_defaults_to_the_stations_commune(running_app: RunningApp, lan: Staff) -> None:
    page = await (await lan.http.get(f"{running_app.url}/staff/patients/new")).text()
    assert 'name="_csrf"' in page
    assert '<option value="15" selected>Lào Cai</option>' in page
    assert '<option value="04456" selected>Xã Mù Cang Chải</option>' in page


async def test_registering_a_patient_saves_it_and_opens_its_page(running_app: RunningApp, nurse: Staff) -> None:
    before = await counts(running_app)
    data = list(form(nurse).items()) + [("key_groups", "pregnant"), ("key_groups", "diabetes")]
    r = await post(nurse, running_app, "/staff/patients/new", data)
    assert r.status == 303, await r.text()
    location = r.headers["Location"]
    match = re.fullmatch(r"/staff/patients/(\d+)\?created=1", location)
    assert match
    pid = int(match.group(1))
    assert await counts(running_app) == (before[0] + 1, before[1] + 1)
    page = await (await nurse.http.get(f"{running_app.url}{location}")).text()
    assert "Thào Thị Dợ" in page and "0••• ••• 456" in page and "0988" not in page
    assert "Bản Mồ Dề, Xã Mù Cang Chải, Lào Cai" in page
    assert f'href="/staff/patients/{pid}/invite"' in page and f'href="/staff/patients/{pid}/edit"' in page
    assert vietnamese("The patient was registered.") in page
    async with running_app.pool.acquire() as con:
        row = await con.fetchrow("SELECT * FROM patient WHERE id = $1", pid)
        events = await audit.events_for(con, "patient", pid)
    assert row["phone"] == "+84988123456" and row["search_name"] == "thao thi do"
    assert sorted(row["key_groups"]) == ["diabetes", "pregnant"]
    assert events[0]["action"] == "patient.create" and events[0]["actor_id"] == str(nurse.id)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("phone", "0243 825 1234", "phone_not_mobile"),
    ("phone", "12345", "phone_length"),
    ("commune_code", "99999", "commune_unknown"),
    ("birth_year", "2999", "birth_in_future"),
    ("national_id", "1234", "national_id_format"),
    ("name", "", "name_required"),
])
async def test_each_bad_field_is_shown_next_to_it_and_nothing_is_saved(
        running_app: RunningApp, lan: Staff, field: str, value: str, code: str) -> None:
    before = await counts(running_app)
    r = await post(lan, running_app, "/staff/patients/new", form(lan, **{field: value}))
    page = await r.text()
    assert r.status == 400
    assert field_error(page, field) == vietnamese(registry_texts.ERRORS[code])
    assert 'id="error-summary"' in page and f'href="#f-{field}"' in page
    assert await counts(running_app) == before


async def test_several_bad_fields_are_all_reported_and_the_typed_values_kept(running_app: RunningApp,
                                                                             lan: Staff) -> None:
    before = await counts(running_app)
    r = await post(lan, running_app, "/staff/patients/new",
                   form(lan, phone="0912 34", commune_code="00000", birth_year="2999", address_detail="Thôn Tả Van"))
    page = await r.text()
    assert r.status == 400
    assert {f for f in ("phone", "commune_code", "birth_year", "name") if field_error(page, f)} == {
        "phone", "commune_code", "birth_year"}
    assert 'value="Thôn Tả Van"' in page and 'value="0912 34"' in page
    assert await counts(running_app) == before


async def test_a_likely_duplicate_is_shown_before_creating_then_create_anyway_works(
        running_app: RunningApp, lan: Staff) -> None:
    before = await counts(running_app)
    data = form(lan, name="Nguyen Van An", sex="male", birth_year="1949", phone=AN_PHONE)
    r = await post(lan, running_app, "/staff/patients/new", data)
    page = await r.text()
    assert r.status == 200
    assert vietnamese("This patient may already be registered") in page
    assert f'href="/staff/patients/{AN}"' in page and vietnamese("Use this patient") in page
    assert f'name="seen_duplicates" value="{AN}"' in page and 'value="create_anyway"' in page
    assert await counts(running_app) == before
    # Pressing "create anyway" without having been shown the duplicate does not skip the check.
    r = await post(lan, running_app, "/staff/patients/new", {**data, "confirm": "create_anyway"})
    assert r.status == 200 and await counts(running_app) == before
    r = await post(lan, running_app, "/staff/patients/new",
                   {**data, "confirm": "create_anyway", "seen_duplicates": str(AN)})
    assert r.status == 303
    assert await counts(running_app) == (before[0] + 1, before[1] + 1)


async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(running_app: RunningApp,
                                                                           lan: Staff) -> None:
    before = await counts(running_app)
    for path, data in (("/staff/patients/new", form(lan, _csrf="wrong")),
                       (f"/staff/patients/{AN}/edit", form(lan, _csrf="")),
                       (f"/staff/patients/{AN}/merge", {"other": "1", "confirm": "merge"})):
        r = await post(lan, running_app, path, data)
        assert r.status == 403, path
    assert await counts(running_app) == before


async def test_picking_a_province_without_javascript_lists_its_communes_and_saves_nothing(
        running_app: RunningApp, lan: Staff) -> None:
    before = await counts(running_app)
    r = await post(lan, running_app, "/staff/patients/new",
                   form(lan, province="01", commune_code="", action="communes"))
    page = await r.text()
    assert r.status == 200 and "Phường Hoàn Kiếm" in page and "Xã Mù Cang Chải" not in page
    assert 'value="Thào Thị Dợ"' in page and "error-summary" not in page
    assert await counts(running_app) == before


# ---- edit --------------------------------------------------------------------------------------------

async def test_edit_shows_the_record_and_saves_changes_audited(running_app: RunningApp, lan: Staff) -> None:
    page = await (await lan.http.get(f"{running_app.url}/staff/patients/{AN}/edit")).text()
    assert 'value="Nguyễn Văn An"' in page and 'value="+84912345603"' in page
    version = re.search(r'name="version" value="([^"]+)"', page)
    assert version
    assert 'value="elderly_alone" checked' in page and 'value="hypertension" checked' in page
    data = form(lan, name="Nguyễn Văn An", sex="male", birth_year="1949", phone="0912345603",
                version=version.group(1))
    groups = [("key_groups", "elderly_alone"), ("key_groups", "hypertension")]
    r = await post(lan, running_app, f"/staff/patients/{AN}/edit", [*data.items(), *groups])
    assert r.status == 303 and r.headers["Location"] == f"/staff/patients/{AN}?saved=1"
    async with running_app.pool.acquire() as con:
        row = await con.fetchrow("SELECT address_commune_code, address_detail FROM patient WHERE id = $1", AN)
        events = [e for e in await audit.events_for(con, "patient", AN) if e["action"] == "patient.update"]
    assert (row["address_commune_code"], row["address_detail"]) == ("04456", "Bản Mồ Dề")
    assert events[-1]["details"] == {"fields": ["address_commune_code", "address_detail"]}
    # The same form again, with the old version: someone saved in between.
    r = await post(lan, running_app, f"/staff/patients/{AN}/edit",
                   [*{**data, "address_detail": "Bản khác"}.items(), *groups])
    assert r.status == 409 and vietnamese(registry_texts.ERRORS["stale_record"]) in await r.text()


async def test_a_patient_outside_the_staff_members_facilities_cannot_be_edited(running_app: RunningApp,
                                                                                lan: Staff) -> None:
    async with running_app.pool.acquire() as con:
        other = await con.fetchval("INSERT INTO facility (name, level) VALUES ('Trạm Y tế xã khác', 'commune') "
                                   "RETURNING id")
        pid = await con.fetchval("INSERT INTO patient (facility_id, name) VALUES ($1, 'Người ngoài') RETURNING id",
                                 other)
    r = await lan.http.get(f"{running_app.url}/staff/patients/{pid}/edit", allow_redirects=False)
    assert r.status == 403
    r = await lan.http.get(f"{running_app.url}/api/patients", params={"q": "nguoi ngoai"})
    assert (await r.json())["results"] == []


# ---- merge -------------------------------------------------------------------------------------------

async def duplicate_of_an(app: RunningApp, lan: Staff) -> int:
    data = form(lan, name="Nguyen Van An", sex="male", birth_year="1949", phone=AN_PHONE,
                confirm="create_anyway", seen_duplicates=str(AN), key_groups="diabetes")
    r = await post(lan, app, "/staff/patients/new", data)
    assert r.status == 303
    match = re.search(r"/staff/patients/(\d+)", r.headers["Location"])
    assert match
    return int(match.group(1))


async def test_merge_asks_for_confirmation_then_moves_everything_to_the_kept_record(
        running_app: RunningApp, lan: Staff) -> None:
    dup = await duplicate_of_an(running_app, lan)
    page = await (await lan.http.get(f"{running_app.url}/staff/patients/{AN}")).text()
    assert vietnamese("Possible duplicates of this record") in page and f'value="{dup}"' in page
    r = await post(lan, running_app, f"/staff/patients/{AN}/merge", {"_csrf": lan.csrf, "other": f"#{dup}"})
    page = await r.text()
    assert r.status == 200 and 'value="merge"' in page and f"#{dup}" in page
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT merged_into FROM patient WHERE id = $1", dup) is None
    r = await post(lan, running_app, f"/staff/patients/{AN}/merge",
                   {"_csrf": lan.csrf, "other": str(dup), "confirm": "merge"})
    assert r.status == 303 and r.headers["Location"] == f"/staff/patients/{AN}?merged={dup}"
    r = await lan.http.get(f"{running_app.url}/staff/patients/{dup}", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"/staff/patients/{AN}"
    body = await (await lan.http.get(f"{running_app.url}/api/patients", params={"q": "nguyen van an"})).json()
    assert [p["id"] for p in body["results"]] == [AN]
    page = await (await lan.http.get(f"{running_app.url}/staff/patients/{AN}?merged={dup}")).text()
    assert "Đái tháo đường" in page  # key groups united: the duplicate was flagged diabetic


async def test_merge_is_refused_when_both_are_in_the_queue(running_app: RunningApp, lan: Staff) -> None:
    dup = await duplicate_of_an(running_app, lan)
    async with running_app.pool.acquire() as con:
        for pid in (AN, dup):
            await con.execute("INSERT INTO queue_entry (patient_id, facility_id, triage_level, suggested_level) "
                              "SELECT $1, facility_id, 1, 1 FROM patient WHERE id = $1", pid)
    r = await post(lan, running_app, f"/staff/patients/{AN}/merge",
                   {"_csrf": lan.csrf, "other": str(dup), "confirm": "merge"})
    assert r.status == 409 and vietnamese(registry_texts.ERRORS["both_in_queue"]) in await r.text()
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT merged_into FROM patient WHERE id = $1", dup) is None


async def test_merging_an_unknown_record_says_so(running_app: RunningApp, lan: Staff) -> None:
    for other in ("999999", "abc", str(AN)):
        r = await post(lan, running_app, f"/staff/patients/{AN}/merge", {"_csrf": lan.csrf, "other": other})
        assert r.status in (404, 409)
        assert 'id="merge-error"' in await r.text()
