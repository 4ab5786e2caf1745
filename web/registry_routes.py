"""The patient registry: search, register (with a duplicate check first), edit and merge records, and the
JSON behind the type-ahead and the commune picker. For the roles care/access.py allows, within their
facility and the facilities below it."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from care import access, places
from care.access import Action
from care.appointments import FACILITY_TZ
from care.registry import RegistrationError, RegistrationInput, validate
from care.triage import KeyGroup
from db import facilities as facilities_db
from db import patients as patients_db
from db import scope
from db.errors import Conflict, NotFound
from db.patients import Patient
from db.staff import Session
from web import params, patient_view, registry_texts, texts
from web.access import require, require_role
from web.auth import check_csrf
from web.errors import ApiError
from web.i18n import Translator
from web.keys import pool_key
from web.render import render
from web.rkeys import t_rkey
from web.staff_routes import require_api_session, require_page_session

QUERY_MAX = 100
FIELD_MAX = 300  # longer than any valid value; validation reports the field, we just bound the work
TEXT_FIELDS = ("name", "sex", "birth_year", "birth_date", "phone", "commune_code", "address_detail",
               "national_id", "insurance_number")


def _today() -> date:
    """The facility's today (never the server's: its time zone may differ)."""
    return datetime.now(FACILITY_TZ).date()


def _patient_id(request: web.Request) -> int:
    return params.path_id(request, "pid")


async def _require_csrf(request: web.Request) -> None:
    if not await check_csrf(request):
        t = request[t_rkey]
        raise ApiError("csrf", t("Your session form expired. Please try again."))


# ---- search ------------------------------------------------------------------------------------------

async def search_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.read_demographics)
    query = params.query_text(request, "q", QUERY_MAX)
    t, today = request[t_rkey], _today()
    async with request.app[pool_key].acquire() as con:
        if query.strip():
            found, recent = await patients_db.search(con, session.staff.facility_id, query), []
        else:
            found, recent = [], await patients_db.recent(con, session.staff.facility_id)
    return render(request, "patients.html", {
        "me": session.staff, "query": query,
        "results": [patient_view.summary(p, t, today) for p in found],
        "recent": [patient_view.summary(p, t, today) for p in recent],
        "js_strings": t.json(registry_texts.REGISTRY_JS)})


async def search_api(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    require_role(request, session.staff, Action.read_demographics)
    query = params.query_text(request, "q", QUERY_MAX)
    t, today = request[t_rkey], _today()
    async with request.app[pool_key].acquire() as con:
        found = await patients_db.search(con, session.staff.facility_id, query) if query.strip() else []
    return web.json_response({"query": query, "results": [patient_view.summary(p, t, today) for p in found]})


async def communes_api(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    require_role(request, session.staff, Action.lookup_reference)
    province = places.province(request.query.get("province", ""))
    if province is None:
        raise ApiError("not_found", "no province with this code", field="province")
    communes = places.search_communes(province.code, params.query_text(request, "q", QUERY_MAX), limit=500)
    return web.json_response({"province": asdict(province),
                              "communes": [{"code": c.code, "name": c.name} for c in communes]})


# ---- the registration form (new and edit) ------------------------------------------------------------

def _form_input(form: MultiDictProxy[Any]) -> RegistrationInput:
    values = {f: str(form.get(f, ""))[:FIELD_MAX] for f in TEXT_FIELDS}
    groups = tuple(str(g)[:40] for g in form.getall("key_groups", [])[:20])
    return RegistrationInput(**values, key_groups=groups)


def _input_of(p: Patient) -> RegistrationInput:
    return RegistrationInput(
        name=p.name, sex=p.sex or "", birth_year=str(p.birth_year or ""),
        birth_date=p.birth_date.isoformat() if p.birth_date else "", phone=p.phone or "",
        commune_code=p.commune_code or "", address_detail=p.address_detail,
        national_id=p.national_id or "", insurance_number=p.insurance_number or "", key_groups=p.key_groups)


def _province_for(values: RegistrationInput, chosen: str) -> str:
    """The province whose communes the picker lists: the chosen commune's, else the one picked."""
    commune = places.commune(values.commune_code) if values.commune_code else None
    if commune is not None and not chosen:
        return commune.province_code
    found = places.province(chosen) if chosen else None
    return found.code if found else (commune.province_code if commune else "")


