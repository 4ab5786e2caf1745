"""Patients: the registry record (who, where, key groups), finding them again, and their history.

Names are searched by `search_name`, the :func:`care.text.normalize` key of the name, so "Nguyen Van An"
finds "Nguyễn Văn An". Records merged into another stay in the table (`merged_into`) for the audit trail
but never show in searches; everything that referred to them now refers to the record kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from care.registry import Registration
from care.text import normalize
from db import audit
from db.errors import Conflict, NotFound
from db.scope import subtree


@dataclass(frozen=True)
class Patient:
    id: int
    facility_id: int
    name: str
    sex: str | None
    birth_year: int | None
    phone: str | None
    key_groups: tuple[str, ...]
    birth_date: date | None = None
    national_id: str | None = None
    insurance_number: str | None = None
    commune_code: str | None = None
    address_detail: str = ""
    merged_into: int | None = None
    updated_at: datetime | None = None

    def age(self, today: date) -> int | None:
        if self.birth_date is not None:
            before_birthday = (today.month, today.day) < (self.birth_date.month, self.birth_date.day)
            return today.year - self.birth_date.year - before_birthday
        return today.year - self.birth_year if self.birth_year else None


def _patient(row: asyncpg.Record) -> Patient:
    return Patient(row["id"], row["facility_id"], row["name"], row["sex"], row["birth_year"], row["phone"],
                   tuple(row["key_groups"]), row["birth_date"], row["national_id"], row["insurance_number"],
                   row["address_commune_code"], row["address_detail"], row["merged_into"], row["updated_at"])


async def create(con: asyncpg.Connection, *, facility_id: int, name: str, sex: str | None = None,
                 birth_year: int | None = None, phone: str | None = None,
                 key_groups: tuple[str, ...] = ()) -> int:
    """A minimal record, unvalidated and unaudited (demo data, tests, tools); staff use create_registered."""
    patient_id: int = await con.fetchval(
        """INSERT INTO patient (facility_id, name, search_name, sex, birth_year, phone, key_groups)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
        facility_id, name, normalize(name), sex, birth_year, phone, list(key_groups),
    )
    return patient_id


_REGISTRY_COLUMNS = ("name", "search_name", "sex", "birth_year", "birth_date", "phone", "national_id",
                     "insurance_number", "address_commune_code", "address_detail", "key_groups")


def _values(r: Registration) -> tuple[Any, ...]:
    """Column values of a registration, in the order of _REGISTRY_COLUMNS."""
    return (r.name, normalize(r.name), r.sex.value, r.birth_year, r.birth_date, r.phone, r.national_id,
            r.insurance_number, r.commune_code, r.address_detail, [g.value for g in r.key_groups])


