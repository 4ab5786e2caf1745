"""Patients: the minimal record a consultation needs, and the history a doctor reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg


@dataclass(frozen=True)
class Patient:
    id: int
    facility_id: int
    name: str
    sex: str | None
    birth_year: int | None
    phone: str | None
    key_groups: tuple[str, ...]

    def age(self, today: date) -> int | None:
        return today.year - self.birth_year if self.birth_year else None


def _patient(row: asyncpg.Record) -> Patient:
    return Patient(row["id"], row["facility_id"], row["name"], row["sex"], row["birth_year"], row["phone"],
                   tuple(row["key_groups"]))


async def create(con: asyncpg.Connection, *, facility_id: int, name: str, sex: str | None = None,
                 birth_year: int | None = None, phone: str | None = None,
                 key_groups: tuple[str, ...] = ()) -> int:
    patient_id: int = await con.fetchval(
        """INSERT INTO patient (facility_id, name, sex, birth_year, phone, key_groups)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        facility_id, name, sex, birth_year, phone, list(key_groups),
    )
    return patient_id


async def get(con: asyncpg.Connection, patient_id: int) -> Patient | None:
    row = await con.fetchrow("SELECT * FROM patient WHERE id = $1", patient_id)
    return _patient(row) if row else None


async def list_for_facility(con: asyncpg.Connection, facility_id: int, limit: int = 200) -> list[Patient]:
    rows = await con.fetch("SELECT * FROM patient WHERE facility_id = $1 ORDER BY id LIMIT $2",
                           facility_id, limit)
    return [_patient(r) for r in rows]


async def consultations(con: asyncpg.Connection, patient_id: int) -> list[asyncpg.Record]:
    """Past and current consultations, newest first, with the doctor and the latest signed note."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT c.id, c.status, c.modality, c.started_at, c.ended_at, c.outcome,
                  s.name AS doctor_name, f.name AS facility_name,
                  q.triage_level, q.reason,
                  n.version AS note_version, n.subjective, n.objective, n.assessment, n.plan,
                  n.vitals, n.diagnoses, n.follow_up_on, n.signed_at, ns.name AS note_author
           FROM consultation c
           JOIN staff s ON s.id = c.doctor_id
           JOIN facility f ON f.id = s.facility_id
           JOIN queue_entry q ON q.id = c.queue_entry_id
           LEFT JOIN LATERAL (SELECT * FROM note_version nv WHERE nv.consultation_id = c.id
                              ORDER BY nv.version DESC LIMIT 1) n ON true
           LEFT JOIN staff ns ON ns.id = n.author_id
           WHERE c.patient_id = $1
           ORDER BY c.started_at DESC""",
        patient_id,
    )
    return rows
