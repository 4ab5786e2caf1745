"""How a patient record is shown to staff: masked phone, place names, labels; shared by the registry
pages, the patient page and the type-ahead API."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from care import places
from care.phone import mask
from db import patients as patients_db
from db.patients import Patient
from db.staff import StaffMember
from web import texts
from web.i18n import Translator

_KEY_GROUPS: dict[str, str] = {k.value: v for k, v in texts.KEY_GROUPS.items()}


def address(p: Patient) -> str:
    """Commune and province names (with diacritics), after the village/street the staff typed."""
    parts = [p.address_detail] if p.address_detail else []
    commune = places.commune(p.commune_code) if p.commune_code else None
    if commune is not None:
        parts.append(commune.name)
        province = places.province(commune.province_code)
        if province is not None:
            parts.append(province.name)
    return ", ".join(parts)


def summary(p: Patient, t: Translator, today: date) -> dict[str, Any]:
    """What a list row, the type-ahead and the patient page header show (JSON-serializable)."""
    commune = places.commune(p.commune_code) if p.commune_code else None
    return {
        "id": p.id,
        "name": p.name,
        "age": p.age(today),
        "birth_year": p.birth_year,
        "sex": t(texts.SEXES[p.sex]) if p.sex in texts.SEXES else "",
        "phone": mask(p.phone) if p.phone else "",
        "commune": commune.name if commune else "",
        "address": address(p),
        "key_groups": [t(_KEY_GROUPS[g]) if g in _KEY_GROUPS else g for g in p.key_groups],
        "has_national_id": p.national_id is not None,
        "has_insurance": p.insurance_number is not None,
        "url": f"/staff/patients/{p.id}",
    }


async def page_extras(con: asyncpg.Connection, me: StaffMember, patient: Patient, t: Translator,
                      today: date) -> dict[str, Any]:
    """Extra context for the patient page: demographics and records that look like the same person."""
    duplicates = await patients_db.find_duplicates(
        con, me.facility_id, phone=patient.phone, name=patient.name, birth_year=patient.birth_year,
        national_id=patient.national_id, exclude=patient.id)
    return {"view": summary(patient, t, today), "duplicates": [summary(d, t, today) for d in duplicates]}