def _field_errors(exc: RegistrationError, t: Translator) -> dict[str, str]:
    return {f: t(registry_texts.ERRORS.get(code, code)) for f, code in exc.codes().items()}


def _form(request: web.Request, session: Session, *, mode: str, action: str, values: RegistrationInput,
          province: str, errors: dict[str, str] | None = None, duplicates: list[dict[str, Any]] | None = None,
          form_error: str | None = None, patient: Patient | None = None, status: int = 200) -> web.Response:
    t = request[t_rkey]
    return render(request, "patient_form.html", {
        "me": session.staff, "mode": mode, "action": action, "values": values, "province": province,
        "provinces": places.provinces(), "communes": places.communes_of(province) if province else (),
        "errors": errors or {}, "duplicates": duplicates or [],
        "seen_duplicates": ",".join(str(d["id"]) for d in duplicates or []),
        "form_error": form_error, "patient": patient,
        "version": patient.updated_at.isoformat() if patient and patient.updated_at else "",
        "labels": registry_texts.FIELDS, "sexes": texts.SEXES,
        "key_groups": [(g.value, texts.KEY_GROUPS[g]) for g in KeyGroup],
        "js_strings": t.json(registry_texts.REGISTRY_JS)}, status=status)


async def new_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    require_role(request, session.staff, Action.register_patient)
    async with request.app[pool_key].acquire() as con:
        province, commune = await facilities_db.location(con, session.staff.facility_id)
    values = RegistrationInput(commune_code=commune or "")
    return _form(request, session, mode="new", action="/staff/patients/new", values=values,
                 province=_province_for(values, province or ""))


def _seen(form: MultiDictProxy[Any]) -> set[int]:
    return {i for i in (params.parse_id(x.strip()) for x in str(form.get("seen_duplicates", "")).split(",")) if i}