async def create_registered(con: asyncpg.Connection, *, facility_id: int, registration: Registration,
                            staff_id: int) -> int:
    """Register a validated patient at `facility_id` (audited "patient.create"); returns the new id."""
    async with con.transaction():
        patient_id: int = await con.fetchval(
            """INSERT INTO patient (facility_id, name, search_name, sex, birth_year, birth_date, phone,
                                    national_id, insurance_number, address_commune_code, address_detail,
                                    key_groups)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
            facility_id, *_values(registration),
        )
        await audit.record(con, audit.Actor.staff(staff_id), "patient.create", "patient", patient_id,
                           {"facility": facility_id})
    return patient_id


async def update(con: asyncpg.Connection, patient_id: int, registration: Registration, staff_id: int, *,
                 expected_version: str | None = None) -> list[str]:
    """Replace the registry fields of a patient (audited "patient.update" with the names of the fields that
    changed, not their values); returns those names. NotFound for unknown ids, Conflict for merged ones,
    and Conflict "stale_record" when `expected_version` (the `updated_at` the editor loaded, ISO format)
    is given and someone saved in between."""
    async with con.transaction():
        row = await con.fetchrow("SELECT * FROM patient WHERE id = $1 FOR UPDATE", patient_id)
        if row is None:
            raise NotFound("patient", patient_id)
        if row["merged_into"] is not None:
            raise Conflict("already_merged", f"patient {patient_id} was merged into {row['merged_into']}")
        if expected_version and row["updated_at"].isoformat() != expected_version:
            raise Conflict("stale_record", f"patient {patient_id} was changed by someone else since it was loaded")
        new = dict(zip(_REGISTRY_COLUMNS, _values(registration), strict=True))
        changed = [c for c in _REGISTRY_COLUMNS if c != "search_name" and _differs(row[c], new[c])]
        if not changed:
            return []
        await con.execute(
            """UPDATE patient SET name = $2, search_name = $3, sex = $4, birth_year = $5, birth_date = $6,
                                  phone = $7, national_id = $8, insurance_number = $9,
                                  address_commune_code = $10, address_detail = $11, key_groups = $12,
                                  updated_at = now()
               WHERE id = $1""",
            patient_id, *_values(registration),
        )
        await audit.record(con, audit.Actor.staff(staff_id), "patient.update", "patient", patient_id,
                           {"fields": changed})
    return changed


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, list) or isinstance(new, list):
        return sorted(old or []) != sorted(new or [])
    return bool(old != new)


async def get(con: asyncpg.Connection, patient_id: int) -> Patient | None:
    row = await con.fetchrow("SELECT * FROM patient WHERE id = $1", patient_id)
    return _patient(row) if row else None


async def list_for_facility(con: asyncpg.Connection, facility_id: int, limit: int = 200) -> list[Patient]:
    rows = await con.fetch("SELECT * FROM patient WHERE facility_id = $1 AND merged_into IS NULL "
                           "ORDER BY id LIMIT $2", facility_id, limit)
    return [_patient(r) for r in rows]


async def recent(con: asyncpg.Connection, facility_id: int, limit: int = 10) -> list[Patient]:
    """The patients in scope registered or edited most recently (the search page before anything is typed)."""
    rows = await con.fetch(
        """
        SELECT p.* FROM patient p
        WHERE p.merged_into IS NULL AND p.facility_id IN (SELECT facility_subtree($1))
        ORDER BY p.updated_at DESC, p.id DESC LIMIT $2""", facility_id, limit)
    return [_patient(r) for r in rows]


# ---- search ------------------------------------------------------------------------------------------

# A similarity of 0.5 on trigrams keeps one or two typos in a full name ("nguyen vna anh" → 0.67) while
# "nguyen thi binh" for "nguyen van anh" stays out; lower thresholds turn every Nguyễn into a candidate.
SIMILARITY_THRESHOLD = 0.5
_PHONE_QUERY = re.compile(r"\+?[\d\s.\-()]+")
# The scope is passed as an array ($1) rather than joined as a recursive CTE: the planner then knows how
# many facilities (and, from the column statistics, how many patients) it covers, and picks an index
# scan in name order for a province but the facility's own rows for a commune station.
_SCOPED = """
    SELECT p.* FROM patient p
    WHERE p.merged_into IS NULL AND p.facility_id = ANY($1::bigint[]) AND """


async def scope_ids(con: asyncpg.Connection, facility_id: int) -> list[int]:
    """The facility and every facility below it in the referral tree (db/scope.py)."""
    return await subtree(con, facility_id)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def phone_prefixes(digits: str) -> list[str]:
    """Stored-phone prefixes a string of digits can mean: national ("0912…"), international ("84912…")
    or a number typed without its 0 ("912…"). Stored phones are E.164, legacy ones as typed."""
    out = [digits]
    if digits.startswith("0"):
        out.append("+84" + digits[1:])
    elif digits.startswith("84"):
        out.append("+" + digits)
        if len(digits) < 11:  # "845…" could also be a number typed without its 0 (084 is a mobile prefix)
            out.append("+84" + digits)
    else:
        out.append("+84" + digits)
    return list(dict.fromkeys(out))


async def search(con: asyncpg.Connection, facility_id: int, query: str, limit: int = 20) -> list[Patient]:
    """Patients in the staff member's scope (their facility and everything below it) matching `query`.

    Digits search phone numbers by prefix, in any written form. Words search names without regard to
    diacritics or case: first names starting with the query, in alphabetical order ("nguyen van" →
    "Nguyễn Văn An", …), then names with a word starting with it ("van an"); when nothing starts with
    the query, similar names (typos: "nguyen vna anh"), most similar first. Merged records are never
    returned.
    """
    text = query.strip()
    digits = re.sub(r"\D", "", text)
    key = normalize(text)
    if not key:
        return []
    scope = await scope_ids(con, facility_id)
    if _PHONE_QUERY.fullmatch(text) and len(digits) >= 3:
        prefixes = phone_prefixes(digits)
        conditions = " OR ".join(f"p.phone LIKE ${i + 3}" for i in range(len(prefixes)))
        rows = await con.fetch(_SCOPED + f"({conditions}) ORDER BY p.phone, p.id LIMIT $2",
                               scope, limit, *(p + "%" for p in prefixes))
        return [_patient(r) for r in rows]
    escaped = _like_escape(key)
    found: list[asyncpg.Record] = list(await con.fetch(
        _SCOPED + "p.search_name LIKE $3 ORDER BY p.search_name USING ~<~, p.id LIMIT $2",
        scope, limit, escaped + "%"))
    if len(found) < limit:
        found += await con.fetch(
            _SCOPED + """p.search_name LIKE $3 AND NOT p.id = ANY($4::bigint[])
                         ORDER BY p.search_name USING ~<~, p.id LIMIT $2""",
            scope, limit - len(found), f"% {escaped}%", [r["id"] for r in found])
    # Similar names only when nothing starts with the query: it is the costly step (a million names share
    # the trigrams of "nguyen"), and a type-ahead that already shows matches needs no guesses under them.
    if not found and len(key) >= 3:
        async with con.transaction():  # SET LOCAL lasts until the end of this (sub)transaction only
            await con.execute(f"SET LOCAL pg_trgm.similarity_threshold = {SIMILARITY_THRESHOLD}")
            found = await con.fetch(
                _SCOPED + """p.search_name % $3 ORDER BY similarity(p.search_name, $3) DESC, p.id LIMIT $2""",
                scope, limit, key)
    return [_patient(r) for r in found]


# Likely duplicates: the same phone and a similar name (and the same birth year when both are known), or
# the same citizen ID. Families share one phone, so a phone alone is not a duplicate.
DUPLICATE_NAME_SIMILARITY = 0.5


async def find_duplicates(con: asyncpg.Connection, facility_id: int, *, phone: str | None, name: str,
                          birth_year: int | None, national_id: str | None = None,
                          exclude: int | None = None, limit: int = 10) -> list[Patient]:
    """Records in scope that are probably the same person as the one about to be registered (or edited:
    pass its id as `exclude`), best match first."""
    if phone is None and national_id is None:
        return []
    rows = await con.fetch(
        _SCOPED + """p.id IS DISTINCT FROM $6 AND (
                (p.phone = $3 AND similarity(p.search_name, $4) >= $7
                 AND ($5::int IS NULL OR p.birth_year IS NULL OR p.birth_year = $5))
             OR p.national_id = $8)
        ORDER BY (p.national_id IS NOT DISTINCT FROM $8) DESC, similarity(p.search_name, $4) DESC, p.id
        LIMIT $2""",
        await scope_ids(con, facility_id), limit, phone, normalize(name), birth_year, exclude,
        DUPLICATE_NAME_SIMILARITY, national_id)
    return [_patient(r) for r in rows]


# ---- merge -------------------------------------------------------------------------------------------

# Every single-column foreign key to patient(id), found in the catalog at merge time, so tables added by
# later migrations (invitations, messages…) move with the rest without anyone remembering to list them.
_REFERENCES = """
    SELECT format('%I.%I', n.nspname, t.relname) AS table_name, quote_ident(a.attname) AS column_name,
           t.relname AS label_table, a.attname AS label_column
    FROM pg_constraint c
    JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    WHERE c.contype = 'f' AND c.confrelid = 'patient'::regclass AND cardinality(c.conkey) = 1
    ORDER BY t.relname, a.attname"""

# Filled from the merged record when the kept one has nothing there.
_FILLABLE = ("sex", "birth_year", "birth_date", "phone", "national_id", "insurance_number",
             "address_commune_code")


async def _busy(con: asyncpg.Connection, patient_id: int) -> bool:
    """In the queue or in a consultation right now."""
    return bool(await con.fetchval(
        """SELECT EXISTS (SELECT 1 FROM queue_entry WHERE patient_id = $1
                          AND status IN ('waiting', 'claimed', 'in_call'))
               OR EXISTS (SELECT 1 FROM consultation WHERE patient_id = $1 AND status = 'active')""",
        patient_id))


async def merge(con: asyncpg.Connection, keep_id: int, merge_id: int, staff_id: int) -> dict[str, int]:
    """Merge record `merge_id` into `keep_id`, in one transaction: every row that refers to the merged
    record (consultations and so their notes and chat, join links, queue entries, consents, and any later
    table) then refers to the kept one; key groups are united; the kept record's empty fields are filled
    from the merged one; the merged record is marked `merged_into` and leaves searches. Audited
    "patient.merge". Returns the number of rows moved per "table.column".

    Refused (Conflict, nothing changed) when either record was already merged, or when the merged record
    is in the queue or a consultation: its patient is connected under that record's id, and moving the
    rows under them would lose them. Merge the other way round, or after the consultation ends.
    """
    if keep_id == merge_id:
        raise Conflict("merge_same", "a record cannot be merged into itself")
    async with con.transaction():
        rows = {r["id"]: r for r in await con.fetch(
            "SELECT * FROM patient WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", [keep_id, merge_id])}
        for pid in (keep_id, merge_id):
            if pid not in rows:
                raise NotFound("patient", pid)
            if rows[pid]["merged_into"] is not None:
                raise Conflict("already_merged", f"patient {pid} was already merged into {rows[pid]['merged_into']}")
        if await _busy(con, merge_id):
            if await _busy(con, keep_id):
                raise Conflict("both_in_queue", f"patients {keep_id} and {merge_id} are both in the queue or in a "
                                                "consultation; merge them after one of them has finished")
            raise Conflict("merged_in_queue", f"patient {merge_id} is in the queue or in a consultation; keep "
                                              f"{merge_id} instead, or merge after the consultation ends")
        moved: dict[str, int] = {}
        for ref in await con.fetch(_REFERENCES):
            # Identifiers cannot be parameters; these come from the catalog, quoted by PostgreSQL itself.
            sql = f"UPDATE {ref['table_name']} SET {ref['column_name']} = $1 WHERE {ref['column_name']} = $2"
            try:
                async with con.transaction():
                    status = await con.execute(sql, keep_id, merge_id)
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("merge_conflict", f"both patients have a {ref['label_table']} row that can exist "
                                                 f"only once per patient ({exc.constraint_name}); resolve it "
                                                 "first") from None
            count = int(status.rsplit(" ", 1)[1])
            if count:
                moved[f"{ref['label_table']}.{ref['label_column']}"] = count
        keep, gone = rows[keep_id], rows[merge_id]
        fills = {c: gone[c] for c in _FILLABLE if keep[c] is None and gone[c] is not None}
        if not keep["address_detail"] and gone["address_detail"]:
            fills["address_detail"] = gone["address_detail"]
        if fills.get("birth_date") is not None and keep["birth_year"] is not None:
            if fills["birth_date"].year != keep["birth_year"]:
                del fills["birth_date"]  # a date that contradicts the kept year is not "filling a gap"
        groups = list(dict.fromkeys([*keep["key_groups"], *gone["key_groups"]]))
        assignments = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(fills))
        await con.execute(
            f"UPDATE patient SET key_groups = $2, updated_at = now(){', ' + assignments if fills else ''} "
            "WHERE id = $1", keep_id, groups, *fills.values())
        await con.execute("UPDATE patient SET merged_into = $1, updated_at = now() WHERE id = $2",
                          keep_id, merge_id)
        details = {"kept": keep_id, "merged": merge_id, "moved": moved, "filled": sorted(fills)}
        actor = audit.Actor.staff(staff_id)
        await audit.record(con, actor, "patient.merge", "patient", keep_id, details)
        await audit.record(con, actor, "patient.merge", "patient", merge_id, details)
    return moved


async def consultations(con: asyncpg.Connection, patient_id: int) -> list[asyncpg.Record]:
    """Past and current consultations, newest first, with the doctor and the latest signed note."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT c.id, c.status, c.modality, c.started_at, c.ended_at, c.outcome,
                  s.name AS doctor_name, f.name AS facility_name,
                  q.triage_level, q.reason,
                  n.version AS note_version, n.subjective, n.objective, n.assessment, n.plan,
                  n.vitals, n.diagnoses, n.follow_up_on, n.signed_at, ns.name AS note_author,
                  n.medicines, n.patient_summary
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