async def create(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    await _require_csrf(request)
    require_role(request, session.staff, Action.register_patient)
    form = await params.form(request)
    values = _form_input(form)
    province = _province_for(values, str(form.get("province", ""))[:4])
    me, t, today = session.staff, request[t_rkey], _today()

    def again(**kwargs: Any) -> web.Response:
        return _form(request, session, mode="new", action="/staff/patients/new", values=values,
                     province=province, **kwargs)

    if form.get("action") == "communes":  # the picker without JavaScript: list the chosen province's communes
        return again()
    try:
        registration = validate(values, today=today)
    except RegistrationError as exc:
        return again(errors=_field_errors(exc, t), status=400)
    async with request.app[pool_key].acquire() as con:
        duplicates = await patients_db.find_duplicates(
            con, me.facility_id, phone=registration.phone, name=registration.name,
            birth_year=registration.birth_year, national_id=registration.national_id)
        # "Create anyway" covers the duplicates the person was shown, not new ones from changed fields.
        unseen = [d for d in duplicates if d.id not in _seen(form)]
        if unseen or (duplicates and form.get("confirm") != "create_anyway"):
            return again(duplicates=[patient_view.summary(d, t, today) for d in duplicates])
        patient_id = await patients_db.create_registered(con, facility_id=me.facility_id,
                                                         registration=registration, staff_id=me.id)
    raise web.HTTPSeeOther(f"/staff/patients/{patient_id}?created=1")


async def _patient_in_scope(request: web.Request, session: Session, patient_id: int,
                            action: Action = Action.edit_patient) -> Patient:
    async with request.app[pool_key].acquire() as con:
        patient = await patients_db.get(con, patient_id)
        if patient is None:
            raise web.HTTPNotFound()
        await require(request, con, session.staff, action, patient.facility_id)
    if patient.merged_into is not None:
        raise web.HTTPSeeOther(f"/staff/patients/{patient.merged_into}")
    return patient


async def edit_page(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    patient = await _patient_in_scope(request, session, _patient_id(request), Action.edit_patient)
    values = _input_of(patient)
    return _form(request, session, mode="edit", action=f"/staff/patients/{patient.id}/edit", values=values,
                 province=_province_for(values, ""), patient=patient)


async def edit(request: web.Request) -> web.Response:
    session = await require_page_session(request)
    await _require_csrf(request)
    patient = await _patient_in_scope(request, session, _patient_id(request), Action.edit_patient)
    form = await params.form(request)
    values = _form_input(form)
    province = _province_for(values, str(form.get("province", ""))[:4])
    t = request[t_rkey]

    def again(**kwargs: Any) -> web.Response:
        return _form(request, session, mode="edit", action=f"/staff/patients/{patient.id}/edit", values=values,
                     province=province, patient=patient, **kwargs)

    if form.get("action") == "communes":
        return again()
    try:
        registration = validate(values, today=_today())
    except RegistrationError as exc:
        return again(errors=_field_errors(exc, t), status=400)
    try:
        async with request.app[pool_key].acquire() as con:
            await patients_db.update(con, patient.id, registration, session.staff.id,
                                     expected_version=str(form.get("version", "")))
    except Conflict as exc:
        return again(form_error=t(registry_texts.ERRORS.get(exc.code, exc.message)), status=409)
    raise web.HTTPSeeOther(f"/staff/patients/{patient.id}?saved=1")


# ---- merge -------------------------------------------------------------------------------------------

async def merge(request: web.Request) -> web.Response:
    """Step 1 (no `confirm`): show both records side by side. Step 2 (`confirm=merge`): merge `other`
    into this patient, who is kept."""
    session = await require_page_session(request)
    await _require_csrf(request)
    keep = await _patient_in_scope(request, session, _patient_id(request), Action.merge_patients)
    form = await params.form(request)
    t, today = request[t_rkey], _today()
    other_text = str(form.get("other", "")).strip().lstrip("#")[:20]

    def page(*, other: Patient | None, error: str | None, status: int = 200) -> web.Response:
        return render(request, "patient_merge.html", {
            "me": session.staff, "keep": patient_view.summary(keep, t, today),
            "other": patient_view.summary(other, t, today) if other else None,
            "other_text": other_text, "error": error}, status=status)

    async with request.app[pool_key].acquire() as con:
        other_id = params.parse_id(other_text)
        other = await patients_db.get(con, other_id) if other_id else None
        if other is None or other.merged_into is not None or not access.allows(
                session.staff.role, Action.merge_patients,
                await scope.relation(con, session.staff.facility_id, other.facility_id)):
            return page(other=None, error=t(registry_texts.ERRORS["merge_not_found"]), status=404)
        if other.id == keep.id:
            return page(other=None, error=t(registry_texts.ERRORS["merge_same"]), status=409)
        if form.get("confirm") != "merge":
            return page(other=other, error=None)
        try:
            await patients_db.merge(con, keep.id, other.id, session.staff.id)
        except (Conflict, NotFound) as exc:
            return page(other=other, error=t(registry_texts.ERRORS.get(exc.code, exc.message)), status=409)
    raise web.HTTPSeeOther(f"/staff/patients/{keep.id}?merged={other.id}")


def setup(app: web.Application) -> None:
    """Register the registry's routes. `/staff/patients/{pid}` itself is the patient page (staff_routes)."""
    app.router.add_get("/staff/patients", search_page, name="patients")
    app.router.add_get("/staff/patients/new", new_page, name="patient_new")
    app.router.add_post("/staff/patients/new", create)
    app.router.add_get(r"/staff/patients/{pid:\d+}/edit", edit_page, name="patient_edit")
    app.router.add_post(r"/staff/patients/{pid:\d+}/edit", edit)
    app.router.add_post(r"/staff/patients/{pid:\d+}/merge", merge, name="patient_merge")
    app.router.add_get("/api/patients", search_api)
    app.router.add_get("/api/communes", communes_api)
